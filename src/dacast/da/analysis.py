"""The frozen result every filter returns, and shared helpers."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor

from dacast.da.inflation import rtpp, rtps
from dacast.obs.operators import ObsOperator


class AnalysisFailed(RuntimeError):
    """An analysis that cannot produce a finite ensemble; the message says why (the cycle engine records it)."""


@dataclass(frozen=True)
class Analysis:
    """Result of one analysis step.

    ``mean`` and ``spread`` are computed from ``ensemble`` on first access and
    cached (a 1000-member 256 x 256 gridded ensemble is about 1 GB: summaries
    nobody reads are never computed). Modifying ``ensemble`` in place before
    reading them changes what they return; after, it does not.

    Attributes:
        ensemble: analysis ensemble, shape ``(k, *state)``: ``(k, n_state)`` for the
            point filters, ``(k, n_var, ny, nx)`` for the gridded LETKF.
        innovation: ``y - mean(H(prior))``, shape ``(n_obs,)`` (observation units).
    """

    ensemble: Tensor
    innovation: Tensor

    @cached_property
    def mean(self) -> Tensor:
        """Analysis mean over members, shape ``(*state)``."""
        return self.ensemble.mean(0)

    @cached_property
    def spread(self) -> Tensor:
        """Standard deviation across members (ddof=1), shape ``(*state)``; zeros for one member."""
        if self.ensemble.shape[0] > 1:
            return self.ensemble.std(0)
        return torch.zeros_like(self.ensemble[0])

    @staticmethod
    def of(ensemble: Tensor, innovation: Tensor) -> Analysis:
        """Build the result from an analysis ensemble ``(k, *state)`` and the innovation ``(n_obs,)``."""
        return Analysis(ensemble=ensemble, innovation=innovation)


def check_inputs(prior: Tensor, y: Tensor, operator: ObsOperator) -> None:
    """Clear errors for mismatched shapes; never modifies anything."""
    if prior.ndim != 2:
        raise ValueError(f"prior ensemble must have shape (members, n_state), got {tuple(prior.shape)}")
    if prior.shape[0] < 2:
        raise ValueError(f"an ensemble filter needs at least 2 members, got {prior.shape[0]}")
    if prior.shape[1] != operator.n_state:
        raise ValueError(f"prior has {prior.shape[1]} state variables but the operator expects {operator.n_state}")
    n_obs = int(operator.error_std.shape[0])
    if y.shape != (n_obs,):
        raise ValueError(f"observations must have shape ({n_obs},), got {tuple(y.shape)}")


def whiten(prior: Tensor, y: Tensor, operator: ObsOperator, hx: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Whitened observation anomalies and innovation.

    ``hx``, when given, is ``operator(prior)`` already computed (shape ``(k, p)``).

    Returns:
        ``(y_anom, d, innovation)``: ``y_anom`` shape ``(k, p)`` = (H(x) - mean)/std,
        ``d`` shape ``(p,)`` = innovation/std, ``innovation`` shape ``(p,)`` in observation units.
    """
    if hx is None:
        hx = operator(prior)
    hmean = hx.mean(0)
    std = operator.error_std.to(dtype=prior.dtype, device=prior.device)
    innovation = y.to(dtype=prior.dtype, device=prior.device) - hmean
    return (hx - hmean) / std, innovation / std, innovation


def relax(prior: Tensor, analysis: Tensor, rtpp_alpha: float, rtps_alpha: float) -> Tensor:
    """Apply RTPP then RTPS (each skipped when its weight is 0)."""
    out = analysis
    if rtpp_alpha:
        out = rtpp(prior, out, rtpp_alpha)
    if rtps_alpha:
        out = rtps(prior, out, rtps_alpha)
    return out
