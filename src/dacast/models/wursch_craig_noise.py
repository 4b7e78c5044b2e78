"""The Würsch-Craig model with its stochastic triggering, as a `dacast.models.Model`.

`WurschCraig.step` is deterministic; the triggering noise of
`WurschCraig.forecast` depends on ``(seed, global member, global step)``.
`TriggeredWurschCraig` fixes the seed and the member offset, and reads the
global step index off the time it is given, so the generic drivers
(`dacast.models.advance`, `dacast.models.integrate`) reproduce a forecast
bitwise.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from dacast.models.wursch_craig import WurschCraig


@dataclass(frozen=True)
class TriggeredWurschCraig:
    """`WurschCraig` steps with triggering noise; meets `dacast.models.Model` on gridded states.

    The step starting at time ``t`` (s) is global step ``round(t / model.config.dt)``,
    so ``advance(TriggeredWurschCraig(m, seed=s), x, n, m.config.dt, t0=j * m.config.dt)``
    equals ``m.forecast(x, n * m.config.dt, seed=s, start_step=j)`` bitwise.

    Attributes:
        model: the model (grid, constants, time step ``config.dt`` in s).
        seed: noise seed.
        member_offset: global member index of member 0 of the states it steps.
    """

    model: WurschCraig
    seed: int
    member_offset: int = 0

    @property
    def n_state(self) -> int:
        """Length of the flat state, ``4 * ny * nx`` (the model's)."""
        return self.model.n_state

    def step(self, x: Tensor, t: float, dt: float) -> Tensor:
        """Advance ``x`` from time ``t`` by ``dt``, with the triggering noise of those global steps.

        Args:
            x: states, shape ``(k, 4, ny, nx)`` (m/s, m/s, m, dimensionless); not modified.
            t: time at the start of the step (s), a multiple of ``model.config.dt``.
            dt: step length (s): ``model.config.dt`` (one model step) or a multiple of it.

        Returns:
            The states at ``t + dt``, shape ``(k, 4, ny, nx)``, dtype and device of ``x``.
        """
        start = round(t / self.model.config.dt)
        return self.model.forecast(x, dt, seed=self.seed, start_step=start, member_offset=self.member_offset)


__all__ = ["TriggeredWurschCraig"]
