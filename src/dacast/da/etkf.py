"""Ensemble transform Kalman filter (Hunt et al. 2007, symmetric square root)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from dacast.da.analysis import Analysis, check_inputs, relax, whiten
from dacast.da.inflation import check_inflation
from dacast.da.transform import Form, transform_update
from dacast.obs.operators import ObsOperator


@dataclass(frozen=True, kw_only=True)
class ETKFConfig:
    """ETKF settings.

    Attributes:
        inflation: multiplicative inflation of prior anomalies inside the
            ensemble-space matrix (1.0 = none; covariance is scaled by its square).
        rtpp: RTPP weight in [0, 1].
        rtps: RTPS weight in [0, 1].
        form: ensemble-space algebra, ``"auto"`` picks the cheaper exact one.
    """

    inflation: float = 1.0
    rtpp: float = 0.0
    rtps: float = 0.0
    form: Form = "auto"

    def __post_init__(self) -> None:
        if not self.inflation > 0:
            raise ValueError(f"inflation must be positive, got {self.inflation}")
        check_inflation(self.inflation)


def etkf(prior: Tensor, y: Tensor, operator: ObsOperator, config: ETKFConfig) -> Analysis:
    """One ETKF analysis; inputs are not modified.

    Args:
        prior: forecast ensemble, shape ``(k, n_state)``.
        y: observations, shape ``(n_obs,)`` (observation units).
        operator: observation operator (may be nonlinear).
        config: filter settings.

    Returns:
        `Analysis` with the ``(k, n_state)`` analysis ensemble.
    """
    check_inputs(prior, y, operator)
    y_anom, d, innovation = whiten(prior, y, operator)
    xmean = prior.mean(0)
    xp = prior - xmean
    post = transform_update(y_anom.T[None], d[None], xp[None], xmean[None], config.inflation, config.form)[0]
    return Analysis.of(relax(prior, post, config.rtpp, config.rtps), innovation)
