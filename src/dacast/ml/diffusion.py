"""Score-based diffusion: EDM denoisers, their training loss, and the noise schedule.

The formulation is the variance-exploding one of Karras et al. (2022, "EDM"):
a clean state ``x0`` is noised as ``x = x0 + sigma * eps`` and a network learns the
denoiser ``D(x, sigma) ~ E[x0 | x]``. Tweedie's formula turns it into the score
``grad log p_sigma(x) = (D(x, sigma) - x) / sigma**2`` and its Jacobian into the
posterior covariance ``Cov[x0 | x] = sigma**2 dD/dx``, which is what the posterior
sampler (`dacast.ml.diffusion_sampling`) needs to condition on observations.

The network is preconditioned as in EDM (``c_skip``, ``c_out``, ``c_in``,
``c_noise``), so it sees unit-variance inputs and targets at every noise level,
and it takes extra *conditioning* channels (for a filter: the forecast mean and
spread). `PeriodicDenoiserNet` is a small convolutional net with circular padding
for periodic 1-D (Lorenz-96) or 2-D (latent grids) states, modulated by the noise
level (FiLM).

Why written here rather than taken from a library: the only maintained PyTorch
package for this (``azula``) adds a dependency for about 60 lines of schedule and
preconditioning; the parts that are ours (the conditional prior, the likelihood
with the denoiser's Jacobian, the filter) are not in any package.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor, nn


class Denoiser(Protocol):
    """``D(x, sigma, cond)``: the expected clean state given a noisy one.

    ``x`` has shape ``(B, *state)``, ``sigma`` is a scalar noise level (state units)
    and ``cond`` ``(B, C, *grid)`` conditioning channels (or ``None``); returns ``(B, *state)``.
    """

    def __call__(self, x: Tensor, sigma: float, cond: Tensor | None) -> Tensor: ...


@dataclass(frozen=True, kw_only=True)
class DenoiserSpec:
    """Architecture of a `PeriodicDenoiserNet`.

    Attributes:
        dims: spatial dimensions of the state (1: ``(B, state_channels, n)``; 2: ``(B, state_channels, ny, nx)``).
        state_channels: channels of the diffused state.
        cond_channels: conditioning channels (0: unconditional).
        channels: hidden channels.
        layers: hidden convolutions (receptive field ``(kernel - 1) * (layers + 1) + 1`` cells).
        kernel: convolution width (odd).
        sigma_data: the standard deviation of the clean data (EDM preconditioning).
    """

    dims: int = 1
    state_channels: int = 1
    cond_channels: int = 2
    channels: int = 64
    layers: int = 6
    kernel: int = 5
    sigma_data: float = 1.0

    def __post_init__(self) -> None:
        if self.dims not in (1, 2):
            raise ValueError(f"dims must be 1 or 2, got {self.dims}")
        if self.kernel % 2 != 1 or self.kernel < 1:
            raise ValueError(f"kernel must be a positive odd number, got {self.kernel}")
        if min(self.state_channels, self.channels, self.layers) < 1 or self.cond_channels < 0:
            raise ValueError("state_channels, channels and layers must be >= 1 and cond_channels >= 0")
        if not (self.sigma_data > 0 and math.isfinite(self.sigma_data)):
            raise ValueError(f"sigma_data must be positive and finite, got {self.sigma_data}")


class PeriodicDenoiserNet(nn.Module):
    """An EDM-preconditioned denoiser: circular convolutions with noise-level FiLM; a `Denoiser`."""

    def __init__(self, spec: DenoiserSpec) -> None:
        super().__init__()
        self.spec = spec
        conv = nn.Conv1d if spec.dims == 1 else nn.Conv2d
        pad = spec.kernel // 2

        def layer(cin: int, cout: int) -> nn.Module:
            return conv(cin, cout, spec.kernel, padding=pad, padding_mode="circular")

        self.inp = layer(spec.state_channels + spec.cond_channels, spec.channels)
        self.hidden = nn.ModuleList(layer(spec.channels, spec.channels) for _ in range(spec.layers))
        self.out = layer(spec.channels, spec.state_channels)
        self.film = nn.Sequential(nn.Linear(8, 64), nn.SiLU(), nn.Linear(64, 2 * spec.channels * spec.layers))
        nn.init.zeros_(self.film[-1].weight)
        nn.init.zeros_(self.film[-1].bias)
        self.register_buffer("_freqs", torch.arange(1, 5, dtype=torch.float32) * math.pi / 2)

    def _embedding(self, c_noise: Tensor) -> Tensor:
        angles = c_noise[..., None] * self._freqs.to(c_noise)
        return torch.cat((angles.sin(), angles.cos()), dim=-1)

    def raw(self, x: Tensor, c_noise: Tensor, cond: Tensor | None) -> Tensor:
        """The unpreconditioned network ``F``: ``x`` ``(B, state_channels, *grid)``, ``c_noise`` ``(B,)``."""
        spec = self.spec
        h = x if cond is None else torch.cat((x, cond.to(x)), dim=1)
        h = nn.functional.silu(self.inp(h))
        film = self.film(self._embedding(c_noise)).reshape(x.shape[0], spec.layers, 2, spec.channels)
        film = film.reshape(*film.shape, *([1] * spec.dims))
        for i, conv in enumerate(self.hidden):
            h = h + conv(nn.functional.silu(h * (1 + film[:, i, 0]) + film[:, i, 1]))
        return self.out(nn.functional.silu(h))

    def forward(self, x: Tensor, sigma: float | Tensor, cond: Tensor | None = None) -> Tensor:
        """``D(x, sigma)``, shape of ``x`` ``(B, state_channels, *grid)``; ``sigma`` scalar or ``(B,)``."""
        sd = self.spec.sigma_data
        s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(x.shape[0])
        shape = (-1,) + (1,) * (x.ndim - 1)
        c_skip = sd**2 / (s**2 + sd**2)
        c_out = s * sd / (s**2 + sd**2).sqrt()
        c_in = 1 / (s**2 + sd**2).sqrt()
        f = self.raw(x * c_in.reshape(shape), s.log() / 4, cond)
        return c_skip.reshape(shape) * x + c_out.reshape(shape) * f


@dataclass(frozen=True, kw_only=True)
class NoiseSchedule:
    """Training noise levels (log-normal) and sampling levels (Karras et al. 2022, eqs. 5 and 269).

    Attributes:
        p_mean, p_std: ``ln sigma ~ N(p_mean, p_std**2)`` during training.
        sigma_min, sigma_max: the first and last sampling levels (state units).
        rho: curvature of the sampling levels (7 in EDM).
    """

    p_mean: float = -1.2
    p_std: float = 1.2
    sigma_min: float = 0.002
    sigma_max: float = 20.0
    rho: float = 7.0

    def __post_init__(self) -> None:
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {self.sigma_min}, {self.sigma_max}")
        if self.p_std <= 0 or self.rho <= 0:
            raise ValueError("p_std and rho must be positive")

    def sampling_sigmas(self, steps: int) -> Tensor:
        """``steps`` decreasing levels from ``sigma_max`` to ``sigma_min``, then 0: shape ``(steps + 1,)``, float64."""
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        i = torch.arange(steps, dtype=torch.float64) / max(steps - 1, 1)
        lo, hi = self.sigma_min ** (1 / self.rho), self.sigma_max ** (1 / self.rho)
        return torch.cat(((hi + i * (lo - hi)) ** self.rho, torch.zeros(1, dtype=torch.float64)))

    def training_sigmas(self, n: int, generator: torch.Generator) -> Tensor:
        """``n`` training noise levels, shape ``(n,)`` (CPU float64)."""
        return (self.p_mean + self.p_std * torch.randn(n, generator=generator, dtype=torch.float64)).exp()


def denoising_loss(
    net: PeriodicDenoiserNet,
    x0: Tensor,
    cond: Tensor | None,
    schedule: NoiseSchedule,
    generator: torch.Generator,
) -> Tensor:
    """EDM's weighted denoising loss of a batch ``x0`` ``(B, state_channels, *grid)`` (scalar).

    Noise levels and noise come from ``generator`` (CPU), so a run is reproducible on any device.
    The weight ``(sigma**2 + sd**2) / (sigma * sd)**2`` makes the loss unit-scale at every level.
    """
    b = x0.shape[0]
    sigma = schedule.training_sigmas(b, generator).to(x0)
    noise = torch.randn(x0.shape, generator=generator, dtype=torch.float64).to(x0)
    shape = (-1,) + (1,) * (x0.ndim - 1)
    noisy = x0 + sigma.reshape(shape) * noise
    sd = net.spec.sigma_data
    weight = (sigma**2 + sd**2) / (sigma * sd) ** 2
    err = (net(noisy, sigma, cond) - x0) ** 2
    return (weight.reshape(shape) * err).mean()


@dataclass(frozen=True)
class GaussianDenoiser:
    """The exact denoiser of a Gaussian prior ``N(mean, cov)`` on flat states ``(B, n)``: for tests and baselines.

    ``D(x, sigma) = mean + cov (cov + sigma**2 I)^-1 (x - mean)``.
    """

    mean: Tensor
    cov: Tensor

    def __call__(self, x: Tensor, sigma: float | Tensor, cond: Tensor | None = None) -> Tensor:
        """``(B, n)`` -> ``(B, n)``."""
        n = self.mean.shape[0]
        s2 = torch.as_tensor(sigma, dtype=x.dtype, device=x.device) ** 2
        cov = self.cov.to(x)
        gain = torch.linalg.solve(cov + s2 * torch.eye(n, dtype=x.dtype, device=x.device), cov).T
        mean = self.mean.to(x)
        return mean + (x - mean) @ gain.T


__all__ = [
    "Denoiser",
    "DenoiserSpec",
    "GaussianDenoiser",
    "NoiseSchedule",
    "PeriodicDenoiserNet",
    "denoising_loss",
]
