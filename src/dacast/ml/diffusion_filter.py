"""A diffusion filter: each cycle, k posterior samples of a learned forecast-error prior given the observations.

The design (documented in ``docs/diffusion_da.md``): the forecast ensemble supplies its
mean ``m``; a conditional diffusion model has learned the distribution of the forecast
error in units of a fixed scale ``c`` (the training runs' RMS forecast error)::

    e = (x_true - m) / c        p(e | m)   (a `PeriodicDenoiserNet` with m as conditioning channel)

from forecast/truth pairs of filter runs in a training period. The analysis draws
``k`` samples of ``p(e | m, y)`` by guided diffusion (`posterior_sample`), with the
observations entering through the likelihood of ``x = m + c e`` (any ``h``, linear
or not), and returns ``x = m + c e`` as the analysis ensemble. So the prior is
flow-dependent (through ``m`` and the learned correlations), the observation network
and operator can change without retraining, and the ensemble size is free: the
ensemble carries the flow (its mean), the network the uncertainty.

What did not work (kept as options, measured in ``docs/diffusion_da.md``): conditioning on
the forecast spread as well (``spread_channel``), and standardising the error by it. The
analysis members are independent samples, whose anomalies do not lie in the growing
directions as a Kalman filter's do; their forecast spread grows less than the LETKF's
from which the prior learned what a spread means, so the prior reads the ensemble as
more certain than it is, narrows, and the run loses the truth within tens of cycles
(spread 0.15 at RMSE 1.1).

Members drawn or moved (`SamplerConfig.transport`): drawn independently, the analysis
members forget their forecasts. Moved, each forecast member's error ``(x_i - m) / c`` is
carried by the prior's probability-flow ODE up to the largest noise level
(`prior_to_noise`), the latents are centred and scaled to the unit noise variable by
variable (`transport_latents`), and the guided sampler carries them down to the
posterior: a deterministic map from forecast to analysis members, which keeps each
member's place in the ensemble (as a square-root Kalman filter keeps its anomalies in
the forecast's growing directions) while the prior and the observations set the mean
and the spread.

A hybrid prior (`dacast.ml.diffusion_hybrid.EnsembleBlend`): the learned denoiser blended with the
exact denoiser of the forecast members' localized Gaussian, as hybrid variational DA blends a static
with an ensemble covariance; the learned prior knows the errors of many forecasts, the ensemble
those of today's.

`DiffusionAnalyser` meets the cycle engine's ``analyse(prior, observation, hx, cycle)``.
A sample that is not finite raises `AnalysisFailed` (the engine stops the run and
records the cycle); collapse (spread -> 0) is left to the caller's divergence check,
as for every filter.
"""

from __future__ import annotations

import json
import math
import pickle
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from dacast.atomic import write_atomic
from dacast.da import Analysis, AnalysisFailed
from dacast.ml.diffusion import DenoiserSpec, PeriodicDenoiserNet
from dacast.ml.diffusion_hybrid import EnsembleBlend
from dacast.ml.diffusion_sampling import GaussianLikelihood, SamplerConfig, posterior_sample, prior_to_noise
from dacast.ml.digest import tensors_sha256
from dacast.obs.operators import ObsOperator

#: Written into every checkpoint, so that another program's file is refused by name.
FORMAT = "dacast.diffusion_prior/1"


class PriorMismatch(ValueError):
    """A checkpoint that does not fit the experiment (state size, model, observation network, normalisation)."""


