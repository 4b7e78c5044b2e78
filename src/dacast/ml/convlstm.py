"""ConvLSTM encoder–forecaster for radar nowcasting (Shi et al. 2015, 2017).

The network works in a *log-rain space*: a rain rate ``R`` in mm/h is mapped to

    z = log(1 + R / 1 mm h⁻¹)            (``rain_to_log``; 0 for no rain)

which keeps every value in roughly ``[0, 5.5]`` for ``R <= 200`` mm/h, so no
further normalisation is needed. ``log_to_rain`` is the inverse
``R = exp(z) - 1``. The network's output passes through a softplus, so
``z >= 0`` and therefore ``R >= 0``: the forecast is non-negative in rain
space by construction.

Architecture (``L = len(hidden_channels)`` levels, ``L = 3`` by default):

* **Encoder.** At every past step the frame goes through, for level
  ``l = 0 … L-1``, a stride-2 convolution (halving H and W) and a ConvLSTM
  cell with ``hidden_channels[l]`` channels, whose hidden state is the input
  of the next level.
* **Forecaster.** Copies the encoder's final states, then for every lead runs
  the levels top-down: ConvLSTM cell at level ``l`` (input: the upsampled
  output of level ``l+1``; none at the top), then a stride-2 transposed
  convolution doubling H and W. A 3×3 head maps to one channel at full size.
* **"ConvLSTM with obs + nowcasting"** (``use_extrapolation=True``): the
  conventional (extrapolation) nowcast for each lead, ``(B, T_out, C_extra, H, W)``
  in log-rain space, is encoded by its own stride-2 convolutions and joins the
  forecaster cell input at every level, and its full-size channels join the
  output head (a skip path that lets the net start from the extrapolation).

Peephole connections of Shi et al. (2015) are left out (as in Shi et al.
2017) so that one network runs on any grid size that is a multiple of
``2**L``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = [
    "ConvLSTMCell",
    "ConvLSTMConfig",
    "ConvLSTMNowcaster",
    "log_to_rain",
    "rain_to_log",
]

#: Largest log-rain value turned back into rain (about 1000 mm/h), keeping ``exp`` finite.
MAX_LOG_RAIN = math.log1p(1000.0)


def rain_to_log(rain: Tensor) -> Tensor:
    """Rain rate (mm/h, any shape, ``>= 0``) to log-rain ``z = log(1 + R)``; negatives are clipped to 0."""
    return torch.log1p(rain.clamp_min(0.0))


def log_to_rain(z: Tensor) -> Tensor:
    """Log-rain ``z`` (any shape) to rain rate ``R = exp(z) - 1`` in mm/h, clipped to ``[0, ~1000]``."""
    return torch.expm1(z.clamp(0.0, MAX_LOG_RAIN))


@dataclass(frozen=True, kw_only=True)
class ConvLSTMConfig:
    """Settings of `ConvLSTMNowcaster`.

    Attributes:
        t_in: number of past frames the encoder reads.
        t_out: number of lead times the forecaster emits.
        hidden_channels: ConvLSTM channels per level, finest first; each level halves H and W.
        kernel_size: odd spatial kernel of the ConvLSTM gates.
        in_channels: channels per past frame (1: log-rain).
        use_extrapolation: feed the extrapolation nowcast to the forecaster ("obs + nowcasting").
        extra_channels: channels per lead of that extra input (used only with ``use_extrapolation``).
        seed: seed of the weight initialisation (global RNG state is left untouched).
    """

    t_in: int = 6
    t_out: int = 12
    hidden_channels: tuple[int, ...] = (16, 32, 64)
    kernel_size: int = 3
    in_channels: int = 1
    use_extrapolation: bool = False
    extra_channels: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.t_in < 1 or self.t_out < 1:
            raise ValueError(f"t_in and t_out must be >= 1, got {self.t_in}, {self.t_out}")
        if not self.hidden_channels or min(self.hidden_channels) < 1:
            raise ValueError(f"hidden_channels must be non-empty positive ints, got {self.hidden_channels}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {self.kernel_size}")
        if self.in_channels < 1 or self.extra_channels < 1:
            raise ValueError("in_channels and extra_channels must be >= 1")

    @property
    def spatial_multiple(self) -> int:
        """H and W of the input must be multiples of this number (``2**levels``)."""
        return 2 ** len(self.hidden_channels)


class ConvLSTMCell(nn.Module):
    """One convolutional LSTM cell (Shi et al. 2015, without peepholes).

    Gates ``i, f, o, g = conv([x, h])``; ``c' = σ(f)·c + σ(i)·tanh(g)``;
    ``h' = σ(o)·tanh(c')``. The forget-gate bias starts at 1.

    Args:
        in_channels: channels of the input ``x`` (0: the cell has no input).
        hidden_channels: channels of ``h`` and ``c``.
        kernel_size: odd kernel size of the gate convolution.
    """

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.gates = nn.Conv2d(
            in_channels + hidden_channels, 4 * hidden_channels, kernel_size, padding=kernel_size // 2
        )
        with torch.no_grad():
            self.gates.bias.zero_()
            self.gates.bias[hidden_channels : 2 * hidden_channels].fill_(1.0)

    def init_state(self, batch: int, height: int, width: int, *, like: Tensor) -> tuple[Tensor, Tensor]:
        """Zero ``(h, c)``, each ``(batch, hidden, height, width)`` on ``like``'s device and dtype."""
        zeros = like.new_zeros(batch, self.hidden_channels, height, width)
        return zeros, zeros.clone()

    def forward(self, x: Tensor | None, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """One step.

        Args:
            x: input ``(B, in_channels, H, W)``, or None when ``in_channels == 0``.
            state: ``(h, c)``, each ``(B, hidden, H, W)``.

        Returns:
            The new ``(h, c)``; ``h`` is also the cell's output.
        """
        h, c = state
        inp = h if x is None else torch.cat([x, h], dim=1)
        i, f, o, g = self.gates(inp).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c


def _down(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.LeakyReLU(0.2))


def _up(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1), nn.LeakyReLU(0.2))


