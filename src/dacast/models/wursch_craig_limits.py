"""Würsch-Craig diagnostics and step limits: rain fraction, the stability checks of ``docs/bda_model.md``."""

from __future__ import annotations

import math

from torch import Tensor

from dacast.models.wursch_craig import WurschCraigConfig


def rain_fraction(x: Tensor, threshold: float = 0.01) -> Tensor:
    """Fraction of grid cells with ``r > threshold``, per member; ``x`` is ``(k, 4, ny, nx)`` -> ``(k,)``."""
    return (x[:, 3] > threshold).to(x.dtype).mean(dim=(-2, -1))


def unstable_step(config: WurschCraigConfig) -> str | None:
    """Why the time step of ``config`` surely blows up (the limits of ``docs/bda_model.md``), or None.

    Checks the gravity-wave Courant number ``sqrt(g H0) dt / dx <= 1/sqrt(2)``, diffusion
    ``max(ku, kh, kr) dt / dx^2 <= 1/4``, rain advection ``|background wind| dt / dx <= 1`` and
    rain removal ``alpha dt <= 1``; the message names the key to change.
    """
    m = config
    courant = math.sqrt(m.g * m.H0) * m.dt / m.dx
    if courant > 2**-0.5:
        return f"model.dt: gravity waves need sqrt(g H0) dt / dx <= 0.707, got {courant:.3g}"
    diffusion = max(m.ku, m.kh, m.kr) * m.dt / (m.dx * m.dx)
    if diffusion > 0.25:
        return f"model.dt: diffusion needs max(ku, kh, kr) dt / dx^2 <= 0.25, got {diffusion:.3g}"
    wind = max(abs(m.background_u), abs(m.background_v)) * m.dt / m.dx
    if wind > 1:
        return f"model.dt: rain advection needs |background wind| dt / dx <= 1, got {wind:.3g}"
    if m.alpha * m.dt > 1:
        return f"model.alpha: rain removal needs alpha dt <= 1, got {m.alpha * m.dt:.3g}"
    return None


__all__ = ["rain_fraction", "unstable_step"]
