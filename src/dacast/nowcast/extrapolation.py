"""Semi-Lagrangian backward extrapolation (Germann & Zawadzki 2002) and persistence.

For every target pixel ``x`` and lead time ``n`` the trajectory is traced
*backward* along the motion field, which is held stationary in time (Eulerian
persistence of the motion, pysteps' default). Each step uses pysteps' midpoint
rule (``pysteps.extrapolation.semilagrangian.extrapolate``): with ``substeps``
= pysteps' ``n_iter`` sub-steps of length ``1 / substeps``,

    inc = V(x + D - inc / 2) / substeps;  D <- D - inc;  inc <- V(x + D) / substeps

where ``V`` is sampled bilinearly with edge clamping (``map_coordinates(...,
order=1, mode="nearest")`` in pysteps). The field at lead ``n`` is the initial
field sampled bilinearly at ``x + D_n`` (pysteps' default ``interp_order=1``)
with ``torch.nn.functional.grid_sample``; all leads and batch members are one
``grid_sample`` call. Samples whose bilinear stencil leaves the grid are NaN
(pysteps' ``outval=nan``). NaN inside the initial field is handled by
normalised interpolation: the valid neighbours are re-weighted, and the result
is NaN where the valid weight is below one half.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _base_grid(h: int, w: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Pixel coordinates, shape ``(2, H, W)``: x (column) first, y (row) second."""
    ys = torch.arange(h, dtype=dtype, device=device)
    xs = torch.arange(w, dtype=dtype, device=device)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx, yy])


def _normalise(coords: Tensor, h: int, w: int) -> Tensor:
    """Pixel coordinates ``(..., 2, H, W)`` -> grid_sample grid ``(..., H, W, 2)`` (align_corners=True)."""
    gx = coords[..., 0, :, :] * (2.0 / max(w - 1, 1)) - 1.0
    gy = coords[..., 1, :, :] * (2.0 / max(h - 1, 1)) - 1.0
    return torch.stack([gx, gy], -1)


def _sample_motion(motion: Tensor, coords: Tensor) -> Tensor:
    """Bilinear, edge-clamped sample of ``motion`` (B, 2, H, W) at pixel ``coords`` (B, 2, H, W)."""
    h, w = motion.shape[-2:]
    return F.grid_sample(motion, _normalise(coords, h, w), mode="bilinear", padding_mode="border", align_corners=True)


def displacements(motion: Tensor, n_leads: int, *, substeps: int = 1) -> Tensor:
    """Backward displacement of every pixel for lead times ``1..n_leads``.

    Args:
        motion: motion field, shape ``(B, 2, H, W)`` [pixels per time step],
            ``u`` (+x) first, ``v`` (+y, rows downward) second.
        n_leads: number of time steps.
        substeps: sub-steps per time step (pysteps' ``n_iter``, default 1).

    Returns:
        ``D``, shape ``(B, n_leads, 2, H, W)`` [pixels]: the departure point of
        the trajectory arriving at ``x`` after ``n`` steps is ``x + D[:, n - 1]``.
    """
    if substeps < 1:
        raise ValueError(f"substeps must be >= 1, got {substeps}")
    h, w = motion.shape[-2:]
    base = _base_grid(h, w, motion.dtype, motion.device)
    disp = torch.zeros_like(motion)
    inc = motion / substeps
    out = []
    for _ in range(n_leads):
        for _ in range(substeps):
            inc = _sample_motion(motion, base + disp - inc / 2.0) / substeps
            disp = disp - inc
            inc = _sample_motion(motion, base + disp) / substeps
        out.append(disp)
    return torch.stack(out, 1)


def extrapolate(frame: Tensor, motion: Tensor, n_leads: int, *, substeps: int = 1) -> Tensor:
    """Semi-Lagrangian backward extrapolation of ``frame`` along a stationary motion field.

    Args:
        frame: initial field, shape ``(H, W)`` or ``(B, H, W)``, any units;
            NaN = missing.
        motion: motion field, shape ``(2, H, W)`` (shared by the batch) or
            ``(B, 2, H, W)`` [pixels per time step], ``u`` (+x, columns) first,
            ``v`` (+y, rows downward) second.
        n_leads: number of lead times (time steps of the motion field).
        substeps: sub-steps per time step of the trajectory integration.

    Returns:
        Extrapolated fields, shape ``(n_leads, H, W)`` or ``(B, n_leads, H, W)``,
        same units, dtype and device as ``frame``; NaN where the trajectory
        starts outside the grid or in missing data. Integer uniform motions
        reproduce exact shifts; use float64 for shifts exact to 1e-6 on large
        grids (float32 grid coordinates carry ~1e-5 pixel rounding).
    """
    if n_leads < 0:
        raise ValueError(f"n_leads must be >= 0, got {n_leads}")
    batched = frame.ndim == 3
    if frame.ndim not in (2, 3):
        raise ValueError(f"frame must have shape (H, W) or (B, H, W), got {tuple(frame.shape)}")
    x = frame if batched else frame.unsqueeze(0)
    b, h, w = x.shape
    if motion.shape[-3:] != (2, h, w) or motion.ndim not in (3, 4):
        raise ValueError(f"motion must have shape (2, {h}, {w}) or (B, 2, {h}, {w}), got {tuple(motion.shape)}")
    if not x.is_floating_point():
        x = x.float()
    mot = motion.to(x.dtype).expand(b, 2, h, w) if motion.ndim == 3 else motion.to(x.dtype)
    if n_leads == 0:
        return x.new_empty((b, 0, h, w) if batched else (0, h, w))
    disp = displacements(mot, n_leads, substeps=substeps)  # (B, n, 2, H, W)
    coords = _base_grid(h, w, x.dtype, x.device) + disp
    grid = _normalise(coords, h, w).reshape(b, n_leads * h, w, 2)
    valid = torch.isfinite(x)
    stack = torch.stack([torch.where(valid, x, torch.zeros_like(x)), valid.to(x.dtype), torch.ones_like(x)], 1)
    s = F.grid_sample(stack, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    s = s.view(b, 3, n_leads, h, w)
    value, weight, inside = s[:, 0], s[:, 1], s[:, 2]
    ok = (inside > 1.0 - 1e-3) & (weight >= 0.5 - 1e-6)
    out = torch.where(ok, value / weight.clamp_min(1e-12), torch.full_like(value, float("nan")))
    return out if batched else out[0]


def persistence(frame: Tensor, n_leads: int) -> Tensor:
    """Eulerian persistence: the last observed field repeated.

    Args:
        frame: last field, shape ``(H, W)`` or ``(B, H, W)``, any units.
        n_leads: number of lead times.

    Returns:
        Shape ``(n_leads, H, W)`` or ``(B, n_leads, H, W)``, a copy.
    """
    if n_leads < 0:
        raise ValueError(f"n_leads must be >= 0, got {n_leads}")
    if frame.ndim not in (2, 3):
        raise ValueError(f"frame must have shape (H, W) or (B, H, W), got {tuple(frame.shape)}")
    return frame.unsqueeze(-3).expand(*frame.shape[:-2], n_leads, *frame.shape[-2:]).clone()