def add_levels(module: nn.Module, config: ConvLSTMConfig, *, top_extra: int = 0) -> None:
    """Give ``module`` the levels every ConvLSTM nowcaster shares (call it where the weights are seeded).

    Adds ``enc_down`` and ``enc_cells`` (encoder), ``ext_down`` (the extrapolation input's encoder, or
    None), ``fc_cells`` and ``fc_up`` (forecaster); the caller adds its output heads after them.

    Args:
        module: the network being built.
        config: its settings.
        top_extra: further input channels of the top (coarsest) forecaster cell (e.g. latent noise).
    """
    hid = config.hidden_channels
    n = len(hid)
    k = config.kernel_size
    extra = config.use_extrapolation
    module.enc_down = nn.ModuleList(_down(config.in_channels if i == 0 else hid[i - 1], hid[i]) for i in range(n))
    module.enc_cells = nn.ModuleList(ConvLSTMCell(hid[i], hid[i], k) for i in range(n))
    module.ext_down = (
        nn.ModuleList(_down(config.extra_channels if i == 0 else hid[i - 1], hid[i]) for i in range(n))
        if extra
        else None
    )
    # Forecaster input at level i: upsampled output of level i+1 (none at the top) + extrapolation features.
    fc_in = [(hid[i] if i < n - 1 else top_extra) + (hid[i] if extra else 0) for i in range(n)]
    module.fc_cells = nn.ModuleList(ConvLSTMCell(fc_in[i], hid[i], k) for i in range(n))
    module.fc_up = nn.ModuleList(_up(hid[i], hid[i - 1] if i > 0 else hid[0]) for i in range(n))


def check_inputs(config: ConvLSTMConfig, past: Tensor, extrapolation: Tensor | None, n_leads: int | None) -> int:
    """`ValueError` unless ``past`` ``(B, T_in, C_in, H, W)`` and ``extrapolation`` ``(B, T_out, C_extra, H, W)``
    (given iff ``config.use_extrapolation``) fit a nowcaster of ``config``; the number of leads to forecast
    (the extrapolation's length, else ``n_leads``, else ``config.t_out``)."""
    if past.ndim != 5:
        raise ValueError(f"past must be (B, T_in, C_in, H, W), got shape {tuple(past.shape)}")
    b, _, _, h, w = past.shape
    m = config.spatial_multiple
    if h % m or w % m:
        raise ValueError(f"H and W must be multiples of {m}, got {h}x{w} (see dacast.ml.predict for padding)")
    if config.use_extrapolation != (extrapolation is not None):
        raise ValueError(f"extrapolation must be {'given' if config.use_extrapolation else 'None'} for this model")
    if extrapolation is not None:
        if extrapolation.ndim != 5 or extrapolation.shape[0] != b or extrapolation.shape[-2:] != past.shape[-2:]:
            raise ValueError(f"extrapolation shape {tuple(extrapolation.shape)} does not match past")
        return extrapolation.shape[1]
    return config.t_out if n_leads is None else n_leads


