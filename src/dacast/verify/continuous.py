"""Continuous scores over the pixels valid in both fields."""

from __future__ import annotations

import torch
from torch import Tensor

from dacast.verify._arrays import Array, paired


def mae(forecast: Array, observed: Array, mask: Array | None = None) -> Tensor:
    """Mean absolute error over the last two axes.

    Args:
        forecast: shape ``(..., H, W)`` [e.g. mm/h]; NaN = missing.
        observed: same shape and units.
        mask: optional boolean, broadcastable to ``(..., H, W)``; True = verify.

    Returns:
        MAE, shape ``(...)`` [units of the input]; NaN where no pixel is valid.
    """
    f, o, valid = paired(forecast, observed, mask)
    err = torch.where(valid, (f - o).abs(), torch.zeros_like(f)).sum((-2, -1))
    n = valid.sum((-2, -1)).to(torch.float64)
    return torch.where(n > 0, err / n.clamp_min(1.0), torch.full_like(err, float("nan")))