@dataclass(frozen=True, kw_only=True)
class ErrorPriorSpec:
    """What a forecast-error prior is made for, and its network.

    Attributes:
        n_state: state length (periodic 1-D state).
        model: the settings of the model whose forecasts it learned (name, forcing, dt, steps per cycle).
        networks: names of the observation networks of the training filter runs.
        state_mean, state_std: normalisation of the forecast mean (conditioning channel).
        spread_scale: the scale ``c`` of the errors (the training runs' RMS forecast error, state units);
            ``e = (x - m) / c`` is diffused and ``log(s / c)`` is a conditioning channel.
        denoiser: the `DenoiserSpec` fields (``cond_channels`` 1, or 2 with ``spread_channel``).
        spread_channel: condition on the forecast spread too (``log(s / c)``); off by default, see the module notes.
    """

    n_state: int
    model: dict[str, Any]
    networks: tuple[str, ...]
    state_mean: float
    state_std: float
    spread_scale: float
    denoiser: dict[str, Any] = field(default_factory=lambda: asdict(DenoiserSpec(cond_channels=1)))
    spread_channel: bool = False

    def __post_init__(self) -> None:
        channels = self.denoiser.get("cond_channels")
        if channels != 1 + self.spread_channel:
            raise PriorMismatch(f"the denoiser has {channels} conditioning channels (need {1 + self.spread_channel})")
        values = (self.state_mean, self.state_std, self.spread_scale)
        if not all(math.isfinite(v) for v in values) or self.state_std <= 0 or self.spread_scale <= 0:
            raise PriorMismatch(f"the prior's normalisation is not finite and positive: {values}")
        if self.n_state < 4:
            raise PriorMismatch(f"n_state must be >= 4, got {self.n_state}")


#: Spreads below this fraction of ``spread_scale`` are raised to it before their log is taken (no log of 0).
SPREAD_FLOOR = 1e-3


class ForecastErrorPrior(nn.Module):
    """``p(e | m)`` (``p(e | m, s)`` with ``spread_channel``): the learned distribution of ``e = (x - m) / c``.

    Errors have shape ``(B, 1, n)``; ``m``, ``s`` (state units) enter through `features`.
    """

    def __init__(self, spec: ErrorPriorSpec) -> None:
        super().__init__()
        self.spec = spec
        self.net = PeriodicDenoiserNet(DenoiserSpec(**spec.denoiser))

    def floor(self, spread: Tensor) -> Tensor:
        """``max(spread, SPREAD_FLOOR * spread_scale)``, shape of ``spread`` (its log is a channel)."""
        return spread.clamp_min(SPREAD_FLOOR * self.spec.spread_scale)

    def features(self, mean: Tensor, spread: Tensor) -> Tensor:
        """Conditioning channels ``(*batch, 1 or 2, n)`` from the forecast mean and spread ``(*batch, n)``."""
        spec = self.spec
        channels = [(mean - spec.state_mean) / spec.state_std]
        if spec.spread_channel:
            channels.append((self.floor(spread) / spec.spread_scale).log())
        return torch.stack(channels, dim=-2)

    def forward(self, e: Tensor, sigma: float | Tensor, cond: Tensor | None) -> Tensor:
        """The denoiser ``D(e, sigma | cond)``, shape ``(B, 1, n)``."""
        return self.net(e, sigma, cond)


class _Observation(Protocol):
    y: Tensor
    operator: ObsOperator


