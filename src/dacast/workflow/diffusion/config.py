"""Configuration of the diffusion filter against the LETKF on Lorenz-96; presets in ``presets.py``.

One run (`dacast.workflow.diffusion.run.run_diffusion`) trains (or reads) one
forecast-error prior per observation network, then cycles the LETKF and the
diffusion filter over the same truth, observations and initial ensemble of
every seed (`dacast.workflow.diffusion.experiment`).

YAML schema (keys in ``[brackets]`` are optional; defaults in parentheses)::

    [preset]: diffusion-l96         # start from a preset; the keys below override it
    [networks]: [all, every4, arctan]   # observation networks (all: R = I; every 4th; arctan, 0.05 rad)
    [seeds]: [3000, 3001, 3002]     # one truth, observation set and initial ensemble per seed
    [members]: 20                   # ensemble size of both filters
    [cycles]: 400                   # analyses per run (dt = 0.05 each)
    [skip]: 100                     # spin-up cycles left out of the scores
    [inflation]: 1.0                # multiplies the diffusion prior's error scale
    [sampler]: {steps: 16, covariance: isotropic, gamma: 1.0, transport: false}   # transport: move the
                                    # forecast members to the posterior instead of drawing new ones
    [ensemble]: {weight: 0.0, scale: 1.0}   # hybrid prior: weight of the forecast members' localized
                                    # Gaussian blended into the learned one, scale multiplies their errors
    [training]: {runs: 10, cycles: 1000, steps: 3000, seed: 1, batch_size: 256, channels: 64,
                 layers: 6, kernel: 5, spread_channel: false}   # LETKF runs the prior learns from
    [iterations]: 0                 # retrain on the diffusion filter's own forecasts this many times
    [iteration_runs]: 4             # diffusion runs (of training.cycles) per retraining
    [prior_dir]: null               # a folder of priors prior-NETWORK[-itN].pt to read (else trained)
    [threads]: null                 # torch CPU threads (null: torch's default)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from dacast.ml.diffusion import NoiseSchedule
from dacast.ml.diffusion_hybrid import EnsembleBlend
from dacast.ml.diffusion_sampling import SamplerConfig
from dacast.ml.diffusion_train import DiffusionTrainConfig
from dacast.workflow.diffusion.experiment import NETWORKS, Lorenz96Twin, Network
from dacast.workflow.diffusion.presets import diffusion_presets
from dacast.workflow.schema import Presets, build, load_yaml_with, parse, parse_value, require, resolve, with_preset

#: The two filters of every comparison, in table order.
FILTERS = ("letkf", "diffusion")
#: Largest noise level of the sampler and of training (the benchmark's).
SIGMA_MAX = 80.0


@dataclass(frozen=True, kw_only=True)
class SamplerSpec:
    """How the diffusion filter draws its members (see `dacast.ml.diffusion_sampling.SamplerConfig`)."""

    steps: int = 16
    covariance: Literal["isotropic", "jacobian"] = "isotropic"
    gamma: float = 1.0
    #: Move each forecast member to the posterior instead of drawing new ones (`SamplerConfig.transport`).
    transport: bool = False

    def __post_init__(self) -> None:
        require(1 <= self.steps <= 1000, f"sampler.steps must lie in [1, 1000], got {self.steps}")
        require(0 < self.gamma <= 100, f"sampler.gamma must lie in (0, 100], got {self.gamma}")

    def build(self) -> SamplerConfig:
        """The sampler's configuration (noise levels up to `SIGMA_MAX`)."""
        schedule = NoiseSchedule(sigma_max=SIGMA_MAX)
        return SamplerConfig(steps=self.steps, schedule=schedule, covariance=self.covariance, gamma=self.gamma,
                             transport=self.transport)  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class EnsembleSpec:
    """The hybrid prior (`dacast.ml.diffusion_hybrid.EnsembleBlend`): how much of the forecast members'
    localized Gaussian (the LETKF's taper) enters the diffusion filter's prior; weight 0: none."""

    weight: float = 0.0
    scale: float = 1.0

    def __post_init__(self) -> None:
        require(0 <= self.weight <= 1, f"ensemble.weight must lie in [0, 1], got {self.weight}")
        require(
            math.isfinite(self.scale) and 0 < self.scale <= 10, f"ensemble.scale must lie in (0, 10], got {self.scale}"
        )

    def build(self, twin: Lorenz96Twin) -> EnsembleBlend | None:
        """The blend on ``twin``'s state, or ``None`` for weight 0 (the learned prior alone)."""
        return None if self.weight == 0 else EnsembleBlend(weight=self.weight, scale=self.scale, taper=twin.taper())


