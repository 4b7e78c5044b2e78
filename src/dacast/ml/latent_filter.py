"""The latent diffusion filter: a forecast-error prior in an autoencoder's latent space, radar data through the decoder.

The talk's φ: gridded states ``x`` ``(V, ny, nx)`` are mapped by a `StateAutoencoder` to
``phi = E(x)`` ``(C, ny/4, nx/4)``. As the Lorenz-96 filter (`dacast.ml.diffusion_filter`)
learns ``p(e | m)`` of the forecast error, this one learns it in ``phi``::

    phi_f = E(mean of the forecast ensemble)      e = (E(x_true) - phi_f) / c     p(e | phi_f)

(``c`` ``(C,)`` the RMS latent error per channel of the training runs). Each cycle it draws
``k`` samples of ``p(e | phi_f, y)`` by guided diffusion and returns the analysis members::

    x_i = x_f + D(phi_f + c e_i) - D(phi_f)

the forecast mean plus *decoded increments*: what the decoder cannot represent of the forecast
(small cells, the decoder's bias) is kept instead of lost, and only the increments live in the
latent space. The observations enter through ``y = H(x_f + D(phi_f + c e) - D(phi_f))``: the
decoder and the radar operator (any `ObsOperator` on flat states), with SDA's diagonal
likelihood (`SamplerConfig.covariance` ``"diagonal"``), one vector-Jacobian product a step.
Rain below 0 in a decoded member is set to 0.

`save_latent_filter` / `load_latent_filter` keep both networks in one weights-only file with a
JSON card; a file for another grid, model or normalisation is refused in one line (`PriorMismatch`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from dacast.da import Analysis
from dacast.ml.diffusion import DenoiserSpec, PeriodicDenoiserNet
from dacast.ml.diffusion_filter import (
    PriorMismatch,
    load_weights,
    read_card,
    require_finite,
    require_model,
    save_weights,
    transport_start,
)
from dacast.ml.diffusion_sampling import GaussianLikelihood, SamplerConfig, posterior_sample
from dacast.ml.diffusion_train import DiffusionTrainConfig, train_denoiser
from dacast.ml.digest import tensors_sha256
from dacast.ml.latent import AutoencoderSpec, StateAutoencoder

#: Written into every checkpoint, so that another program's file is refused by name.
FORMAT = "dacast.latent_diffusion_filter/1"


@dataclass(frozen=True, kw_only=True)
class LatentPriorSpec:
    """What a latent forecast-error prior is made for.

    Attributes:
        grid: ``(ny, nx)`` of the states.
        model: settings of the model whose forecasts it learned (compared when loaded).
        latent_mean, latent_std: per-channel normalisation ``(C,)`` of ``phi_f`` (the conditioning channels).
        error_scale: ``c``, per-channel RMS of ``E(x_true) - phi_f`` in the training runs ``(C,)``.
        denoiser: the `DenoiserSpec` fields (2-D, ``C`` state and ``C`` conditioning channels).
    """

    grid: tuple[int, int]
    model: dict[str, Any]
    latent_mean: tuple[float, ...]
    latent_std: tuple[float, ...]
    error_scale: tuple[float, ...]
    denoiser: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        values = (*self.latent_mean, *self.latent_std, *self.error_scale)
        if not all(math.isfinite(v) for v in values) or min((*self.latent_std, *self.error_scale)) <= 0:
            raise PriorMismatch("the latent prior's normalisation is not finite and positive")


class LatentFilterModel(nn.Module):
    """The autoencoder and the latent error prior's denoiser, with the normalisations of both."""

    def __init__(self, autoencoder: AutoencoderSpec, prior: LatentPriorSpec) -> None:
        super().__init__()
        self.autoencoder = StateAutoencoder(autoencoder)
        self.spec = prior
        self.denoiser = PeriodicDenoiserNet(DenoiserSpec(**prior.denoiser))

    def _vec(self, values: tuple[float, ...], like: Tensor) -> Tensor:
        return torch.tensor(values, dtype=like.dtype, device=like.device)[:, None, None]

    def condition(self, phi_f: Tensor) -> Tensor:
        """Conditioning channels ``(B, C, h, w)`` of the forecast's latent state ``phi_f`` ``(B, C, h, w)``."""
        return (phi_f - self._vec(self.spec.latent_mean, phi_f)) / self._vec(self.spec.latent_std, phi_f)

    def scale(self, like: Tensor) -> Tensor:
        """``c`` as ``(C, 1, 1)``, dtype and device of ``like``."""
        return self._vec(self.spec.error_scale, like)


