"""Data-driven surrogate models that meet the `dacast.models.Model` protocol.

Both networks map a *history* of states ``(B, window, n_var)`` to the next
state ``(B, n_var)`` one analysis interval ``dt`` later, in residual form:
``x_next = anchor + delta_std * net(normalised history)``, where the anchor is

* ``base="none"``: the last state (a pure data-driven model), or
* ``base="lorenz63"`` / ``"lorenz96"``: the last state advanced by ``dt`` with a
  physical (imperfect) model in ``base_steps`` RK4 steps, so the network only
  learns the *model error* (a hybrid / residual correction, as in Brajard et
  al. 2021 and Farchi et al. 2021).

The normalisation buffers (state mean and std, residual std) are set from the
training data by `SurrogateNet.fit_normalization` and travel with the checkpoint.

* `LSTMSurrogate` (Goodliff & Miyoshi): an LSTM reads the window of past states.
  To meet the `Model` protocol the state is *delay-embedded*: ``n_state =
  window * n_var``, laid out ``(slot, var)`` with the newest state in the last
  slot. ``step`` predicts the next state, drops the oldest slot and appends the
  prediction. An observation operator reads the newest slot
  (`SurrogateNet.view`); a filter updates all slots (a fixed-lag smoother
  for the history).
* `ResidualCNN` (Brajard et al. 2020): periodic 1-D convolutions on a ring of
  ``n_var`` points with a bilinear (product) branch, window 1, so
  ``n_state = n_var`` and a filter sees the plain state.

``step`` refuses any ``dt`` other than the one the network was trained for.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from dacast.models import Lorenz63, Lorenz96, Model

SurrogateKind = Literal["lstm", "cnn"]
BaseName = Literal["none", "lorenz63", "lorenz96"]


@dataclass(frozen=True, kw_only=True)
class SurrogateSpec:
    """Architecture of a surrogate network.

    Attributes:
        kind: ``"lstm"`` or ``"cnn"``.
        n_var: number of modelled variables (grid points for the CNN).
        dt: the time step the network predicts (model time units, > 0).
        window: number of past states the network reads (CNN: must be 1).
        hidden: LSTM hidden size, or CNN channels per layer.
        layers: LSTM layers, or CNN hidden convolution layers.
        kernel: CNN kernel size (odd).
        base: physical model the network corrects (``"none"``: persistence anchor).
        base_forcing: Lorenz-96 forcing F of the base model.
        base_steps: RK4 steps of ``dt / base_steps`` the base model takes per surrogate step.
        linear_skip: LSTM only: add a linear map of the whole (normalised) window to the
            output, so the part of the increment that is linear in the history (a
            hidden linear oscillator driven by the modelled variables, say) needs no
            training of the recurrent weights.
    """

    kind: SurrogateKind
    n_var: int
    dt: float
    window: int = 8
    hidden: int = 64
    layers: int = 1
    kernel: int = 5
    base: BaseName = "none"
    base_forcing: float = 8.0
    base_steps: int = 1
    linear_skip: bool = False

    def __post_init__(self) -> None:
        if self.kind not in ("lstm", "cnn"):
            raise ValueError(f"surrogate kind must be 'lstm' or 'cnn', got {self.kind!r}")
        if self.n_var < 1:
            raise ValueError(f"n_var must be >= 1, got {self.n_var}")
        if not (math.isfinite(self.dt) and self.dt > 0):
            raise ValueError(f"dt must be > 0, got {self.dt}")
        if self.window < 1:
            raise ValueError(f"window must be >= 1, got {self.window}")
        if self.kind == "cnn" and self.window != 1:
            raise ValueError(f"the CNN surrogate reads one state (window 1), got window {self.window}")
        if self.hidden < 1 or self.layers < 1:
            raise ValueError(f"hidden and layers must be >= 1, got {self.hidden}, {self.layers}")
        if self.kernel < 1 or self.kernel % 2 == 0:
            raise ValueError(f"kernel must be odd and >= 1, got {self.kernel}")
        if self.base not in ("none", "lorenz63", "lorenz96"):
            raise ValueError(f"base must be none, lorenz63 or lorenz96, got {self.base!r}")
        if self.base == "lorenz63" and self.n_var != 3:
            raise ValueError(f"a lorenz63 base needs n_var 3, got {self.n_var}")
        if self.base == "lorenz96" and self.n_var < 4:
            raise ValueError(f"a lorenz96 base needs n_var >= 4, got {self.n_var}")
        if self.base_steps < 1:
            raise ValueError(f"base_steps must be >= 1, got {self.base_steps}")
        if self.linear_skip and self.kind != "lstm":
            raise ValueError("linear_skip is an LSTM option")


class SurrogateNet(nn.Module):
    """Shared part of the surrogates: normalisation, the residual step and the `Model` protocol."""

    def __init__(self, spec: SurrogateSpec) -> None:
        super().__init__()
        self.spec = spec
        self.n_var = spec.n_var
        self.window = spec.window
        self.n_state = spec.window * spec.n_var
        self.register_buffer("state_mean", torch.zeros(spec.n_var))
        self.register_buffer("state_std", torch.ones(spec.n_var))
        self.register_buffer("delta_std", torch.ones(spec.n_var))
        self.base_model: Model | None = None
        if spec.base == "lorenz63":
            self.base_model = Lorenz63()
        elif spec.base == "lorenz96":
            self.base_model = Lorenz96(n_state=spec.n_var, forcing=spec.base_forcing)

    def anchor(self, last: Tensor) -> Tensor:
        """What the network corrects: ``last`` (``(*batch, n_var)``) advanced by the base model, or ``last``."""
        if self.base_model is None:
            return last
        h = self.spec.dt / self.spec.base_steps
        x = last
        for i in range(self.spec.base_steps):
            x = self.base_model.step(x, i * h, h)
        return x

    @property
    def view(self) -> Tensor:
        """Indices of the newest state in the model state, shape ``(n_var,)``."""
        return torch.arange(self.n_state - self.n_var, self.n_state)

    def fit_normalization(self, history: Tensor, target: Tensor) -> None:
        """Set the normalisation from training pairs (statistics pooled over variables for the CNN).

        Args:
            history: shape ``(N, window, n_var)``.
            target: next states, shape ``(N, n_var)``.
        """
        states = history.reshape(-1, self.n_var).double()
        delta = target.double() - self.anchor(history[:, -1].double())
        mean, std, dstd = states.mean(0), states.std(0), delta.std(0)
        if self.spec.kind == "cnn":  # translation invariance: one value for every point
            mean, std, dstd = (v.mean().expand(self.n_var) for v in (mean, std, dstd))
        self.state_mean.copy_(mean)
        self.state_std.copy_(std.clamp_min(1e-6))
        self.delta_std.copy_(dstd.clamp_min(1e-6))

    def normalized_increment(self, history: Tensor) -> Tensor:
        """Network output ``(x_next - anchor) / delta_std``, ``(B, n_var)``, from a history ``(B, window, n_var)``."""
        raise NotImplementedError

    def forward(self, history: Tensor) -> Tensor:
        """The next state ``(B, n_var)`` from a history ``(B, window, n_var)`` (same dtype as the input).

        The anchor is computed in the input's dtype (float64 in DA), the network in its own.
        """
        p = next(self.parameters())
        h = history.to(dtype=p.dtype, device=p.device)
        corr = (self.delta_std * self.normalized_increment(h)).to(dtype=history.dtype, device=history.device)
        return self.anchor(history[:, -1]) + corr

    def _check_dt(self, dt: float) -> None:
        if not math.isclose(dt, self.spec.dt, rel_tol=1e-9, abs_tol=1e-12):
            raise ValueError(f"this surrogate was trained for steps of dt={self.spec.dt}; it cannot step by dt={dt}")

    def step(self, x: Tensor, t: float, dt: float) -> Tensor:
        """Advance ``x`` (shape ``(*batch, n_state)``) by one trained step ``dt``; ``t`` is unused.

        Raises:
            ValueError: ``dt`` differs from the trained step, or ``x`` has the wrong length.
        """
        self._check_dt(dt)
        if x.shape[-1] != self.n_state:
            raise ValueError(f"state must have {self.n_state} entries in its last axis, got {x.shape[-1]}")
        batch = x.shape[:-1]
        hist = x.reshape(-1, self.window, self.n_var)
        with torch.no_grad():
            nxt = self(hist)
        new = torch.cat((hist[:, 1:], nxt[:, None]), dim=1)
        return new.reshape(*batch, self.n_state)

    def embed(self, history: Tensor) -> Tensor:
        """Delay-embedded state ``(*batch, n_state)`` from a history ``(*batch, window, n_var)``."""
        return history.reshape(*history.shape[:-2], self.n_state)

    def to_dict(self) -> dict[str, Any]:
        """The architecture as plain values (for checkpoints)."""
        return asdict(self.spec)


class LSTMSurrogate(SurrogateNet):
    """An LSTM over the window of past states, a read-out of its last hidden state, an optional linear skip."""

    def __init__(self, spec: SurrogateSpec) -> None:
        if spec.kind != "lstm":
            raise ValueError(f"LSTMSurrogate needs kind 'lstm', got {spec.kind!r}")
        super().__init__(spec)
        self.lstm = nn.LSTM(spec.n_var, spec.hidden, num_layers=spec.layers, batch_first=True)
        self.head = nn.Sequential(nn.Linear(spec.hidden, spec.hidden), nn.GELU(), nn.Linear(spec.hidden, spec.n_var))
        self.skip = nn.Linear(spec.window * spec.n_var, spec.n_var) if spec.linear_skip else None

    def normalized_increment(self, history: Tensor) -> Tensor:
        """``(B, window, n_var)`` -> ``(B, n_var)``."""
        z = (history - self.state_mean) / self.state_std
        out, _ = self.lstm(z)
        inc = self.head(out[:, -1])
        if self.skip is not None:
            inc = inc + self.skip(z.flatten(1))
        return inc


class ResidualCNN(SurrogateNet):
    """Periodic 1-D CNN with a bilinear branch (Brajard et al. 2020), on a ring of ``n_var`` points."""

    def __init__(self, spec: SurrogateSpec) -> None:
        if spec.kind != "cnn":
            raise ValueError(f"ResidualCNN needs kind 'cnn', got {spec.kind!r}")
        super().__init__(spec)
        c, k = spec.hidden, spec.kernel

        def conv(i: int, o: int, kk: int = k) -> nn.Conv1d:
            return nn.Conv1d(i, o, kk, padding=kk // 2, padding_mode="circular")

        self.linear = conv(1, c)
        self.left = conv(1, c)
        self.right = conv(1, c)
        body: list[nn.Module] = []
        width = 3 * c
        for _ in range(spec.layers):
            body += [conv(width, c), nn.GELU()]
            width = c
        self.body = nn.Sequential(*body)
        self.out = conv(c, 1, 1)

    def normalized_increment(self, history: Tensor) -> Tensor:
        """``(B, 1, n_var)`` -> ``(B, n_var)``."""
        z = ((history[:, -1] - self.state_mean) / self.state_std)[:, None]  # (B, 1, n)
        a = self.linear(z)
        feats = torch.cat((a, torch.tanh(a), self.left(z) * self.right(z)), dim=1)
        return self.out(self.body(feats))[:, 0]


def build_surrogate(spec: SurrogateSpec, seed: int = 0) -> SurrogateNet:
    """A freshly initialised surrogate for ``spec``; weights drawn from a generator seeded with ``seed``."""
    devices: list[int] = []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        net: SurrogateNet = LSTMSurrogate(spec) if spec.kind == "lstm" else ResidualCNN(spec)
    return net


__all__ = [
    "BaseName",
    "LSTMSurrogate",
    "ResidualCNN",
    "SurrogateKind",
    "SurrogateNet",
    "SurrogateSpec",
    "build_surrogate",
]
