"""The 5-variable coupled Lorenz-63 of Goodliff & Miyoshi (mission §S2).

A Lorenz-63 core (x0, x1, x2) coupled to a damped oscillator (x3, x4):

    dx0/dt = -σ(x0 - x1) + x4
    dx1/dt =  ρ x0 - x1 - x0 x2 + x3
    dx2/dt =  x0 x1 - β x2
    dx3/dt = -ω x4 - k(x3 - c) - x1
    dx4/dt =  ω(x3 - c) - k x4 - x0

with ``c = x3_star`` (variant "constant") or ``c = x1**2`` (variant "x1sq").
The paper's parameter values are not public; ours ("our reference setup")
are σ=10, ρ=28, β=8/3, ω=2, k=2, x3*=0 for the constant variant. The oscillator
is driven by the Lorenz core with a gain of about 1/(k+ω) and feeds back
a forcing of a few units, which shifts and roughens the two lobes without
destroying them (see ``tests/models/test_coupled_lorenz63.py``). The x1² variant uses
``coupling_scale`` (default 0.05) on ``x1**2`` so the oscillator's set point
stays within the attractor's range.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from dacast.models.base import rk4_step


@dataclass(frozen=True, kw_only=True)
class CoupledLorenz63:
    """Five-variable coupled Lorenz-63; states have shape ``(*batch, 5)``."""

    sigma: float = 10.0
    rho: float = 28.0
    beta: float = 8.0 / 3.0
    omega: float = 2.0
    damping: float = 2.0
    x3_star: float = 0.0
    variant: Literal["constant", "x1sq"] = "constant"
    coupling_scale: float = 0.05
    n_state: int = 5

    def __post_init__(self) -> None:
        if self.variant not in ("constant", "x1sq"):
            raise ValueError(f"variant must be 'constant' or 'x1sq', got {self.variant!r}")

    def tendency(self, x: Tensor, t: float = 0.0) -> Tensor:
        """Time derivative, shape ``(*batch, 5)`` -> ``(*batch, 5)``."""
        x0, x1, x2, x3, x4 = (x[..., i] for i in range(5))
        c = self.x3_star if self.variant == "constant" else self.coupling_scale * x1 * x1
        return torch.stack(
            (
                -self.sigma * (x0 - x1) + x4,
                self.rho * x0 - x1 - x0 * x2 + x3,
                x0 * x1 - self.beta * x2,
                -self.omega * x4 - self.damping * (x3 - c) - x1,
                self.omega * (x3 - c) - self.damping * x4 - x0,
            ),
            dim=-1,
        )

    def step(self, x: Tensor, t: float, dt: float) -> Tensor:
        """One RK4 step; ``x`` has shape ``(*batch, 5)``."""
        return rk4_step(self.tendency, x, t, dt)

    def default_initial_state(self, dtype: torch.dtype = torch.float64) -> Tensor:
        """Lorenz-63's attractor point with the oscillator at rest, shape ``(5,)``."""
        return torch.tensor([1.509, -1.531, 25.46, 0.0, 0.0], dtype=dtype)
