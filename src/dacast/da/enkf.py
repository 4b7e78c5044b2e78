"""Stochastic EnKF with perturbed observations (Burgers et al. 1998)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from dacast.da.analysis import Analysis, check_inputs, relax, whiten
from dacast.da.inflation import check_inflation
from dacast.obs.operators import ObsOperator


@dataclass(frozen=True, kw_only=True)
class EnKFConfig:
    """Stochastic EnKF settings.

    Attributes:
        inflation: multiplicative inflation of prior anomalies, applied before the update.
        rtpp: RTPP weight in [0, 1].
        rtps: RTPS weight in [0, 1].
    """

    inflation: float = 1.0
    rtpp: float = 0.0
    rtps: float = 0.0

    def __post_init__(self) -> None:
        if not self.inflation > 0:
            raise ValueError(f"inflation must be positive, got {self.inflation}")
        check_inflation(self.inflation)


def enkf(prior: Tensor, y: Tensor, operator: ObsOperator, config: EnKFConfig, generator: torch.Generator) -> Analysis:
    """One stochastic EnKF analysis with centred observation perturbations.

    Each member m is updated with ``K (y + e_m - H(x_m))``, ``e_m ~ N(0, R)``
    with the perturbations' ensemble mean removed; ``K`` uses the ensemble
    covariances, computed in the cheaper of observation or ensemble space.

    Args:
        prior: forecast ensemble, shape ``(k, n_state)``.
        y: observations, shape ``(n_obs,)``.
        operator: observation operator.
        config: filter settings.
        generator: random source for the perturbations.

    Returns:
        `Analysis` with the ``(k, n_state)`` analysis ensemble.
    """
    check_inputs(prior, y, operator)
    k, p = prior.shape[0], int(operator.error_std.shape[0])
    xmean = prior.mean(0)
    inflated = xmean + config.inflation * (prior - xmean)
    y_anom, _, _ = whiten(inflated, y, operator)
    _, _, innovation = whiten(prior, y, operator)
    std = operator.error_std.to(dtype=prior.dtype, device=prior.device)
    eps = torch.randn((k, p), generator=generator, dtype=prior.dtype).to(prior.device)
    eps = eps - eps.mean(0)
    # whitened member innovations: (y + e_m - H(x_m)) / std
    member_innov = (y.to(prior) - operator(inflated)) / std + eps
    xp = inflated - xmean
    a = float(k - 1)
    if p <= k:
        s = y_anom.T @ y_anom
        s.diagonal().add_(a)
        gain_in = torch.linalg.solve(s, member_innov.T).T  # (k, p)
        increment = gain_in @ (y_anom.T @ xp)  # (k, n_state); no k x k matrix when k is large
    else:
        s = y_anom @ y_anom.T
        s.diagonal().add_(a)
        coeff = torch.linalg.solve(s, y_anom @ member_innov.T).T  # (k, k)
        increment = coeff @ xp
    post = inflated + increment
    return Analysis.of(relax(prior, post, config.rtpp, config.rtps), innovation)
