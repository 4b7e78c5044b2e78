"""Spatial and temporal discriminators against blurry nowcasts (after Ravuri et al. 2021, DGMR).

Both are small, spectrally normalised conv nets that read sequences in
log-rain space (`dacast.ml.rain_to_log`) and return raw logits (apply a
sigmoid for probabilities; `dacast.ml.nowcast_losses` uses
``binary_cross_entropy_with_logits``).

* `SpatialDiscriminator` judges single frames: it picks ``n_frames`` random
  lead times (the same for the whole batch), average-pools each frame by
  ``downsample``, and runs a 2-D conv net; one logit per chosen frame.
* `TemporalDiscriminator` judges the whole sequence — past context frames
  followed by the forecast — with a 3-D conv net; one logit per sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import spectral_norm

__all__ = ["DiscriminatorConfig", "SpatialDiscriminator", "TemporalDiscriminator"]


@dataclass(frozen=True, kw_only=True)
class DiscriminatorConfig:
    """Settings shared by both discriminators.

    Attributes:
        channels: output channels of the successive stride-2 convolutions.
        n_frames: frames the spatial discriminator judges per sequence (DGMR: 8 of 18).
        downsample: average-pooling factor applied to H and W before the convolutions.
        spectral_norm: wrap every convolution and the final linear layer in spectral normalisation.
        seed: seed of the weight initialisation (global RNG state is left untouched).
    """

    channels: tuple[int, ...] = (16, 32, 64)
    n_frames: int = 4
    downsample: int = 2
    spectral_norm: bool = True
    seed: int = 1

    def __post_init__(self) -> None:
        if not self.channels or min(self.channels) < 1:
            raise ValueError(f"channels must be non-empty positive ints, got {self.channels}")
        if self.n_frames < 1 or self.downsample < 1:
            raise ValueError("n_frames and downsample must be >= 1")


def _sn(module: nn.Module, enabled: bool) -> nn.Module:
    return spectral_norm(module) if enabled else module


class SpatialDiscriminator(nn.Module):
    """Per-frame 2-D conv discriminator.

    Args:
        config: discriminator settings.
        in_channels: channels per frame (1: log-rain).
    """

    def __init__(self, config: DiscriminatorConfig | None = None, *, in_channels: int = 1) -> None:
        super().__init__()
        self.config = config = config or DiscriminatorConfig()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            layers: list[nn.Module] = []
            cin = in_channels
            for cout in config.channels:
                layers += [_sn(nn.Conv2d(cin, cout, 3, stride=2, padding=1), config.spectral_norm), nn.LeakyReLU(0.2)]
                cin = cout
            self.body = nn.Sequential(*layers)
            self.out = _sn(nn.Linear(cin, 1), config.spectral_norm)

    def select_frames(self, n_time: int, *, generator: torch.Generator | None = None) -> Tensor:
        """Sorted random frame indices ``(min(n_frames, n_time),)`` drawn with ``generator`` (on CPU)."""
        k = min(self.config.n_frames, n_time)
        return torch.randperm(n_time, generator=generator)[:k].sort().values

    def forward(
        self, frames: Tensor, *, frame_idx: Tensor | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """Judge randomly chosen frames.

        Args:
            frames: forecast or observed frames ``(B, T, C, H, W)``, log-rain.
            frame_idx: frame indices ``(k,)`` to judge; drawn with `select_frames` when None.
            generator: random generator for drawing ``frame_idx``.

        Returns:
            Logits ``(B, k)``, one per judged frame.
        """
        b, t = frames.shape[:2]
        idx = self.select_frames(t, generator=generator) if frame_idx is None else frame_idx
        x = frames[:, idx.to(frames.device)].flatten(0, 1)
        if self.config.downsample > 1:
            x = F.avg_pool2d(x, self.config.downsample, ceil_mode=True)
        x = self.body(x).mean(dim=(-2, -1))
        return self.out(x).view(b, -1)


class TemporalDiscriminator(nn.Module):
    """3-D conv discriminator over a whole sequence (context + forecast).

    Each convolution has stride 2 in time and space, so any ``T >= 1`` works.

    Args:
        config: discriminator settings (``n_frames`` unused).
        in_channels: channels per frame (1: log-rain).
    """

    def __init__(self, config: DiscriminatorConfig | None = None, *, in_channels: int = 1) -> None:
        super().__init__()
        self.config = config = config or DiscriminatorConfig(seed=2)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            layers: list[nn.Module] = []
            cin = in_channels
            for cout in config.channels:
                layers += [_sn(nn.Conv3d(cin, cout, 3, stride=2, padding=1), config.spectral_norm), nn.LeakyReLU(0.2)]
                cin = cout
            self.body = nn.Sequential(*layers)
            self.out = _sn(nn.Linear(cin, 1), config.spectral_norm)

    def forward(self, sequence: Tensor) -> Tensor:
        """Judge a sequence.

        Args:
            sequence: frames ``(B, T, C, H, W)`` in log-rain, e.g. past context followed by the forecast.

        Returns:
            Logits ``(B,)``.
        """
        x = sequence.transpose(1, 2)  # (B, C, T, H, W)
        d = self.config.downsample
        if d > 1:
            x = F.avg_pool3d(x, (1, d, d), ceil_mode=True)
        x = self.body(x).mean(dim=(-3, -2, -1))
        return self.out(x).view(-1)
