"""Fractions skill score (Roberts & Lean 2008), as pysteps computes it.

Matches ``pysteps.verification.spatialscores.fss``: binary fields with
**value >= threshold** (note: ``>=`` here, unlike the ``>`` of pysteps'
contingency tables), missing pixels set to "no event", event fractions by a
``scale x scale`` moving average with zero padding outside the grid
(``scipy.ndimage.uniform_filter(..., mode="constant", cval=0)``, same window
placement for even sizes), and sums over all pixels:

    FSS = 1 - sum (P_f - P_o)^2 / (sum P_f^2 + sum P_o^2)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dacast.verify._arrays import Array, as_mask, paired


def _box_mean(x: Tensor, size: int) -> Tensor:
    """``scipy.ndimage.uniform_filter(x, size, mode="constant")`` over the last two axes (exact sums)."""
    lo, hi = size // 2, (size - 1) // 2
    *lead, h, w = x.shape
    p = F.pad(x.reshape(-1, h, w), (lo, hi, lo, hi))
    c = F.pad(p.cumsum(-1).cumsum(-2), (1, 0, 1, 0))
    s = c[..., size:, size:] - c[..., :-size, size:] - c[..., size:, :-size] + c[..., :-size, :-size]
    return (s / float(size * size)).reshape(*lead, h, w)


def fractions(binary: Tensor, scale: int) -> Tensor:
    """Event fractions in a ``scale x scale`` window, shape ``(..., H, W)``, for float 0/1 input."""
    return binary if scale <= 1 else _box_mean(binary, scale)


def fss(forecast: Array, observed: Array, threshold: float, scale: int, mask: Array | None = None) -> Tensor:
    """Fractions skill score over the last two axes.

    Args:
        forecast: forecast field(s), shape ``(..., H, W)`` [e.g. mm/h]; NaN = missing.
        observed: observed field(s), same shape and units.
        threshold: event threshold, same units; an event is ``value >= threshold``.
        scale: window edge [pixels] (pysteps' ``scale``); 1 = pixel scale.
        mask: optional boolean, broadcastable to ``(..., H, W)``; True = verify.
            A missing (NaN) pixel is "no event" in its own field (as pysteps);
            pixels outside the mask are "no event" in both. To verify only
            pixels valid in both fields, NaN both where either is NaN (as
            `score_nowcast` does) or pass that as ``mask``.

    Returns:
        FSS, shape ``(...)``, in [0, 1]; NaN when neither field has an event.
    """
    if scale < 1:
        raise ValueError(f"scale must be >= 1 pixel, got {scale}")
    f, o, _ = paired(forecast, observed, None)
    inside = torch.ones_like(f, dtype=torch.bool) if mask is None else as_mask(mask, f)
    pf = fractions(((f >= threshold) & inside).to(torch.float64), int(scale))  # NaN >= thr is False
    po = fractions(((o >= threshold) & inside).to(torch.float64), int(scale))
    num = ((pf - po) ** 2).sum((-2, -1))
    den = (pf**2).sum((-2, -1)) + (po**2).sum((-2, -1))
    return torch.where(den > 0, 1.0 - num / den.clamp_min(1e-300), torch.full_like(den, float("nan")))
