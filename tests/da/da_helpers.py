"""Shared helpers for the filter tests (imported by name; not a conftest): seeded ensembles on a ring."""

from __future__ import annotations

import math

import torch


def ring_ensemble(k: int, n: int, seed: int, spread: float = 1.0) -> torch.Tensor:
    """A ``(k, n)`` ensemble with spatially correlated anomalies on a ring (float64)."""
    gen = torch.Generator().manual_seed(seed)
    mean = 2.3 + 3.6 * torch.sin(2 * math.pi * torch.arange(n, dtype=torch.float64) / n * 3)
    white = torch.randn((k, n), generator=gen, dtype=torch.float64)
    smooth = (white + torch.roll(white, 1, -1) + torch.roll(white, -1, -1)) / math.sqrt(3)
    return mean + spread * smooth


def noisy_obs(truth_like: torch.Tensor, seed: int, scale: float = 1.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return truth_like + scale * torch.randn(truth_like.shape, generator=gen, dtype=truth_like.dtype)