@dataclass(frozen=True, kw_only=True)
class TrainingSpec:
    """The prior's training data (``runs`` LETKF runs of ``cycles`` cycles per network) and its training."""

    runs: int = 10
    cycles: int = 1000
    steps: int = 3000
    seed: int = 1
    batch_size: int = 256
    channels: int = 64
    layers: int = 6
    kernel: int = 5
    spread_channel: bool = False

    def __post_init__(self) -> None:
        require(1 <= self.runs <= 10_000, f"training.runs must lie in [1, 10000], got {self.runs}")
        require(10 <= self.cycles <= 1_000_000, f"training.cycles must lie in [10, 10^6], got {self.cycles}")
        require(1 <= self.steps <= 10_000_000, f"training.steps must lie in [1, 10^7], got {self.steps}")
        require(0 <= self.seed < 2**62, f"training.seed must lie in [0, 2^62), got {self.seed}")
        require(1 <= self.batch_size <= 1_000_000, f"training.batch_size must lie in [1, 10^6], got {self.batch_size}")
        require(1 <= self.channels <= 1024, f"training.channels must lie in [1, 1024], got {self.channels}")
        require(1 <= self.layers <= 64, f"training.layers must lie in [1, 64], got {self.layers}")
        require(
            1 <= self.kernel <= 39 and self.kernel % 2 == 1,
            f"training.kernel must be odd, in [1, 39], got {self.kernel}",
        )
        samples = self.runs * self.cycles
        usable = samples - max(1, int(0.1 * samples))  # the trainer holds out the last tenth
        require(
            usable >= self.batch_size,
            f"training.runs x training.cycles gives {usable} training pairs (a tenth is held out), "
            f"fewer than training.batch_size {self.batch_size}",
        )

    def build(self) -> DiffusionTrainConfig:
        """The trainer's configuration (learning rate and weight decay as its defaults)."""
        return DiffusionTrainConfig(
            steps=self.steps,
            seed=self.seed,
            batch_size=self.batch_size,
            channels=self.channels,
            layers=self.layers,
            kernel=self.kernel,
            spread_channel=self.spread_channel,
            schedule=NoiseSchedule(sigma_max=SIGMA_MAX),
        )


