"""An autoencoder of gridded model states: the latent space ``phi`` of the latent diffusion filter.

States ``(B, V, ny, nx)`` on a periodic grid (Würsch-Craig: ``u, v, h, r``) are
normalised per variable (rain by its logarithm, as reflectivity is logarithmic in rain,
so light and heavy rain both matter) and mapped by circular convolutions with one or two
stride-2 steps (``levels``) to ``phi`` ``(B, C, ny / 2**levels, nx / 2**levels)``; the decoder
mirrors it with nearest-neighbour upsampling. Both halves are translation-equivariant (up to the
stride), as the periodic twin is.

`train_autoencoder` fits the normalisation on the training states and the weights with
the surrogates' epoch loop (`dacast.ml.fitting.fit_epochs`: Adam, cosine schedule,
early stopping on a held-out tail); deterministic for a seed on the CPU.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from dacast.ml.fitting import FitHistory, fit_epochs

#: Added to the rain before its logarithm is taken (dimensionless rain; reflectivity of 1e-7 is about -31 dBZ).
RAIN_OFFSET = 1e-7


@dataclass(frozen=True, kw_only=True)
class AutoencoderSpec:
    """Architecture and normalisation of a `StateAutoencoder`.

    Attributes:
        variables: channels of the state (V).
        log_channels: indices of the variables normalised by ``log(x + RAIN_OFFSET)`` (rain).
        latent_channels: C, channels of ``phi``.
        levels: stride-2 steps (``phi`` has ``1 / 2**levels`` of the grid points per side; 1 or 2).
        width: hidden channels at the latent resolution (half a level finer, and so on).
        mean, std: per-variable normalisation ``(V,)`` (of the log for ``log_channels``), fitted on the data.
    """

    variables: int = 4
    log_channels: tuple[int, ...] = (3,)
    latent_channels: int = 8
    levels: int = 2
    width: int = 64
    mean: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        if len(self.mean) != self.variables or len(self.std) != self.variables:
            raise ValueError(f"mean and std need {self.variables} values, got {len(self.mean)} and {len(self.std)}")
        if not all(math.isfinite(m) for m in self.mean) or not all(s > 0 and math.isfinite(s) for s in self.std):
            raise ValueError(f"the normalisation is not finite and positive: mean {self.mean}, std {self.std}")
        if self.levels not in (1, 2):
            raise ValueError(f"levels must be 1 or 2, got {self.levels}")
        if self.latent_channels < 1 or self.width < 4 or any(not 0 <= c < self.variables for c in self.log_channels):
            raise ValueError("latent_channels >= 1, width >= 4 and log_channels among the variables are required")


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, padding_mode="circular")


class StateAutoencoder(nn.Module):
    """``encode``: states ``(B, V, ny, nx)`` -> ``phi`` ``(B, C, ny / f, nx / f)``, ``f = 2**levels``; ``decode``."""

    def __init__(self, spec: AutoencoderSpec) -> None:
        super().__init__()
        self.spec = spec
        c, v, levels = spec.latent_channels, spec.variables, spec.levels
        widths = [spec.width // 2 ** (levels - i) for i in range(levels + 1)]  # full resolution ... latent
        act = nn.SiLU
        enc: list[nn.Module] = [_conv(v, widths[0]), act()]
        for a, b in zip(widths[:-1], widths[1:], strict=True):
            enc += [_conv(a, b, 2), act(), _conv(b, b), act()]
        self.encoder = nn.Sequential(*enc, _conv(widths[-1], c))
        dec: list[nn.Module] = [_conv(c, widths[-1]), act(), _conv(widths[-1], widths[-1]), act()]
        for i in range(levels, 0, -1):
            a, b = widths[i], widths[i - 1]
            dec += [nn.Upsample(scale_factor=2), _conv(a, b), act()]
            dec += [_conv(b, b), act()] if i > 1 else [_conv(b, v)]
        self.decoder = nn.Sequential(*dec)
        log = torch.zeros(v, dtype=torch.bool)
        log[list(spec.log_channels)] = True
        self.register_buffer("log_mask", log[:, None, None])
        self.register_buffer("mean", torch.tensor(spec.mean, dtype=torch.float64)[:, None, None])
        self.register_buffer("std", torch.tensor(spec.std, dtype=torch.float64)[:, None, None])

    def normalise(self, x: Tensor) -> Tensor:
        """Physical states ``(B, V, ny, nx)`` -> normalised ones (same shape)."""
        safe = torch.where(self.log_mask, x.clamp_min(0), torch.ones_like(x))
        t = torch.where(self.log_mask, (safe + RAIN_OFFSET).log(), x)
        return (t - self.mean.to(x)) / self.std.to(x)

    def denormalise(self, t: Tensor) -> Tensor:
        """Inverse of `normalise` (rain ``exp(.) - RAIN_OFFSET``, at least 0)."""
        x = t * self.std.to(t) + self.mean.to(t)
        safe = torch.where(self.log_mask, x, torch.zeros_like(x))  # no exp of heights: inf * 0 gradients are NaN
        return torch.where(self.log_mask, (safe.exp() - RAIN_OFFSET).clamp_min(0), x)

    def encode(self, x: Tensor) -> Tensor:
        """``phi`` ``(B, C, ny/4, nx/4)`` of physical states ``(B, V, ny, nx)``."""
        return self.encoder(self.normalise(x))

    def decode(self, phi: Tensor) -> Tensor:
        """Physical states ``(B, V, ny, nx)`` of ``phi`` ``(B, C, ny/4, nx/4)``; differentiable."""
        return self.denormalise(self.decoder(phi))


@dataclass(frozen=True, kw_only=True)
class AutoencoderTrainConfig:
    """How the autoencoder is trained (fields read by `fit_epochs`, plus the architecture, normalisation and seed)."""

    log_channels: tuple[int, ...] = (3,)
    latent_channels: int = 8
    levels: int = 2
    width: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.0
    batch_size: int = 32
    epochs: int = 40
    patience: int = 8
    min_delta: float = 1e-3
    val_fraction: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or not 0 < self.val_fraction < 0.5:
            raise ValueError("epochs and batch_size must be >= 1 and val_fraction in (0, 0.5)")


def fit_normalisation(states: Tensor, log_channels: tuple[int, ...]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-variable mean and std ``(V,)`` of states ``(N, V, ny, nx)`` (of ``log(x + RAIN_OFFSET)`` for rain)."""
    x = states.double()
    means, stds = [], []
    for v in range(x.shape[1]):
        t = (x[:, v].clamp_min(0) + RAIN_OFFSET).log() if v in log_channels else x[:, v]
        means.append(float(t.mean()))
        stds.append(float(t.std()))
    return tuple(means), tuple(stds)


