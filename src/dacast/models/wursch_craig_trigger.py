"""The Würsch-Craig model's triggering noise pieces and its member chunks: an integer hash, the perturbation patch.

The triggering perturbations are a deterministic function of ``(seed, member,
step)`` (`WurschCraig.forecast`): `hash31` mixes those integers, and
`noise_patches` is the integer-valued shape of one convergent perturbation,
so that sums of patches are exact in any order (chunks, windows, devices).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from dacast.models.wursch_craig import WurschCraigConfig

MASK31 = (1 << 31) - 1
NOISE_QUANTUM = 1 << 12  # patch values are stored as integers in units of amplitude / 4096


def hash31(x: Tensor) -> Tensor:
    """A 31-bit integer mixer (int64 in, int64 in ``[0, 2**31)`` out); no overflow anywhere."""
    for mult, add in ((1103515245, 12345), (69069, 2891336453 & MASK31), (1664525, 1013904223)):
        x = x & MASK31
        x = x ^ (x >> 15)
        x = (x * mult + add) & MASK31
        x = x ^ (x >> 13)
    return x & MASK31


def noise_patches(config: WurschCraigConfig, device: torch.device) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Integer patch values of one convergent perturbation and their offsets.

    Returns ``(du, dv, oy, ox)``, each ``(P,)``: ``du``/``dv`` in units of
    ``noise_amplitude / 4096`` at ``u``/``v`` points offset ``(oy, ox)``
    from the perturbation's centre cell.
    """
    ell = config.noise_radius / config.dx
    w = max(1, math.ceil(3.0 * ell))
    off = torch.arange(-w, w + 1, dtype=torch.float64)
    oy, ox = torch.meshgrid(off, off, indexing="ij")
    # u at (j, i + 1/2), v at (j + 1/2, i); the wind points at the centre (convergence)
    norm = math.exp(0.5)  # max of s exp(-s^2/2) is exp(-1/2)

    def patch(along: Tensor, across: Tensor) -> Tensor:
        s = along / ell
        val = -norm * s * torch.exp(-0.5 * (s * s + (across / ell) ** 2))
        return torch.round(val * NOISE_QUANTUM).to(torch.int32)

    du = patch(ox + 0.5, oy).reshape(-1)
    dv = patch(oy + 0.5, ox).reshape(-1)
    keep = (du != 0) | (dv != 0)
    return (
        du[keep].to(device),
        dv[keep].to(device),
        oy.reshape(-1)[keep].to(torch.int64).to(device),
        ox.reshape(-1)[keep].to(torch.int64).to(device),
    )


def default_chunk(x: Tensor) -> int:
    """Members advanced together for states ``x`` ``(k, 4, ny, nx)``.

    On a CPU about a megabyte per field: 4 members at 256^2 (measured fastest there), 16 on a 128^2
    tile; on CUDA as many members as fit a quarter of the free device memory at ~24 fields of
    ``(ny, nx)`` each (a step's temporaries), at least 4.
    """
    if x.device.type != "cuda":
        return max(1, (4 * 256 * 256) // (x.shape[-2] * x.shape[-1]))
    free, _ = torch.cuda.mem_get_info(x.device)
    return max(4, min(x.shape[0], int(free // 4 // (24 * x[0, 0].numel() * x.element_size()))))


__all__ = ["MASK31", "NOISE_QUANTUM", "default_chunk", "hash31", "noise_patches"]
