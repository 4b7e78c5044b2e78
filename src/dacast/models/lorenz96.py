"""Lorenz (1996) model on a periodic ring of any size."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from dacast.geometry import Grid
from dacast.models.base import rk4_step


@dataclass(frozen=True, kw_only=True)
class Lorenz96:
    """Lorenz-96: dx_i/dt = (x_{i+1} - x_{i-2}) x_{i-1} - x_i + F, periodic in i.

    States have shape ``(*batch, n_state)``. ``F = 8`` gives the usual chaotic
    regime (Lyapunov time about 0.61 time units; dt = 0.05 is about 6 hours).
    """

    n_state: int = 40
    forcing: float = 8.0

    def __post_init__(self) -> None:
        if self.n_state < 4:
            raise ValueError(f"Lorenz96 needs n_state >= 4, got {self.n_state}")

    def tendency(self, x: Tensor, t: float = 0.0) -> Tensor:
        """Time derivative, shape ``(*batch, n)`` -> ``(*batch, n)``."""
        xp1 = torch.roll(x, -1, dims=-1)
        xm1 = torch.roll(x, 1, dims=-1)
        xm2 = torch.roll(x, 2, dims=-1)
        return (xp1 - xm2) * xm1 - x + self.forcing

    def step(self, x: Tensor, t: float, dt: float) -> Tensor:
        """One RK4 step; ``x`` has shape ``(*batch, n)``."""
        return rk4_step(self.tendency, x, t, dt)

    def default_initial_state(self, dtype: torch.dtype = torch.float64) -> Tensor:
        """F at every point with a small kick at index 0 (DAPPER's ``x0``), shape ``(n,)``."""
        x = torch.full((self.n_state,), self.forcing, dtype=dtype)
        x[0] += 0.01 * self.forcing if self.forcing != 0 else 0.01
        return x

    def grid(self) -> Grid:
        """Grid-point coordinates 0..n-1 on a ring of period n (for localization)."""
        coords = torch.arange(self.n_state, dtype=torch.float64)[:, None]
        return Grid(coords=coords, period=(float(self.n_state),))
