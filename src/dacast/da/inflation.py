"""Inflation: RTPP and RTPS after the analysis (Whitaker & Hamill 2012), and adaptive multiplicative inflation.

Multiplicative inflation lives inside the ensemble-space matrix of the
transform filters (see `dacast.da.transform`); `AdaptiveInflation` estimates
its factor from the innovations of each cycle (Li, Kalnay & Miyoshi 2009), so
a filter run with an imperfect model inflates more than one with a good model.
All functions here are pure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

#: Multiplicative anomaly inflation a filter accepts: its square (the covariance factor) must stay a
#: normal, finite float, and anything outside this range is a mistake rather than a tuning.
INFLATION_RANGE = (1e-6, 1e6)


def check_inflation(value: float) -> None:
    """Raise `ValueError` unless ``value`` lies in `INFLATION_RANGE`."""
    lo, hi = INFLATION_RANGE
    if not lo <= value <= hi:
        raise ValueError(f"inflation must lie in [{lo:g}, {hi:g}], got {value}")


def _check_alpha(alpha: float, name: str) -> None:
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {alpha}")


def rtpp(prior: Tensor, analysis: Tensor, alpha: float) -> Tensor:
    """Relaxation to prior perturbations: Xa' <- (1 - α) Xa' + α Xb'.

    Args:
        prior: prior ensemble, shape ``(k, *state)``.
        analysis: analysis ensemble, shape ``(k, *state)``.
        alpha: relaxation weight in [0, 1] (0: no change; 1: prior perturbations).

    Returns:
        Relaxed analysis ensemble, shape ``(k, *state)``; the analysis mean is kept.
    """
    _check_alpha(alpha, "RTPP alpha")
    if alpha == 0.0:
        return analysis.clone()
    mean = analysis.mean(0, keepdim=True)
    return mean + (1.0 - alpha) * (analysis - mean) + alpha * (prior - prior.mean(0, keepdim=True))


def rtps(prior: Tensor, analysis: Tensor, alpha: float) -> Tensor:
    """Relaxation to prior spread: Xa' <- Xa' (α σb + (1 - α) σa) / σa, pointwise.

    Args:
        prior: prior ensemble, shape ``(k, *state)``.
        analysis: analysis ensemble, shape ``(k, *state)``.
        alpha: relaxation weight in [0, 1].

    Returns:
        Inflated analysis ensemble, shape ``(k, *state)``; the analysis mean is kept.
    """
    _check_alpha(alpha, "RTPS alpha")
    if alpha == 0.0:
        return analysis.clone()
    mean = analysis.mean(0, keepdim=True)
    sa = analysis.std(0, keepdim=True)
    sb = prior.std(0, keepdim=True)
    factor = torch.where(sa > 0, (alpha * sb + (1.0 - alpha) * sa) / sa.clamp_min(1e-300), torch.ones_like(sa))
    return mean + (analysis - mean) * factor


def innovation_inflation(y_anom: Tensor, d: Tensor) -> float:
    """One cycle's estimate of the covariance inflation factor from its innovations.

    With ``d`` the whitened innovation ``R^-1/2 (y - mean H(X))``,
    ``E[d^T d] = lambda tr(R^-1/2 H P H^T R^-1/2) + p`` (Li, Kalnay & Miyoshi
    2009, eq. 7), so ``lambda = (d^T d - p) / tr(R^-1/2 H P H^T R^-1/2)``. A single
    cycle's estimate is noisy and may be negative; `AdaptiveInflation.update`
    smooths and bounds it. The inputs are what `dacast.da.whiten` returns for the prior.

    Args:
        y_anom: whitened prior anomalies in observation space ``(H(x_i) - mean) / std``, shape ``(k, p)``.
        d: whitened innovation ``(y - mean H(x)) / std``, shape ``(p,)``.

    Returns:
        The covariance factor ``lambda`` (``nan`` when the prior has no spread).
    """
    spread = y_anom.double().square().sum() / (y_anom.shape[0] - 1)
    if not float(spread) > 0.0:
        return float("nan")
    return float((d.double().square().sum() - d.numel()) / spread)


@dataclass(frozen=True, kw_only=True)
class AdaptiveInflation:
    """Adaptive multiplicative inflation: each cycle's `innovation_inflation` estimate, relaxed in time.

    The factor ``lambda`` multiplies the prior covariance (the transform
    filters' ``inflation`` multiplies anomalies, so it is ``sqrt(lambda)``).

    Attributes:
        weight: weight of a new estimate, in (0, 1]: ``lambda <- lambda + weight (estimate - lambda)``
            (about ``1 / weight`` cycles of memory).
        minimum: lower bound of ``lambda`` (> 0; 1 never deflates).
        maximum: upper bound of ``lambda``.
    """

    weight: float = 0.05
    minimum: float = 1.0
    maximum: float = 25.0

    def __post_init__(self) -> None:
        if not 0.0 < self.weight <= 1.0:
            raise ValueError(f"adaptive inflation weight must lie in (0, 1], got {self.weight}")
        lo, hi = INFLATION_RANGE[0] ** 2, INFLATION_RANGE[1] ** 2
        if not lo <= self.minimum <= self.maximum <= hi:
            raise ValueError(f"need {lo:g} <= minimum <= maximum <= {hi:g}, got {self.minimum} and {self.maximum}")

    def update(self, current: float, estimate: float) -> float:
        """The next covariance factor from the ``current`` one and one cycle's ``estimate`` (NaN: skipped)."""
        nxt = current if not math.isfinite(estimate) else current + self.weight * (estimate - current)
        return min(max(nxt, self.minimum), self.maximum)