@dataclass
class DiffusionAnalyser:
    """The diffusion filter as an analyser of the cycle engine: ``(prior, obs, hx, cycle) -> Analysis``.

    Attributes:
        prior: the trained forecast-error prior.
        sampler: steps, noise levels, likelihood covariance.
        generator: CPU random source of the samples (the run is a function of its seed).
        inflation: multiplies the error scale ``c`` (the prior's and the samples' spread), as a Kalman
            filter's multiplicative inflation (1: none).
        blend: the forecast ensemble's localized Gaussian blended into the learned prior
            (`dacast.ml.diffusion_hybrid`); ``None``: the learned prior alone.
    """

    prior: ForecastErrorPrior
    sampler: SamplerConfig
    generator: torch.Generator
    inflation: float = 1.0
    blend: EnsembleBlend | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.inflation) and self.inflation > 0):
            raise ValueError(f"inflation must be positive and finite, got {self.inflation}")

    def __call__(self, prior: Tensor, obs: _Observation, hx: Tensor | None, cycle: int) -> Analysis:
        """The analysis ensemble ``(k, n)`` of ``prior`` ``(k, n)`` given ``obs`` (``hx`` unused)."""
        k, n = prior.shape
        if n != self.prior.spec.n_state:
            raise PriorMismatch(f"the prior is for {self.prior.spec.n_state} state variables, the ensemble has {n}")
        net_dtype = next(self.prior.parameters()).dtype
        device = next(self.prior.parameters()).device
        mean, spread = prior.mean(0), prior.std(0)
        cond = self.prior.features(mean, spread).to(device=device, dtype=net_dtype)[None].expand(k, -1, -1)
        m = mean.to(device=device, dtype=net_dtype)
        s = self.prior.spec.spread_scale * self.inflation
        operator = obs.operator
        likelihood = GaussianLikelihood(
            y=obs.y.to(device=device, dtype=net_dtype),
            operator=lambda z: operator(m + s * z),
            error_std=operator.error_std.to(device=device, dtype=net_dtype),
        )
        denoiser: nn.Module = _Flat(self.prior)
        errors, start = ((prior - mean) / s).to(device=device, dtype=net_dtype), None
        if self.blend is not None:
            denoiser = self.blend.denoiser(denoiser, errors)
        if self.sampler.transport:
            start = transport_start(denoiser, errors, cond=cond, config=self.sampler)
        z = posterior_sample(
            denoiser, (k, n), cond=cond, likelihood=likelihood, config=self.sampler,
            generator=self.generator, dtype=net_dtype, device=device, start=start,
        )  # fmt: skip
        require_finite(z, "diffusion sampler")
        ensemble = (m + s * z).to(prior)
        innovation = obs.y.to(prior) - operator(prior).mean(0)
        return Analysis.of(ensemble, innovation)


def transport_latents(latents: Tensor, sigma_max: float) -> Tensor:
    """The members' latents ``(k, n)`` centred over the members and scaled to RMS ``sigma_max`` in each variable.

    A forecast ensemble is narrower or wider than the prior's unit error, and its mean is not exactly
    zero; the sampler expects latents of ``N(0, sigma_max**2)``. Rescaling each variable keeps the
    members' order and their correlations between variables, and lets the prior and the observations
    set the analysis spread. A variable where every member agrees (zero spread) stays 0.
    """
    k = latents.shape[0]
    if k < 2:
        raise ValueError(f"transport needs at least 2 members, got {k}")
    centred = latents - latents.mean(0)
    rms = centred.pow(2).sum(0).div(k - 1).sqrt()
    return centred * torch.where(rms > 0, sigma_max / rms, torch.zeros_like(rms))


def transport_start(denoiser: nn.Module, errors: Tensor, *, cond: Tensor | None, config: SamplerConfig) -> Tensor:
    """Where moved members begin the guided sampler: the members' errors ``(k, *state)`` carried up the prior's
    ODE (`prior_to_noise`), then `transport_latents` over the flattened state; shape of ``errors``."""
    latents = prior_to_noise(denoiser, errors, cond=cond, config=config)
    return transport_latents(latents.flatten(1), config.schedule.sigma_max).reshape(latents.shape)


class _Flat(nn.Module):
    """The prior's denoiser on flat states ``(B, n)`` (what the sampler's Jacobians are taken over)."""

    def __init__(self, prior: ForecastErrorPrior) -> None:
        super().__init__()
        self.prior = prior
        self.spec = prior.net.spec

    def forward(self, x: Tensor, sigma: float | Tensor, cond: Tensor | None) -> Tensor:
        return self.prior(x[:, None, :], sigma, cond)[:, 0, :]


def save_weights(
    module: nn.Module, path: str | Path, card: dict[str, Any], extra: dict[str, Any] | None = None
) -> Path:
    """Write ``path`` (``.pt``, weights only) and ``path.json`` atomically: both diffusion filters' checkpoints.

    The card is ``card``, then ``weights_sha256``, then ``extra`` (training records, provenance).
    """
    path = Path(path)
    state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    write_atomic(path, lambda tmp: torch.save(state, tmp))
    full = {**card, "weights_sha256": tensors_sha256(*state.values()), **(extra or {})}
    write_atomic(path.with_suffix(".json"), lambda tmp: tmp.write_text(json.dumps(full, indent=2) + "\n"))
    return path


