"""Lorenz (1963) three-variable convection model."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from dacast.models.base import rk4_step


@dataclass(frozen=True, kw_only=True)
class Lorenz63:
    """Lorenz-63: dx/dt = σ(y - x), dy/dt = x(ρ - z) - y, dz/dt = xy - βz.

    States have shape ``(*batch, 3)`` (non-dimensional). Default parameters are
    the classical chaotic ones (σ=10, ρ=28, β=8/3).
    """

    sigma: float = 10.0
    rho: float = 28.0
    beta: float = 8.0 / 3.0
    n_state: int = 3

    def tendency(self, x: Tensor, t: float = 0.0) -> Tensor:
        """Time derivative, shape ``(*batch, 3)`` -> ``(*batch, 3)``."""
        x0, x1, x2 = x[..., 0], x[..., 1], x[..., 2]
        return torch.stack(
            (self.sigma * (x1 - x0), x0 * (self.rho - x2) - x1, x0 * x1 - self.beta * x2),
            dim=-1,
        )

    def step(self, x: Tensor, t: float, dt: float) -> Tensor:
        """One RK4 step; ``x`` has shape ``(*batch, 3)``."""
        return rk4_step(self.tendency, x, t, dt)

    def default_initial_state(self, dtype: torch.dtype = torch.float64) -> Tensor:
        """A point on the attractor (DAPPER's ``Lorenz63.x0``), shape ``(3,)``."""
        return torch.tensor([1.509, -1.531, 25.46], dtype=dtype)