@dataclass(frozen=True, kw_only=True)
class DiffusionConfig:
    """The diffusion-filter comparison (see the module docstring for every field)."""

    name: str = "custom"
    networks: tuple[str, ...] = ("all", "every4", "arctan")
    seeds: tuple[int, ...] = (3000, 3001, 3002)
    members: int = 20
    cycles: int = 400
    skip: int = 100
    inflation: float = 1.0
    sampler: SamplerSpec = field(default_factory=SamplerSpec)
    ensemble: EnsembleSpec = field(default_factory=EnsembleSpec)
    training: TrainingSpec = field(default_factory=TrainingSpec)
    iterations: int = 0
    iteration_runs: int = 4
    prior_dir: Path | None = None
    threads: int | None = None

    def __post_init__(self) -> None:
        require(len(self.networks) >= 1, "networks must name at least one observation network")
        for name in self.networks:
            require(name in NETWORKS, f"unknown network {name!r} in networks; choose from {', '.join(NETWORKS)}")
        require(len(set(self.networks)) == len(self.networks), "networks must not repeat a network")
        require(len(self.seeds) >= 1, "seeds must name at least one seed")
        require(len(set(self.seeds)) == len(self.seeds), "seeds must not repeat a seed")
        for s in self.seeds:
            require(0 <= s < 2**62, f"seeds must lie in [0, 2^62), got {s}")
        require(2 <= self.members <= 10_000, f"members must lie in [2, 10000], got {self.members}")
        require(1 <= self.cycles <= 1_000_000, f"cycles must lie in [1, 10^6], got {self.cycles}")
        require(0 <= self.skip < self.cycles, f"skip must lie in [0, cycles) = [0, {self.cycles}), got {self.skip}")
        require(
            math.isfinite(self.inflation) and 0 < self.inflation <= 100,
            f"inflation must lie in (0, 100], got {self.inflation}",
        )
        require(0 <= self.iterations <= 100, f"iterations must lie in [0, 100], got {self.iterations}")
        require(1 <= self.iteration_runs <= 10_000, f"iteration_runs must lie in [1, 10000], got {self.iteration_runs}")
        require(self.threads is None or 1 <= self.threads <= 1024, f"threads must lie in [1, 1024], got {self.threads}")

    def observation_networks(self) -> tuple[Network, ...]:
        """The `Network` of each name in ``networks``, in order."""
        return tuple(NETWORKS[name] for name in self.networks)

    def twin(self) -> Lorenz96Twin:
        """The Lorenz-96 twin (40 variables, F = 8, dt = 0.05) with ``members`` members."""
        return Lorenz96Twin(members=self.members)


def diffusion_config_to_dict(config: DiffusionConfig) -> dict[str, Any]:
    """JSON/YAML-serialisable form; `diffusion_config_from_dict` inverts it."""
    out = dataclasses.asdict(config)
    for key, value in out.items():
        if isinstance(value, tuple):
            out[key] = list(value)
    out["prior_dir"] = None if config.prior_dir is None else str(config.prior_dir)
    return out


#: The diffusion presets (defined in `dacast.workflow.diffusion.presets`), in listing order.
DIFFUSION_PRESET_REGISTRY: Presets[DiffusionConfig] = Presets(diffusion_presets(), noun="diffusion preset")
#: Name -> configuration of every preset.
DIFFUSION_PRESETS: dict[str, DiffusionConfig] = {name: p.config for name, p in DIFFUSION_PRESET_REGISTRY.items()}


def diffusion_config_from_dict(data: Any) -> DiffusionConfig:
    """A validated `DiffusionConfig` from the YAML schema of this module; `ConfigError` names the key path."""
    return parse(DiffusionConfig, with_preset(data, DIFFUSION_PRESET_REGISTRY, diffusion_config_to_dict))


def load_diffusion_yaml(path: str | Path) -> DiffusionConfig:
    """A validated `DiffusionConfig` from a YAML file."""
    return load_yaml_with(path, diffusion_config_from_dict)


def load_diffusion_target(
    target: str | Path,
    *,
    cycles: int | None = None,
    seeds: list[int] | None = None,
    prior_dir: str | Path | None = None,
) -> DiffusionConfig:
    """A preset name or a YAML path, with the CLI overrides applied (validated again)."""
    config, _ = resolve(target, DIFFUSION_PRESET_REGISTRY, diffusion_config_from_dict)
    changes: dict[str, Any] = {}
    if cycles is not None:
        changes["cycles"] = parse_value(int, cycles, "cycles")
    if seeds:
        changes["seeds"] = parse_value(tuple[int, ...], seeds, "seeds")
    if prior_dir is not None:
        changes["prior_dir"] = parse_value(Path, prior_dir, "prior_dir")
    return build(lambda **kw: dataclasses.replace(config, **kw), changes)


__all__ = [
    "DIFFUSION_PRESETS",
    "DIFFUSION_PRESET_REGISTRY",
    "FILTERS",
    "SIGMA_MAX",
    "DiffusionConfig",
    "EnsembleSpec",
    "SamplerSpec",
    "TrainingSpec",
    "diffusion_config_from_dict",
    "diffusion_config_to_dict",
    "load_diffusion_target",
    "load_diffusion_yaml",
]