def train_latent_prior(
    autoencoder: StateAutoencoder,
    forecast_mean: Tensor,
    truth: Tensor,
    *,
    model: dict[str, Any],
    config: DiffusionTrainConfig,
    progress: bool = False,
) -> tuple[LatentFilterModel, dict[str, Any]]:
    """Fit the latent normalisation and train the error prior on forecast means and truths ``(N, V, ny, nx)``.

    The last ``config.val_fraction`` of the samples are held out. Returns the filter's networks and a record.
    """
    n_val = max(1, int(config.val_fraction * truth.shape[0]))
    n_train = truth.shape[0] - n_val
    with torch.no_grad():
        phi_f = torch.cat([autoencoder.encode(b) for b in forecast_mean.float().split(64)])
        phi_t = torch.cat([autoencoder.encode(b) for b in truth.float().split(64)])
    err, c = phi_t - phi_f, phi_f.shape[1]
    spec = LatentPriorSpec(
        grid=(int(truth.shape[-2]), int(truth.shape[-1])),
        model=dict(model),
        latent_mean=tuple(phi_f[:n_train].mean((0, 2, 3)).tolist()),
        latent_std=tuple(phi_f[:n_train].std((0, 2, 3)).tolist()),
        error_scale=tuple(err[:n_train].pow(2).mean((0, 2, 3)).sqrt().tolist()),
        denoiser=asdict(DenoiserSpec(dims=2, state_channels=c, cond_channels=c, channels=config.channels,
                                     layers=config.layers, kernel=config.kernel)),
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        filt = LatentFilterModel(autoencoder.spec, spec)
    filt.autoencoder.load_state_dict(autoencoder.state_dict())
    filt.autoencoder.requires_grad_(False)
    fit = train_denoiser(filt.denoiser, err / filt.scale(err), filt.condition(phi_f), n_train=n_train,
                         config=config, progress=progress, label="training latent prior")  # fmt: skip
    filt.eval().requires_grad_(False)
    record = {"train": {**asdict(config), "schedule": asdict(config.schedule)},
              "samples": {"train": n_train, "validation": n_val}, **fit,
              "training_data_sha256": tensors_sha256(forecast_mean, truth)}  # fmt: skip
    return filt, record


@dataclass
class LatentDiffusionAnalyser:
    """The latent diffusion filter as an analyser of the cycle engine: ``(prior, obs, hx, cycle) -> Analysis``.

    Attributes:
        model: the autoencoder and the latent prior.
        sampler: steps, noise levels, likelihood (``"diagonal"`` for radar volumes).
        generator: CPU random source of the samples.
        inflation: multiplies the error scale ``c`` (1: none).
    """

    model: LatentFilterModel
    sampler: SamplerConfig
    generator: torch.Generator
    inflation: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.inflation) and self.inflation > 0):
            raise ValueError(f"inflation must be positive and finite, got {self.inflation}")

    def __call__(self, prior: Tensor, obs: Any, hx: Tensor | None, cycle: int) -> Analysis:
        """The analysis ensemble ``(k, V, ny, nx)`` of the forecast ``prior`` (same shape) given ``obs``."""
        k, shape = prior.shape[0], prior.shape[1:]
        if tuple(shape[-2:]) != tuple(self.model.spec.grid):
            raise PriorMismatch(f"the latent filter is for a {self.model.spec.grid} grid, the ensemble has "
                                f"{tuple(shape[-2:])}")  # fmt: skip
        net = self.model
        dtype = next(net.parameters()).dtype
        x_f = prior.mean(0, keepdim=True).to(dtype)
        with torch.no_grad():
            phi_f = net.autoencoder.encode(x_f)
            base = net.autoencoder.decode(phi_f)
        scale = net.scale(phi_f) * self.inflation
        latent = phi_f.shape[1:]
        operator = obs.operator

        def members(z: Tensor) -> Tensor:
            return x_f + net.autoencoder.decode(phi_f + scale * z.reshape(-1, *latent)) - base

        likelihood = GaussianLikelihood(y=obs.y.to(dtype), operator=lambda z: operator(members(z).flatten(1)),
                                        error_std=operator.error_std.to(dtype))  # fmt: skip
        cond = net.condition(phi_f).expand(k, -1, -1, -1)
        start = None
        if self.sampler.transport:
            with torch.no_grad():
                errors = (net.autoencoder.encode(prior.to(dtype)) - phi_f) / scale
            start = transport_start(net.denoiser, errors, cond=cond, config=self.sampler)
        z = posterior_sample(net.denoiser, (k, *latent), cond=cond, likelihood=likelihood, config=self.sampler,
                             generator=self.generator, dtype=dtype, start=start)  # fmt: skip
        require_finite(z, "latent diffusion sampler")
        with torch.no_grad():
            ensemble = members(z)
        ensemble = torch.cat((ensemble[:, :-1], ensemble[:, -1:].clamp_min(0)), dim=1).to(prior)
        innovation = obs.y.to(prior) - operator(prior.flatten(1)).mean(0)
        return Analysis.of(ensemble, innovation)


def save_latent_filter(model: LatentFilterModel, path: str | Path, *, extra: dict[str, Any] | None = None) -> Path:
    """Write ``path`` (``.pt``, weights only) and ``path.json`` (both specs, SHA-256, ``extra``) atomically."""
    card = {"format": FORMAT, "autoencoder": asdict(model.autoencoder.spec), "prior": asdict(model.spec)}
    return save_weights(model, path, card, extra)


def load_latent_filter(path: str | Path, *, grid: tuple[int, int], model: dict[str, Any]) -> LatentFilterModel:
    """Read a file of `save_latent_filter`; one-line `PriorMismatch` when it does not fit ``grid`` and ``model``."""
    path = Path(path)
    card = read_card(path, FORMAT, "latent diffusion filter")
    try:
        ae = AutoencoderSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in card["autoencoder"].items()})
        spec = LatentPriorSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in card["prior"].items()})
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, PriorMismatch):
            raise
        raise PriorMismatch(f"{path}: cannot read the filter's card ({exc})") from None
    if tuple(spec.grid) != tuple(grid):
        have, need = "x".join(map(str, spec.grid)), "x".join(map(str, grid))
        raise PriorMismatch(f"{path}: the filter is for a {have} grid (need {need})")
    require_model(path, spec.model, model)
    return load_weights(LatentFilterModel(ae, spec), path)  # type: ignore[return-value]


__all__ = ["FORMAT", "LatentDiffusionAnalyser", "LatentFilterModel", "LatentPriorSpec", "load_latent_filter",
           "save_latent_filter", "train_latent_prior"]  # fmt: skip