def train_autoencoder(
    states: Tensor, config: AutoencoderTrainConfig, *, device: str | torch.device = "cpu", progress: bool = False
) -> tuple[StateAutoencoder, dict[str, Any]]:
    """Train on states ``(N, V, ny, nx)`` (physical units; the last ``val_fraction`` held out): the model and a record.

    The loss is the mean squared error of the normalised reconstruction.
    """
    n_val = max(1, int(config.val_fraction * states.shape[0]))
    n_train = states.shape[0] - n_val
    mean, std = fit_normalisation(states[:n_train], config.log_channels)
    spec = AutoencoderSpec(variables=states.shape[1], log_channels=config.log_channels, levels=config.levels,
                           latent_channels=config.latent_channels, width=config.width, mean=mean, std=std)  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = StateAutoencoder(spec).to(device)
    target = model.normalise(states.float().to(device))

    def batch_loss(idx: Tensor) -> Tensor:
        return (model.decoder(model.encoder(target[idx])) - target[idx]).pow(2).mean()

    def val_loss() -> float:
        return float(batch_loss(torch.arange(n_train, states.shape[0], device=device)))

    start = time.perf_counter()
    history = fit_epochs(model, batch_loss=batch_loss, val_loss=val_loss, settings=config, n_train=n_train,
                         generator=torch.Generator().manual_seed(config.seed),
                         history=FitHistory(best_val=math.inf, best_epoch=-1), progress=progress)  # fmt: skip
    model.eval().requires_grad_(False)
    record = {"train": asdict(config), "samples": {"train": n_train, "validation": n_val},
              "best_epoch": history.best_epoch, "validation_loss": history.best_val,
              "epochs_run": len(history.val_loss), "seconds": time.perf_counter() - start}  # fmt: skip
    return model, record


__all__ = ["RAIN_OFFSET", "AutoencoderSpec", "AutoencoderTrainConfig", "StateAutoencoder", "fit_normalisation",
           "train_autoencoder"]  # fmt: skip
