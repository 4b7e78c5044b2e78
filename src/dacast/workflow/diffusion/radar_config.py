"""Configuration of the latent diffusion filter against the gridded LETKF on the radar twin (presets: radar_presets).

One run (`dacast.workflow.diffusion.radar_run.run_latent`) trains (or reads) one latent
diffusion filter on gridded-LETKF runs of training seeds, then runs the LETKF and the
latent filter over the same truth, radar volumes and initial ensemble of every
verification seed (`dacast.workflow.diffusion.radar.score_run`).

YAML schema (keys in ``[brackets]`` are optional; defaults, the benchmark's, in parentheses)::

    [preset]: latent-radar          # start from a preset; the keys below override it
    [bda]: {members: 50, cycles: 20, ...}   # the radar twin, `dacast bda run`'s schema (bda-small, device cpu);
                                    # its seed is not used (seeds, train_seed); bda: {preset: NAME} starts anew
    [seeds]: [0, 1, 2]              # verification seeds: one truth, radar volumes and initial ensemble each
    [skip]: 5                       # spin-up cycles left out of the means
    [train_seeds]: 12               # gridded-LETKF runs the filter learns from (seeds train_seed, train_seed + 1, ...)
    [train_cycles]: 30              # cycles of each training run (one sample a cycle)
    [train_seed]: 1000
    [keep_members]: 8               # forecast members kept per training cycle
    [members_per_sample]: 2         # of which the autoencoder also learns from (besides truth and forecast mean)
    [autoencoder]: {latent_channels: 8, levels: 1, width: 32, epochs: 15, patience: 4, log_channels: [], ...}
    [prior]: {steps: 1500, batch_size: 16, channels: 32, layers: 4, kernel: 3, schedule: {sigma_max: 20.0}, ...}
    [sampler]: {steps: 4, covariance: isotropic, gamma: 3.0, cg_iterations: 2, guidance: mean,
                schedule: {sigma_max: 10.0}, transport: false, ...}   # transport: move the members
    [inflation]: 1.0                # multiplies the latent error scale
    [filter_file]: null             # a trained latent-filter.pt to use instead of training
    [threads]: null                 # torch CPU threads (null: torch's default)

The sections ``autoencoder``, ``prior`` and ``sampler`` hold the fields of
`dacast.ml.latent.AutoencoderTrainConfig`, `dacast.ml.diffusion_train.DiffusionTrainConfig` and
`dacast.ml.diffusion_sampling.SamplerConfig`; defaults are those of `LatentSetup`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from dacast.ml.diffusion_sampling import SamplerConfig
from dacast.ml.diffusion_train import DiffusionTrainConfig
from dacast.ml.latent import AutoencoderTrainConfig
from dacast.workflow.bda.config import BDAConfig, bda_config_from_dict, bda_config_to_dict, get_bda_preset
from dacast.workflow.diffusion.radar import LatentSetup
from dacast.workflow.diffusion.radar_presets import radar_presets
from dacast.workflow.limits import INT64_MAX, require_fits, require_seed
from dacast.workflow.schema import (
    ConfigError,
    Presets,
    build,
    load_yaml_with,
    mapping,
    merge,
    parse,
    parse_value,
    require,
    resolve,
    with_preset,
)

#: The two filters of every comparison, in table order: the gridded LETKF and the latent diffusion filter.
LATENT_FILTERS = ("letkf", "latent")


def default_bda() -> BDAConfig:
    """The radar twin of the benchmark: ``bda-small`` (64 x 64 cells, 50 members, 20 cycles) on the CPU."""
    return replace(get_bda_preset("bda-small").config, device="cpu")


def _check_autoencoder(ae: AutoencoderTrainConfig, grid: int) -> None:
    require(ae.levels in (1, 2), f"autoencoder.levels must be 1 or 2, got {ae.levels}")
    require(grid % 2**ae.levels == 0, f"bda.grid ({grid}) must be a multiple of 2^autoencoder.levels")
    channels = ae.latent_channels
    require(1 <= channels <= 1024, f"autoencoder.latent_channels must lie in [1, 1024], got {channels}")
    require(4 <= ae.width <= 4096, f"autoencoder.width must lie in [4, 4096], got {ae.width}")
    require(
        all(0 <= c < 4 for c in ae.log_channels) and len(set(ae.log_channels)) == len(ae.log_channels),
        f"autoencoder.log_channels must be distinct variables in [0, 3] (u, v, h, r), got {list(ae.log_channels)}",
    )
    require(0 < ae.lr <= 10 and 0 <= ae.weight_decay <= 10, "autoencoder.lr must lie in (0, 10], weight_decay [0, 10]")
    require(1 <= ae.batch_size <= 1_000_000, f"autoencoder.batch_size must lie in [1, 10^6], got {ae.batch_size}")
    require(1 <= ae.epochs <= 100_000, f"autoencoder.epochs must lie in [1, 10^5], got {ae.epochs}")
    require(0 <= ae.patience <= 100_000, f"autoencoder.patience must lie in [0, 10^5], got {ae.patience}")
    require(0 <= ae.min_delta < 1, f"autoencoder.min_delta must lie in [0, 1), got {ae.min_delta}")
    require_seed(ae.seed, "autoencoder.seed")


def _check_prior(prior: DiffusionTrainConfig, latent_side: int) -> None:
    require(1 <= prior.steps <= 10_000_000, f"prior.steps must lie in [1, 10^7], got {prior.steps}")
    require(1 <= prior.batch_size <= 1_000_000, f"prior.batch_size must lie in [1, 10^6], got {prior.batch_size}")
    require(1 <= prior.channels <= 1024, f"prior.channels must lie in [1, 1024], got {prior.channels}")
    require(1 <= prior.layers <= 64, f"prior.layers must lie in [1, 64], got {prior.layers}")
    require(
        1 <= prior.kernel <= min(39, 2 * latent_side - 1) and prior.kernel % 2 == 1,
        f"prior.kernel must be odd, in [1, {min(39, 2 * latent_side - 1)}] (the latent grid has {latent_side} "
        f"points a side), got {prior.kernel}",
    )
    require(not prior.spread_channel, "prior.spread_channel must be false (the latent prior has no spread channel)")
    require(prior.learning_rate <= 10 and prior.weight_decay <= 10, "prior.learning_rate, weight_decay must be <= 10")
    require_seed(prior.seed, "prior.seed")


def _check_sampler(sampler: SamplerConfig) -> None:
    require(
        sampler.covariance == "isotropic" and 1 <= sampler.cg_iterations <= 1000,
        "sampler.covariance must be isotropic with cg_iterations in [1, 1000]: a radar volume is too large for a "
        f"Jacobian, got {sampler.covariance} with {sampler.cg_iterations}",
    )
    require(1 <= sampler.steps <= 1000, f"sampler.steps must lie in [1, 1000], got {sampler.steps}")
    require(sampler.gamma <= 100 and sampler.churn <= 100, "sampler.gamma and sampler.churn must be <= 100")


@dataclass(frozen=True, kw_only=True)
class RadarDiffusionConfig:
    """The latent-diffusion-filter comparison on the radar twin (see the module docstring for every field)."""

    name: str = "custom"
    bda: BDAConfig = field(default_factory=default_bda)
    seeds: tuple[int, ...] = (0, 1, 2)
    skip: int = 5
    train_seeds: int = 12
    train_cycles: int = 30
    train_seed: int = 1000
    keep_members: int = 8
    members_per_sample: int = 2
    autoencoder: AutoencoderTrainConfig = field(default_factory=lambda: LatentSetup().autoencoder)
    prior: DiffusionTrainConfig = field(default_factory=lambda: LatentSetup().prior)
    sampler: SamplerConfig = field(default_factory=lambda: LatentSetup().sampler)
    inflation: float = 1.0
    filter_file: Path | None = None
    threads: int | None = None

    def __post_init__(self) -> None:
        require(bool(self.name.strip()), "name must not be empty")
        device = self.bda.device
        require(device == "cpu", f"bda.device must be cpu (the latent filter runs on the CPU), got {device}")
        require(len(self.seeds) >= 1, "seeds must name at least one seed")
        require(len(set(self.seeds)) == len(self.seeds), "seeds must not repeat a seed")
        for s in self.seeds:
            require_seed(s, "seeds")
        cycles = self.bda.cycles
        require(0 <= self.skip < cycles, f"skip must lie in [0, bda.cycles) = [0, {cycles}), got {self.skip}")
        require(1 <= self.train_seeds <= 10_000, f"train_seeds must lie in [1, 10000], got {self.train_seeds}")
        require(1 <= self.train_cycles <= 100_000, f"train_cycles must lie in [1, 100000], got {self.train_cycles}")
        require(self.train_seeds * self.train_cycles >= 2, "train_seeds x train_cycles must give at least 2 samples")
        require_seed(self.train_seed, "train_seed")
        require(self.train_seed + self.train_seeds - 1 <= INT64_MAX, "train_seed + train_seeds must stay below 2^63")
        shared = sorted(set(self.seeds) & set(self.training_seeds()))
        require(not shared, f"seeds and the training seeds [train_seed, train_seed + train_seeds) share {shared[:3]}")
        members = self.bda.members
        require(1 <= self.keep_members <= members, f"keep_members must lie in [1, bda.members ({members})]")
        require(0 <= self.members_per_sample <= self.keep_members, "members_per_sample must lie in [0, keep_members]")
        _check_autoencoder(self.autoencoder, self.bda.grid)
        _check_prior(self.prior, self.bda.grid // 2**self.autoencoder.levels)
        _check_sampler(self.sampler)
        require(
            math.isfinite(self.inflation) and 0 < self.inflation <= 100,
            f"inflation must lie in (0, 100], got {self.inflation}",
        )
        require(self.threads is None or 1 <= self.threads <= 1024, f"threads must lie in [1, 1024], got {self.threads}")
        try:
            self.training_bda()
        except ConfigError as err:
            raise ConfigError(f"train_cycles: {err}") from None
        samples = float(self.train_seeds) * self.train_cycles * (2 + self.keep_members + 2 + self.members_per_sample)
        sizes = f"train_seeds={self.train_seeds} x train_cycles={self.train_cycles} x grid {self.bda.grid}^2"
        require_fits(samples * 4 * float(self.bda.grid) ** 2 * 4 + self.bda.estimated_bytes(), f"{sizes} (samples)")

    def training_seeds(self) -> list[int]:
        """The seeds of the gridded-LETKF training runs: ``train_seed``, ``train_seed + 1``, ..."""
        return [self.train_seed + i for i in range(self.train_seeds)]

    def training_bda(self) -> BDAConfig:
        """The twin of the training runs: ``train_cycles`` cycles (outages beyond them dropped)."""
        outages = tuple(c for c in self.bda.outage_cycles if c < self.train_cycles)
        return replace(self.bda, cycles=self.train_cycles, outage_cycles=outages)

    def run_bda(self, seed: int) -> BDAConfig:
        """The twin of verification ``seed``: the same for both filters."""
        return replace(self.bda, seed=seed)

    def setup(self) -> LatentSetup:
        """How the latent filter is trained and run (`dacast.workflow.diffusion.radar.LatentSetup`)."""
        return LatentSetup(autoencoder=self.autoencoder, prior=self.prior, sampler=self.sampler,
                           inflation=self.inflation, members_per_sample=self.members_per_sample)  # fmt: skip


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def radar_config_to_dict(config: RadarDiffusionConfig) -> dict[str, Any]:
    """JSON/YAML-serialisable form; `radar_config_from_dict` inverts it."""
    out = _plain(dataclasses.asdict(config))
    out["bda"] = bda_config_to_dict(config.bda)
    out["filter_file"] = None if config.filter_file is None else str(config.filter_file)
    return out


#: The latent-filter presets (defined in `dacast.workflow.diffusion.radar_presets`), in listing order.
RADAR_PRESET_REGISTRY: Presets[RadarDiffusionConfig] = Presets(radar_presets(), noun="latent radar preset")
#: Name -> configuration of every preset.
RADAR_PRESETS: dict[str, RadarDiffusionConfig] = {name: p.config for name, p in RADAR_PRESET_REGISTRY.items()}


def _bda_section(value: Any, where: str) -> BDAConfig:
    """The ``bda`` section: `dacast bda run`'s schema on top of `default_bda` (``preset: NAME`` starts from NAME)."""
    try:
        return bda_config_from_dict({} if value is None else value, base=default_bda())
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None


