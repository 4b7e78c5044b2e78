"""The ensemble-transform algebra shared by the ETKF and the LETKF.

Hunt et al. (2007) in whitened observation space, batched over B local
problems. With k members, p (local) observations, whitened anomalies
Ŷ (k × p), whitened innovation d̂ (p) and prior anomalies X' (k × nv):

    C  = (k - 1)/ρ² I + Ŷ Ŷᵀ        (ρ: multiplicative inflation of anomalies)
    w̄  = C⁻¹ Ŷ d̂,   W = [(k - 1) C⁻¹]^{1/2}  (symmetric square root)
    Xa = x̄ + X'ᵀ w̄ + W X'

Two exact forms:

* ``"ensemble"``: eigendecomposition of the k × k matrix C, cost O(k²p + k³);
  the cheaper form when p >= k.
* ``"gram"``: eigendecomposition of the p × p Gram matrix G = ŶᵀŶ = U Λ Uᵀ,
  cost O(kp² + p³); exact because C⁻¹ and C^{-1/2} act as a scalar on the
  orthogonal complement of range(Ŷ). With a = (k-1)/ρ², z = Ŷᵀ X':

      mean increment = Σ_j (Uᵀz)_j (Uᵀd̂)_j / (λ_j + a)
      W X' = sqrt((k-1)/a) X' + Ŷ U diag(c_j/λ_j) Uᵀ z,
      c_j/λ_j = -sqrt(k-1) / (sqrt(a) sqrt(λ_j+a) (sqrt(a) + sqrt(λ_j+a)))

  (the last written so that it stays finite as λ_j -> 0, e.g. for padding).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

Form = Literal["auto", "ensemble", "gram"]


def eigh(c: Tensor) -> tuple[Tensor, Tensor]:
    """`torch.linalg.eigh`, retried in float64 when float32 LAPACK fails to converge.

    Float32 ``syevd`` can fail on nearly degenerate spectra (an ensemble of
    repeated members); float64 then converges and the result is cast back.
    """
    try:
        return torch.linalg.eigh(c)
    except torch.linalg.LinAlgError:
        if c.dtype != torch.float32:
            raise
        lam, vec = torch.linalg.eigh(c.double())
        return lam.float(), vec.float()


def choose_form(n_members: int, n_obs: int, form: Form = "auto") -> Literal["ensemble", "gram"]:
    """The cheaper exact form: ``"gram"`` when p < k, else ``"ensemble"``."""
    if form != "auto":
        return form
    return "gram" if n_obs < n_members else "ensemble"


def transform_update(
    yt: Tensor,
    d: Tensor,
    xp: Tensor,
    xmean: Tensor,
    inflation: float = 1.0,
    form: Form = "auto",
) -> Tensor:
    """Analysis ensembles of B local (or one global) problems.

    Args:
        yt: whitened observation anomalies transposed, Ŷᵀ, shape ``(B, p, k)``
            (anomalies divided by the error std and multiplied by sqrt(taper)).
        d: whitened innovations ``(y - mean H(x)) * sqrt(taper) / std``, shape ``(B, p)``.
        xp: prior state anomalies, shape ``(B, k, nv)``.
        xmean: prior mean, shape ``(B, nv)``.
        inflation: multiplicative inflation of prior anomalies (ρ; covariance × ρ²).
        form: ``"ensemble"``, ``"gram"`` or ``"auto"`` (cheaper one).

    Returns:
        Analysis ensemble, shape ``(B, k, nv)``.
    """
    k = xp.shape[-2]
    p = yt.shape[-2]
    a = (k - 1) / inflation**2
    if p == 0:
        return xmean[:, None, :] + xp * inflation
    if choose_form(k, p, form) == "ensemble":
        c = yt.transpose(-1, -2) @ yt
        c.diagonal(dim1=-2, dim2=-1).add_(a)
        lam, v = eigh(c)
        g = v.transpose(-1, -2) @ xp  # (B, k, nv)
        q = (v.transpose(-1, -2) @ (yt.transpose(-1, -2) @ d[..., None]))[..., 0]  # (B, k)
        mean_inc = ((q / lam)[..., None] * g).sum(-2)
        pert = v @ (torch.sqrt((k - 1) / lam)[..., None] * g)
    else:
        gram = yt @ yt.transpose(-1, -2)
        # zero rows of Ŷᵀ (padding, clear air) get a unit diagonal: exact (they add nothing to
        # UᵀŶᵀ and only rotate inside an eigenspace), and LAPACK avoids its slow rank-deficient path
        gram.diagonal(dim1=-2, dim2=-1).add_((yt == 0).all(-1).to(gram.dtype))
        lam, u = eigh(gram)
        lam = lam.clamp_min(0.0)
        z = yt @ xp  # (B, p, nv)
        uz = u.transpose(-1, -2) @ z  # (B, p, nv)
        ud = (u.transpose(-1, -2) @ d[..., None])[..., 0]  # (B, p)
        mean_inc = ((ud / (lam + a))[..., None] * uz).sum(-2)
        sa = a**0.5
        sla = torch.sqrt(lam + a)
        coef = -((k - 1) ** 0.5) / (sa * sla * (sa + sla))
        pert = ((k - 1) / a) ** 0.5 * xp + yt.transpose(-1, -2) @ (u @ (coef[..., None] * uz))
    return xmean[:, None, :] + mean_inc[:, None, :] + pert
