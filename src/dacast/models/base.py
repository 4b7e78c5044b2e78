"""The `Model` protocol and the one RK4 stepper every ODE model shares."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

Tendency = Callable[[Tensor, float], Tensor]


@runtime_checkable
class Model(Protocol):
    """Anything that advances a state (or an ensemble of states) by one step.

    Met by the Lorenz models here and by a trained ``torch.nn.Module`` alike.
    ``x`` has shape ``(*batch, n_state)``: any leading axes (members, ...)
    are batch axes and the result has the same shape and dtype.
    """

    n_state: int

    def step(self, x: Tensor, t: float, dt: float) -> Tensor:
        """Advance ``x`` (shape ``(*batch, n_state)``) from time ``t`` by ``dt``."""
        ...


def rk4_step(f: Tendency, x: Tensor, t: float, dt: float) -> Tensor:
    """One classical fourth-order Runge-Kutta step of ``dx/dt = f(x, t)``.

    Args:
        f: tendency, maps ``(*batch, n)`` to ``(*batch, n)`` (units of x per time unit).
        x: state, shape ``(*batch, n)``; not modified.
        t: time at the start of the step (model time units).
        dt: step length (model time units).

    Returns:
        The state at ``t + dt``, shape ``(*batch, n)``.
    """
    k1 = f(x, t)
    k2 = f(x + 0.5 * dt * k1, t + 0.5 * dt)
    k3 = f(x + 0.5 * dt * k2, t + 0.5 * dt)
    k4 = f(x + dt * k3, t + dt)
    return x + (dt / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


def advance(model: Model, x: Tensor, n_steps: int, dt: float, t0: float = 0.0) -> Tensor:
    """Run ``model`` for ``n_steps`` steps and return the last state only (no trajectory kept).

    Args:
        model: anything meeting the `Model` protocol.
        x: initial state, shape ``(*batch, n_state)``; not modified.
        n_steps: number of steps (>= 0); 0 returns ``x`` itself.
        dt: step length (model time units).
        t0: time of ``x``; step ``i`` starts at ``t0 + i * dt``.

    Returns:
        The state after ``n_steps`` steps, shape ``(*batch, n_state)``.
    """
    if n_steps < 0:
        raise ValueError(f"n_steps must be >= 0, got {n_steps}")
    for i in range(n_steps):
        x = model.step(x, t0 + i * dt, dt)
    return x


def integrate(model: Model, x0: Tensor, n_steps: int, dt: float, t0: float = 0.0) -> Tensor:
    """Run ``model`` for ``n_steps`` steps and keep every state.

    Args:
        model: anything meeting the `Model` protocol.
        x0: initial state, shape ``(*batch, n_state)``.
        n_steps: number of steps (>= 0).
        dt: step length (model time units).
        t0: initial time.

    Returns:
        Trajectory of shape ``(n_steps + 1, *batch, n_state)``, ``x0`` first.
    """
    if n_steps < 0:
        raise ValueError(f"n_steps must be >= 0, got {n_steps}")
    out = torch.empty((n_steps + 1, *x0.shape), dtype=x0.dtype, device=x0.device)
    out[0] = x0
    x = x0
    for i in range(n_steps):
        x = model.step(x, t0 + i * dt, dt)
        out[i + 1] = x
    return out