def encode(module: nn.Module, past: Tensor) -> list[tuple[Tensor, Tensor]]:
    """Run the encoder of a module built by `add_levels` over ``past`` ``(B, T_in, C_in, H, W)`` (log-rain).

    Returns:
        The final ``(h, c)`` of every level ``l``, each ``(B, hidden_l, H / 2**(l+1), W / 2**(l+1))``.
    """
    b, t_in, _, h, w = past.shape
    n = len(module.enc_cells)
    x0 = module.enc_down[0](past.flatten(0, 1)).unflatten(0, (b, t_in))  # the first down-convolution, batched
    states = [cell.init_state(b, h >> (i + 1), w >> (i + 1), like=past) for i, cell in enumerate(module.enc_cells)]
    for t in range(t_in):
        x = x0[:, t]
        for i in range(n):
            if i > 0:
                x = module.enc_down[i](x)
            states[i] = module.enc_cells[i](x, states[i])
            x = states[i][0]
    return states


def extrapolation_features(module: nn.Module, extrapolation: Tensor | None) -> list[Tensor]:
    """The extrapolation input ``(B, T_out, C_extra, H, W)`` (log-rain) encoded for every level of a module
    built by `add_levels`, batched over leads: ``(B, T_out, hidden_l, H / 2**(l+1), W / 2**(l+1))`` per level
    (an empty list without it)."""
    if extrapolation is None or module.ext_down is None:
        return []
    b, n_leads = extrapolation.shape[:2]
    feats, e = [], extrapolation.flatten(0, 1)
    for down in module.ext_down:
        e = down(e)
        feats.append(e.unflatten(0, (b, n_leads)))
    return feats


class ConvLSTMNowcaster(nn.Module):
    """Multi-scale ConvLSTM encoder–forecaster; works in log-rain space (see module docstring).

    Args:
        config: the network's settings.
    """

    def __init__(self, config: ConvLSTMConfig) -> None:
        super().__init__()
        self.config = config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            add_levels(self, config)
            head_in = config.hidden_channels[0] + (config.extra_channels if config.use_extrapolation else 0)
            self.head = nn.Conv2d(head_in, 1, 3, padding=1)

    @property
    def spatial_multiple(self) -> int:
        """H and W of the input must be multiples of this number."""
        return self.config.spatial_multiple

    def forward(self, past: Tensor, extrapolation: Tensor | None = None, *, n_leads: int | None = None) -> Tensor:
        """Forecast from past frames.

        Args:
            past: past frames ``(B, T_in, C_in, H, W)`` in log-rain space, oldest first;
                H and W multiples of `spatial_multiple`.
            extrapolation: extrapolation nowcast ``(B, T_out, C_extra, H, W)`` in log-rain space
                (required iff ``config.use_extrapolation``).
            n_leads: number of leads (default ``config.t_out``; with ``extrapolation``, its length).

        Returns:
            Forecast ``(B, T_out, 1, H, W)`` in log-rain space, ``>= 0``.
        """
        n_leads = check_inputs(self.config, past, extrapolation, n_leads)
        n = len(self.config.hidden_channels)
        states = encode(self, past)
        ext_feats = extrapolation_features(self, extrapolation)  # per level: (B, T_out, C_i, H_i, W_i)

        # Forecaster.
        outs = []
        for t in range(n_leads):
            up: Tensor | None = None
            for i in reversed(range(n)):
                parts = [p for p in (up, ext_feats[i][:, t] if ext_feats else None) if p is not None]
                x = torch.cat(parts, dim=1) if parts else None
                states[i] = self.fc_cells[i](x, states[i])
                up = self.fc_up[i](states[i][0])
            assert up is not None
            head_in = up if extrapolation is None else torch.cat([up, extrapolation[:, t]], dim=1)
            outs.append(F.softplus(self.head(head_in)))
        return torch.stack(outs, dim=1)
