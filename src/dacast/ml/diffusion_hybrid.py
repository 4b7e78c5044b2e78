"""A hybrid prior for the diffusion filter: the learned denoiser blended with the forecast ensemble's Gaussian.

Hybrid data assimilation blends a static background-error covariance with the ensemble's,
``B = (1 - w) B_static + w B_ens``. Here the static part is the learned forecast-error prior
(`dacast.ml.diffusion_filter.ForecastErrorPrior`, which knows the errors of many forecasts but
not today's) and the ensemble part is the Gaussian ``N(0, P)`` of the cycle's forecast errors,
``P`` the members' sample covariance, Schur-multiplied by a localization taper and scaled. Their
denoisers are blended as the covariances are:

``D(x, sigma) = (1 - w) D_learned(x, sigma) + w P (P + sigma**2 I)^-1 x``

(the second term is the exact denoiser of ``N(0, P)``), and the likelihood's Tweedie
covariance likewise, ``(1 - w) v I + w sigma**2 P (P + sigma**2 I)^-1``, ``v`` the isotropic
variance of `dacast.ml.diffusion_sampling` (exact for the Gaussian part).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dacast.ml.diffusion import Denoiser


@dataclass(frozen=True, kw_only=True, eq=False)  # eq=False: a tensor field has no truth value
class EnsembleBlend:
    """How much of the forecast ensemble's Gaussian enters the diffusion filter's prior.

    Attributes:
        weight: ``w`` in [0, 1]: 0 is the learned prior alone, 1 the ensemble's Gaussian alone.
        scale: multiplies the members' errors (their covariance by ``scale**2``), > 0; as a Kalman
            filter's multiplicative inflation, but applied to the ensemble part only.
        taper: localization weights ``(n, n)`` between state variables (1 on the diagonal), Schur-multiplied
            with the sample covariance.
    """

    weight: float
    scale: float = 1.0
    taper: Tensor

    def __post_init__(self) -> None:
        if not 0.0 <= self.weight <= 1.0:
            raise ValueError(f"ensemble weight must lie in [0, 1], got {self.weight}")
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"ensemble scale must be positive and finite, got {self.scale}")
        if self.taper.ndim != 2 or self.taper.shape[0] != self.taper.shape[1]:
            raise ValueError(f"taper must be a square matrix (n, n), got shape {tuple(self.taper.shape)}")

    def covariance(self, errors: Tensor) -> Tensor:
        """The localized, scaled sample covariance ``(n, n)`` of the members' errors ``(k, n)`` (k >= 2)."""
        k, n = errors.shape
        if k < 2:
            raise ValueError(f"an ensemble covariance needs at least 2 members, got {k}")
        if self.taper.shape[0] != n:
            raise ValueError(f"the taper is for {self.taper.shape[0]} state variables, the ensemble has {n}")
        sample = torch.cov(errors.T)
        return sample * self.taper.to(sample) * self.scale**2

    def denoiser(self, learned: Denoiser, errors: Tensor) -> HybridDenoiser:
        """The blended denoiser of ``learned`` (on flat states) and the Gaussian of ``errors`` ``(k, n)``."""
        return HybridDenoiser(learned, self.covariance(errors), self.weight)


class HybridDenoiser(nn.Module):
    """``(1 - w) D_learned + w D_gauss`` on flat states ``(B, n)``; see the module.

    Args:
        learned: the learned denoiser on flat states ``(x (B, n), sigma, cond) -> (B, n)``; its ``spec`` is
            kept (the sampler reads ``sigma_data`` from it).
        covariance: ``P`` ``(n, n)``, symmetric positive semi-definite (negative eigenvalues from
            rounding are set to 0).
        weight: ``w`` in [0, 1].
    """

    def __init__(self, learned: Denoiser, covariance: Tensor, weight: float) -> None:
        super().__init__()
        self.learned, self.weight = learned, float(weight)
        self.spec = getattr(learned, "spec", None)
        evals, self.evecs = torch.linalg.eigh(0.5 * (covariance + covariance.T))
        self.evals = evals.clamp_min(0.0)

    def _shrink(self, sigma: float) -> Tensor:
        """``P (P + sigma**2 I)^-1`` ``(n, n)``."""
        return (self.evecs * (self.evals / (self.evals + sigma**2))) @ self.evecs.T

    def forward(self, x: Tensor, sigma: float | Tensor, cond: Tensor | None) -> Tensor:
        gauss = x @ self._shrink(float(sigma)).to(x)  # symmetric
        if self.weight == 1.0:
            return gauss
        return (1.0 - self.weight) * self.learned(x, sigma, cond) + self.weight * gauss

    def likelihood_covariance(self, sigma: float, isotropic_var: float) -> Tensor:
        """Tweedie's covariance of ``x0`` given ``x`` at ``sigma``, ``(n, n)``: the isotropic ``isotropic_var`` for
        the learned part, exact for the Gaussian part."""
        n = self.evecs.shape[0]
        eye = torch.eye(n, dtype=self.evecs.dtype, device=self.evecs.device)
        return (1.0 - self.weight) * isotropic_var * eye + self.weight * sigma**2 * self._shrink(sigma)


__all__ = ["EnsembleBlend", "HybridDenoiser"]
