"""Radially averaged power spectrum: shows how extrapolation smooths (blurs) small scales."""

from __future__ import annotations

import torch
from torch import Tensor

from dacast.verify._arrays import Array, as_float


def radial_power_spectrum(field: Array, *, pixel_size: float = 1.0) -> tuple[Tensor, Tensor]:
    """Power spectrum averaged over rings of equal wavenumber.

    Args:
        field: shape ``(..., H, W)``, any units; NaN is set to 0 (fill it
            beforehand if 0 is not a neutral value, e.g. subtract the mean).
        pixel_size: grid spacing [e.g. km].

    Returns:
        ``(wavenumber, power)``: ``wavenumber`` of shape ``(n,)`` in cycles per
        unit of ``pixel_size`` (ring centres ``i / (L * pixel_size)``,
        ``L = max(H, W)``, ``i = 0 .. L // 2``), and ``power`` of shape
        ``(..., n)``: the mean of ``|FFT|^2 / (H W)`` over each ring (the
        normalisation of pysteps' ``rapsd``).
    """
    if not pixel_size > 0:
        raise ValueError(f"pixel_size must be positive, got {pixel_size}")
    x = as_float(field).nan_to_num(nan=0.0)
    *lead, h, w = x.shape
    length = max(h, w)
    spec = torch.fft.fft2(x).abs() ** 2 / (h * w)
    ky = torch.fft.fftfreq(h, dtype=torch.float64, device=x.device)
    kx = torch.fft.fftfreq(w, dtype=torch.float64, device=x.device)
    k = torch.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)
    idx = torch.round(k * length).long().flatten()
    n_bins = length // 2 + 1
    keep = idx < n_bins
    flat = spec.reshape(-1, h * w)[:, keep]
    idx = idx[keep]
    power = torch.zeros(flat.shape[0], n_bins, dtype=torch.float64, device=x.device).index_add_(1, idx, flat)
    ones = torch.ones_like(idx, dtype=torch.float64)
    count = torch.zeros(n_bins, dtype=torch.float64, device=x.device).index_add_(0, idx, ones)
    power = power / count.clamp_min(1.0)
    wavenumber = torch.arange(n_bins, dtype=torch.float64, device=x.device) / (length * pixel_size)
    return wavenumber, power.reshape(*lead, n_bins)
