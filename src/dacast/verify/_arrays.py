"""Shared input handling of the verification functions."""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor

Array = Tensor | np.ndarray | ArrayLike


def as_float(x: Array) -> Tensor:
    """A float64 tensor view/copy of an array or tensor (device kept for tensors)."""
    t = x if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x))
    return t.to(torch.float64)


def paired(forecast: Array, observed: Array, mask: Array | None) -> tuple[Tensor, Tensor, Tensor]:
    """Float64 forecast and observation and the pixels valid in both (and in ``mask``).

    Args:
        forecast: shape ``(..., H, W)``.
        observed: same shape as ``forecast``.
        mask: optional boolean, broadcastable to ``(..., H, W)``; True = use.

    Returns:
        ``(forecast, observed, valid)`` with ``valid`` of the broadcast shape.
    """
    f, o = as_float(forecast), as_float(observed)
    o = o.to(f.device)
    if f.shape != o.shape:
        raise ValueError(f"forecast {tuple(f.shape)} and observed {tuple(o.shape)} differ in shape")
    if f.ndim < 2:
        raise ValueError("fields must have at least two axes (..., H, W)")
    valid = torch.isfinite(f) & torch.isfinite(o)
    if mask is not None:
        valid = valid & as_mask(mask, f)
    return f, o, valid


def as_mask(mask: Array, like: Tensor) -> Tensor:
    """Boolean tensor of ``mask`` on the device of ``like``, broadcast to its shape."""
    m = mask if isinstance(mask, Tensor) else torch.as_tensor(np.asarray(mask))
    return m.to(device=like.device, dtype=torch.bool).expand(like.shape)
