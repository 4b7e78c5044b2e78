"""Adaptive (VarBC-style) bias correction of satellite radiances.

Variational bias correction (Derber & Wu 1998; Dee 2004; Auligné et al. 2007)
models the bias of channel c as ``b = Σ_i β_ci p_i`` with predictors ``p``
(`dacast.obs.satellite.bias_predictors`) and estimates β from the departures
``d = y − H(x̄_b)`` under a Gaussian prior on β. For one channel, with
departures of variance ``v = σ_o² + σ_b²`` (observation plus background error in
observation space), the estimate after a batch of departures is the Kalman
(recursive least-squares) update

    A⁻¹ ← A⁻¹ + Pᵀ V⁻¹ P,      β ← β + A Pᵀ V⁻¹ (d − P β),

where A is the covariance of β. Before each batch A grows by ``process_var``
(so β can follow a drifting bias, as VarBC's background constraint does), which
with `BiasCorrection.initial` gives an estimate from the first batch on. The
corrected observations are ``y − P β``. Functions are pure: every update
returns a new `BiasCorrection`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass(frozen=True, kw_only=True)
class BiasCorrection:
    """Bias coefficients per channel and their uncertainty.

    Attributes:
        coefficients: β, shape ``(C, P)`` (K per unit predictor).
        covariance: A, shape ``(C, P, P)`` (K² per unit predictor²).
        process_var: variance added to A's diagonal before each update (K²).
        updates: batches of departures assimilated so far.
    """

    coefficients: Tensor = field(repr=False)
    covariance: Tensor = field(repr=False)
    process_var: float = 1e-4
    updates: int = 0

    def __post_init__(self) -> None:
        c, p = self.coefficients.shape
        if tuple(self.covariance.shape) != (c, p, p):
            raise ValueError(f"covariance must have shape {(c, p, p)}, got {tuple(self.covariance.shape)}")
        if not self.process_var >= 0:
            raise ValueError(f"process_var must be >= 0, got {self.process_var}")

    @staticmethod
    def initial(
        n_channels: int, n_predictors: int, prior_std: float = 2.0, process_var: float = 1e-4
    ) -> BiasCorrection:
        """No bias known yet: β = 0 with standard deviation ``prior_std`` (K) per coefficient."""
        if not prior_std > 0:
            raise ValueError(f"prior_std must be positive, got {prior_std}")
        eye = torch.eye(n_predictors, dtype=torch.float64)
        return BiasCorrection(
            coefficients=torch.zeros((n_channels, n_predictors), dtype=torch.float64),
            covariance=(prior_std**2 * eye).expand(n_channels, -1, -1).clone(),
            process_var=process_var,
        )

    def bias(self, predictors: Tensor) -> Tensor:
        """Estimated bias ``(*batch, C)`` (K) from predictors ``(*batch, P)``."""
        return predictors @ self.coefficients.to(predictors).T

    def correct(self, y: Tensor, predictors: Tensor) -> Tensor:
        """Bias-corrected observations ``y − P β``; ``y`` ``(*batch, C)`` (K), predictors ``(*batch, P)``."""
        return y - self.bias(predictors)

    def update(self, predictors: Tensor, departures: Tensor, variance: Tensor) -> BiasCorrection:
        """Assimilate one batch of departures (see the module docstring).

        Args:
            predictors: shape ``(n, P)``.
            departures: ``y − H(x̄_b)`` of the uncorrected observations, shape ``(n, C)`` (K).
            variance: departure variance ``σ_o² + σ_b²``, shape ``(n, C)`` or broadcastable (K²), > 0.

        Returns:
            The updated correction (this one is not modified).
        """
        pred = predictors.to(torch.float64)
        d = departures.to(torch.float64)
        v = torch.as_tensor(variance, dtype=torch.float64).expand_as(d)
        if not bool(torch.isfinite(d).all() and torch.isfinite(pred).all()):
            raise ValueError("bias correction: departures or predictors are not finite")
        if not bool((v > 0).all()):
            raise ValueError("bias correction: departure variances must be positive")
        n_pred = pred.shape[-1]
        eye = torch.eye(n_pred, dtype=torch.float64)
        a = self.covariance + self.process_var * eye
        w = 1.0 / v.T  # (C, n)
        info = torch.linalg.inv(a) + torch.einsum("np,cn,nq->cpq", pred, w, pred)
        a_new = torch.linalg.inv(info)
        resid = d.T - self.coefficients @ pred.T  # (C, n)
        beta = self.coefficients + torch.einsum("cpq,nq,cn->cp", a_new, pred, w * resid)
        return BiasCorrection(
            coefficients=beta,
            covariance=0.5 * (a_new + a_new.transpose(-1, -2)),
            process_var=self.process_var,
            updates=self.updates + 1,
        )


__all__ = ["BiasCorrection"]