def read_card(path: Path, fmt: str, what: str) -> dict[str, Any]:
    """The JSON card beside ``path``; one-line `PriorMismatch` when it is missing, unreadable or not ``fmt``."""
    try:
        card = json.loads(path.with_suffix(".json").read_text())
    except (OSError, ValueError) as exc:
        raise PriorMismatch(f"{path}: cannot read the {what}'s card ({exc})") from None
    if not isinstance(card, dict) or card.get("format") != fmt:
        found = card.get("format") if isinstance(card, dict) else None
        raise PriorMismatch(f"{path}: not a dacast {what} (format {found!r})")
    return card


def require_model(path: Path, have: dict[str, Any], need: dict[str, Any]) -> None:
    """One-line `PriorMismatch` naming the first model setting where ``have`` (the file's) differs from ``need``."""
    for key in sorted(set(have) | set(need)):
        if have.get(key) != need.get(key):
            raise PriorMismatch(f"{path}: model.{key} {have.get(key)!r} (need {need.get(key)!r})")


def load_weights(module: nn.Module, path: Path) -> nn.Module:
    """``module`` with the weights of ``path`` (``weights_only``), in eval mode without gradients."""
    try:
        module.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except (OSError, RuntimeError, ValueError, pickle.UnpicklingError) as exc:
        raise PriorMismatch(f"{path}: cannot load the weights ({str(exc).splitlines()[0]})") from None
    return module.eval().requires_grad_(False)


def require_finite(samples: Tensor, what: str) -> None:
    """`AnalysisFailed` naming the members (first axis of ``samples``) with non-finite values."""
    if not bool(torch.isfinite(samples).all()):
        bad = (~torch.isfinite(samples)).flatten(1).any(1).nonzero().flatten().tolist()
        raise AnalysisFailed(f"the {what} returned non-finite values (members {bad[:8]})")


def save_prior(prior: ForecastErrorPrior, path: str | Path, *, extra: dict[str, Any] | None = None) -> Path:
    """Write ``path`` (``.pt``, weights only) and ``path.json`` (spec, weights SHA-256, ``extra``) atomically."""
    return save_weights(prior, path, {"format": FORMAT, "spec": asdict(prior.spec)}, extra)


def load_prior(
    path: str | Path, *, n_state: int, model: dict[str, Any], network: str, device: str | torch.device = "cpu"
) -> ForecastErrorPrior:
    """Read a prior written by `save_prior`; one-line `PriorMismatch` when it does not fit the experiment.

    Args:
        path: the ``.pt`` file (its ``.json`` beside it).
        n_state: the experiment's state length.
        model: the experiment's model settings (compared key by key with the prior's).
        network: the observation network the filter will assimilate (must be one it was trained with).
        device: where to put the weights.
    """
    path = Path(path)
    raw = read_card(path, FORMAT, "diffusion prior").get("spec")
    try:
        spec = ErrorPriorSpec(**{**raw, "networks": tuple(raw["networks"])})
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, PriorMismatch):
            raise
        raise PriorMismatch(f"{path}: cannot read the diffusion prior's card ({exc})") from None
    if spec.n_state != n_state:
        raise PriorMismatch(f"{path}: the prior is for {spec.n_state} state variables (need {n_state})")
    require_model(path, spec.model, model)
    if network not in spec.networks:
        raise PriorMismatch(f"{path}: trained on networks {', '.join(spec.networks)}, not on {network!r}")
    return load_weights(ForecastErrorPrior(spec), path).to(device)  # type: ignore[return-value]


__all__ = [
    "DiffusionAnalyser",
    "ErrorPriorSpec",
    "ForecastErrorPrior",
    "PriorMismatch",
    "load_prior",
    "load_weights",
    "read_card",
    "require_finite",
    "require_model",
    "save_prior",
    "save_weights",
    "transport_latents",
    "transport_start",
]