def radar_config_from_dict(data: Any) -> RadarDiffusionConfig:
    """A validated `RadarDiffusionConfig` from the YAML schema of this module; `ConfigError` names the key path.

    The keys override those of the ``preset:`` (else the defaults); a ``bda`` section overrides
    the preset's twin key by key, unless it names a BDA preset of its own.
    """
    data = mapping(data)
    rest = {k: v for k, v in data.items() if k != "bda"}
    merged = dict(with_preset(rest, RADAR_PRESET_REGISTRY, radar_config_to_dict))
    if "preset" not in rest:
        merged = merge(radar_config_to_dict(RadarDiffusionConfig()), merged)
    section = data.get("bda")  # an empty section keeps the preset's twin
    if section is not None:
        merged["bda"] = (
            merge(merged["bda"], section) if isinstance(section, Mapping) and "preset" not in section else section
        )
    return parse(RadarDiffusionConfig, merged, hooks={BDAConfig: _bda_section})


def load_radar_yaml(path: str | Path) -> RadarDiffusionConfig:
    """A validated `RadarDiffusionConfig` from a YAML file."""
    return load_yaml_with(path, radar_config_from_dict)


def load_radar_target(
    target: str | Path,
    *,
    cycles: int | None = None,
    seeds: list[int] | None = None,
    filter_file: str | Path | None = None,
) -> RadarDiffusionConfig:
    """A preset name or a YAML path, with the CLI overrides (``bda.cycles``, ``seeds``, ``filter_file``) applied."""
    config, _ = resolve(target, RADAR_PRESET_REGISTRY, radar_config_from_dict)
    changes: dict[str, Any] = {}
    if cycles is not None:
        changes["bda"] = build(lambda **kw: replace(config.bda, **kw), {"cycles": parse_value(int, cycles, "cycles")})
    if seeds:
        changes["seeds"] = parse_value(tuple[int, ...], seeds, "seeds")
    if filter_file is not None:
        changes["filter_file"] = parse_value(Path, filter_file, "filter_file")
    return build(lambda **kw: replace(config, **kw), changes)


__all__ = [
    "LATENT_FILTERS",
    "RADAR_PRESETS",
    "RADAR_PRESET_REGISTRY",
    "RadarDiffusionConfig",
    "default_bda",
    "load_radar_target",
    "load_radar_yaml",
    "radar_config_from_dict",
    "radar_config_to_dict",
]
