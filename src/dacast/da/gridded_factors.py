"""The ensemble transforms of the gridded LETKF in factored form, and their bilinear interpolation weights.

Per weight point c the transform is kept in factored form: with ``V_c`` (r × k)
the eigenvector rotation of the whitened local anomalies (r = min(p, k)),

    mean weights w̄_c = V_cᵀ g_c,      W_c = s_c I + V_cᵀ diag(coef_c) V_c,

so the analysis of a point with prior anomalies X' (k × n_var) is
``x̄ + w̄ᵀ X' + W X'`` at the cost of rank-r products instead of a dense k × k
one. `dacast.da.gridded` interpolates these factors bilinearly between the
coarse weight points (``weight_stride > 1``) with the weights of `corner_weights`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from dacast.da.letkf import live_first
from dacast.da.transform import choose_form, eigh


@dataclass(frozen=True)
class TransformFactors:
    """Ensemble transforms of B local problems in factored form.

    Attributes:
        v: rotation ``V``, shape ``(B, r, k)`` with orthonormal rows.
        coef: ``(B, r)``; the transform is ``W = scale I + Vᵀ diag(coef) V``.
        g: ``(B, r)``; the mean weights are ``w̄ = Vᵀ g``.
        scale: ``sqrt(k - 1) / sqrt(a)`` with ``a = (k - 1)/ρ²``, i.e. the inflation ρ.
    """

    v: Tensor
    coef: Tensor
    g: Tensor
    scale: float


def transform_factors(
    yt: Tensor, d: Tensor, inflation: float = 1.0, form: str = "auto", pad: Tensor | None = None
) -> TransformFactors:
    """Factored transforms of the same problems as `transform_update` (same algebra, no state).

    Args:
        yt: whitened observation anomalies transposed, shape ``(B, p, k)``.
        d: whitened innovations, shape ``(B, p)``.
        inflation: multiplicative inflation ρ.
        form: ``"gram"`` (r = p), ``"ensemble"`` (r = k) or ``"auto"``.
        pad: optional ``(B, p)`` mask of padding rows (zero rows of ``yt`` and
            entries of ``d``); used to keep the Gram matrix regular.

    Returns:
        `TransformFactors`; applied to anomalies ``X'`` (k × nv) they give
        ``x̄ + (V X')ᵀ g + scale X' + Vᵀ (coef ⊙ V X')``, the `transform_update` result.
    """
    k, p = yt.shape[-1], yt.shape[-2]
    a = (k - 1) / inflation**2
    scale = ((k - 1) / a) ** 0.5
    if choose_form(k, p, form) == "ensemble":  # type: ignore[arg-type]
        c = yt.transpose(-1, -2) @ yt
        c.diagonal(dim1=-2, dim2=-1).add_(a)
        lam, vec = eigh(c)
        v = vec.transpose(-1, -2).contiguous()
        q = (v @ (yt.transpose(-1, -2) @ d[..., None]))[..., 0]
        return TransformFactors(v=v, coef=torch.sqrt((k - 1) / lam) - scale, g=q / lam, scale=scale)
    u, coef, g = _gram_eigen(yt, d, a, pad)
    return TransformFactors(v=u.transpose(-1, -2) @ yt, coef=coef, g=g, scale=scale)


def _gram_eigen(yt: Tensor, d: Tensor, a: float, pad: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """Gram-form eigenvectors ``U (B, p, p)``, ``coef (B, p)`` and ``g = Uᵀd̂/(λ + a)`` (B, p)."""
    k = yt.shape[-1]
    gram = yt @ yt.transpose(-1, -2)
    if pad is not None:
        # Padding rows of Ŷᵀ are zero: a unit diagonal there keeps the Gram matrix
        # regular without changing the result (padding rows contribute nothing to
        # UᵀŶᵀ or Uᵀd̂ and a rotation inside an eigenspace changes no sum over it),
        # and spares LAPACK the rank-deficient case, many times slower in float32.
        gram.diagonal(dim1=-2, dim2=-1).add_(pad.to(gram.dtype))
    lam, u = eigh(gram)
    lam = lam.clamp_min(0.0)
    g = (u.transpose(-1, -2) @ d[..., None])[..., 0] / (lam + a)
    sa = a**0.5
    sla = torch.sqrt(lam + a)
    coef = -((k - 1) ** 0.5) / (sa * sla * (sa + sla))
    return u, coef, g


def local_factors(
    ya_t: Tensor, d: Tensor, informative: Tensor, index: Tensor, sqrt_w: Tensor, inflation: float
) -> TransformFactors:
    """`transform_factors` of a batch of points ``(n, width)`` in one go, informative rows only."""
    idx, sw = live_first(index, sqrt_w, informative)
    k = ya_t.shape[1]
    if idx.shape[1] == 0:
        z = ya_t.new_zeros((index.shape[0], 0))
        return TransformFactors(v=ya_t.new_zeros((index.shape[0], 0, k)), coef=z, g=z, scale=inflation)
    return transform_factors(ya_t[idx] * sw[..., None], d[idx] * sw, inflation, pad=sw == 0)


def pad_rank(f: TransformFactors, r: int) -> TransformFactors:
    """Zero-pad the factors to rank ``r`` (zero rows of ``V`` with zero ``coef``, ``g`` change nothing)."""
    extra = r - f.v.shape[-2]
    if extra == 0:
        return f
    return TransformFactors(
        v=torch.nn.functional.pad(f.v, (0, 0, 0, extra)),
        coef=torch.nn.functional.pad(f.coef, (0, extra)),
        g=torch.nn.functional.pad(f.g, (0, extra)),
        scale=f.scale,
    )


def corner_weights(stride: int, n_var: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Weights of the four cell corners (00, 01, 10, 11) at the cell's points, shape ``(4, n_var * s * s)``."""
    t = torch.arange(stride, device=device, dtype=dtype) / stride
    wy = torch.stack([1 - t, 1 - t, t, t])[:, :, None]
    wx = torch.stack([1 - t, t, 1 - t, t])[:, None, :]
    return (wy * wx)[:, None].expand(4, n_var, stride, stride).reshape(4, -1)


__all__ = ["TransformFactors", "corner_weights", "local_factors", "pad_rank", "transform_factors"]
