"""Gaussian smoothing of motion fields, plain and normalised (gap-filling).

Both work on the last two axes of a tensor with any leading axes, on CPU and
CUDA, with separable 1-D convolutions and replicate ("nearest") padding, like
``scipy.ndimage.gaussian_filter(..., mode="nearest")`` that pysteps uses.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def gaussian_kernel(sigma: float, *, truncate: float = 4.0, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Normalised 1-D Gaussian, shape ``(2r + 1,)`` with ``r = ceil(truncate * sigma)``."""
    radius = max(1, math.ceil(truncate * sigma))
    x = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(field: Tensor, sigma: float, *, truncate: float = 4.0) -> Tensor:
    """Gaussian filter over the last two axes with replicate padding.

    Args:
        field: any tensor of shape ``(..., H, W)`` (floating point).
        sigma: standard deviation in pixels; ``sigma <= 0`` returns a copy.
        truncate: kernel radius in units of ``sigma``.

    Returns:
        Smoothed tensor, shape ``(..., H, W)``.
    """
    if sigma <= 0:
        return field.clone()
    *lead, h, w = field.shape
    k = gaussian_kernel(sigma, truncate=truncate, dtype=field.dtype, device=field.device)
    r = k.numel() // 2
    x = field.reshape(-1, 1, h, w)
    # replicate padding is limited to the input size in some backends only for
    # reflect; replicate works for any radius
    x = F.pad(x, (r, r, 0, 0), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1))
    x = F.pad(x, (0, 0, r, r), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, -1, 1))
    return x.reshape(*lead, h, w)


def smooth_motion(field: Tensor, sigma: float, *, keep_magnitude: bool = False) -> Tensor:
    """Gaussian smoothing of a motion field.

    Args:
        field: motion field, shape ``(..., 2, H, W)`` [pixels per time step];
            component 0 is ``u`` (+x, east/columns), 1 is ``v`` (+y, rows down).
        sigma: Gaussian standard deviation [pixels].
        keep_magnitude: rescale the smoothed field so that its mean squared speed
            equals that of the input, as pysteps' Farneback wrapper does (smoothing
            otherwise damps the motion where directions vary).

    Returns:
        Smoothed motion field, shape ``(..., 2, H, W)`` [pixels per time step].
    """
    if field.ndim < 3 or field.shape[-3] != 2:
        raise ValueError(f"motion field must have shape (..., 2, H, W), got {tuple(field.shape)}")
    out = gaussian_blur(field, sigma)
    if keep_magnitude and sigma > 0:
        before = (field**2).sum(-3).mean((-2, -1), keepdim=True)
        after = (out**2).sum(-3).mean((-2, -1), keepdim=True)
        factor = torch.where(after > 0, torch.sqrt(before / after.clamp_min(1e-30)), torch.ones_like(after))
        out = out * factor.unsqueeze(-3)
    return out


def normalized_blur(values: Tensor, weight: Tensor, sigma: float) -> tuple[Tensor, Tensor]:
    """Normalised convolution: Gaussian-weighted mean of ``values`` where ``weight > 0``.

    Args:
        values: shape ``(..., C, H, W)``; entries with zero weight may hold anything finite.
        weight: non-negative weights, shape ``(..., H, W)``.
        sigma: Gaussian standard deviation [pixels].

    Returns:
        ``(mean, support)``: the weighted mean, shape ``(..., C, H, W)`` (0 where
        the support vanishes), and the smoothed weight, shape ``(..., H, W)``.
    """
    num = gaussian_blur(values * weight.unsqueeze(-3), sigma)
    den = gaussian_blur(weight, sigma)
    mean = num / den.clamp_min(1e-12).unsqueeze(-3)
    mean = torch.where(den.unsqueeze(-3) > 1e-6, mean, torch.zeros_like(mean))
    return mean, den
