"""A physical model run on a delay-embedded state: the imperfect model as a fixed-lag smoother."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from dacast.models import Model, advance


@dataclass(frozen=True, eq=False)
class DelayEmbedded:
    """A physical model run on a delay-embedded state (the same layout as an LSTM surrogate's).

    The state ``(*batch, window * n_var)`` holds the last ``window`` states,
    oldest first; ``step`` advances the newest by ``steps`` steps of ``dt / steps``
    with ``model`` and shifts the window. Filtering this state is a fixed-lag
    smoother of lag ``window - 1`` for the physical model.
    """

    model: Model
    window: int
    steps: int = 1

    @property
    def n_var(self) -> int:
        """Variables per slot."""
        return self.model.n_state

    @property
    def n_state(self) -> int:  # type: ignore[override]
        """``window * n_var``."""
        return self.window * self.model.n_state

    @property
    def view(self) -> Tensor:
        """Indices of the newest slot, shape ``(n_var,)``."""
        return torch.arange(self.n_state - self.n_var, self.n_state)

    def step(self, x: Tensor, t: float, dt: float) -> Tensor:
        """Advance the newest slot by ``dt`` (in ``steps`` sub-steps) and shift the window."""
        hist = x.reshape(*x.shape[:-1], self.window, self.n_var)
        new = advance(self.model, hist[..., -1, :], self.steps, dt / self.steps, t0=t)
        return torch.cat((hist[..., 1:, :], new[..., None, :]), dim=-2).reshape(x.shape)


__all__ = ["DelayEmbedded"]
