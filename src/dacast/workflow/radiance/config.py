"""Configuration of the satellite-radiance experiments (Liang, Terasaki & Miyoshi 2023); presets in ``presets.py``.

One run (`dacast.workflow.radiance.run.run_radiance`) assimilates, on the same
truth, observations, seeds and LETKF settings, the observing systems named in
``experiments``:

* ``conv``: radiosondes only (T and q at a few columns and levels, every ``conventional.every`` cycles);
* ``physical``: radiosondes + AMSU-A channels 6-8 through the torch radiative-transfer operator,
  with adaptive bias correction (VarBC);
* ``physical-nobc``: the same without bias correction (what the bias costs);
* ``ml``: radiosondes + AMSU-A through the learned operator trained on background forecasts
  of a separate DA run paired with the (biased) observations, as in the paper (it learns the bias);
* ``ml-truth``: the learned operator trained on truth profiles and their unbiased radiances
  (what learning the bias buys).

YAML schema (keys in ``[brackets]`` are optional; defaults in parentheses)::

    [preset]: amsua                 # start from a preset; the keys below override it
    [experiments]: [conv, physical, ml]
    [seeds]: [1, 2, 3]              # one truth and observation set per seed
    [model]: {n_columns: 40, n_levels: 26, p_top: 10.0, vertical_coupling: 2.0, moisture_coupling: 0.3,
              t_std: 2.5, lnq_std: 0.25}
    [conventional]: {stations: 5, levels_hpa: [1000, 850, 700, 500, 300, 200, 100, 50], humidity_top_hpa: 300,
                     t_error: 1.0, q_error: 0.15, every: 2}     # q_error: fraction of the climatological q
    [satellite]: {channels: [6, 7, 8], fovs: 30, step: 7, error_std: [0.35, 0.3, 0.3], bias: true,
                  bias_prior_std: 2.0, bias_process_var: 0.0001}
    [members]: 20
    [cycles]: 240                   # 6-hourly analyses per experiment (60 days)
    [spinup_cycles]: 40             # left out of the scores
    [dt]: 0.01                      # model step (0.05 = 6 h)
    [steps_per_cycle]: 5
    [localization]: 3.0             # Gaspari-Cohn length, in column spacings (1000 km at 40 columns)
    [vertical_localization]: 1.0    # the same taper's length in scale heights (ln p)
    [inflation]: 1.0                # multiplicative anomaly inflation
    [rtps]: 0.7                     # relaxation to prior spread
    [training_cycles]: 164          # cycles of the separate DA run whose backgrounds train the ML operator
                                    # (after spinup_cycles: one month, as the paper)
    [training_system]: physical     # conv | physical: what that DA run assimilated
    [truth_samples]: 3720           # truth profiles for the ml-truth operator
    [ml]: {hidden: 300, depth: 4, epochs: 150, lr: 0.001, batch_size: 256, patience: 20}
    [ml_error]: validation          # validation: R of a learned operator counts its validation error; nominal: not
    [ml_humidity_top_hpa]: 300.0    # humidity enters the learned operators up to this level (the paper: the lower
                                    # 40 of 78 levels); 0 for every level
    [seed]: 1000                    # training truths (seed, seed + 1) and networks; every seed in [0, 2^62)
    [threads]: 1
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from torch import Tensor

from dacast.models.column import ColumnAtmosphere
from dacast.obs.microwave import AMSUA_CHANNELS
from dacast.workflow.radiance.presets import radiance_presets
from dacast.workflow.schema import (
    Presets,
    build,
    load_yaml_with,
    parse,
    parse_value,
    require,
    resolve,
    with_preset,
)

Experiment = Literal["conv", "physical", "physical-nobc", "ml", "ml-truth"]
#: The experiments that use a learned operator.
LEARNED = ("ml", "ml-truth")


@dataclass(frozen=True, kw_only=True)
class ColumnSpec:
    """The `ColumnAtmosphere` twin (see `dacast.models.column` for the meaning of each field)."""

    n_columns: int = 40
    n_levels: int = 26
    p_top: float = 10.0
    vertical_coupling: float = 2.0
    moisture_coupling: float = 0.3
    t_std: float = 2.5
    lnq_std: float = 0.25

    def __post_init__(self) -> None:
        require(4 <= self.n_columns <= 4096, f"model.n_columns must lie in [4, 4096], got {self.n_columns}")
        require(4 <= self.n_levels <= 200, f"model.n_levels must lie in [4, 200], got {self.n_levels}")
        require(
            1.0 <= self.p_top <= 50.0,
            f"model.p_top must lie in [1, 50] hPa (the bias predictors read up to 50 hPa), got {self.p_top}",
        )
        for name in ("vertical_coupling", "moisture_coupling"):
            require(0 <= getattr(self, name) <= 50, f"model.{name} must lie in [0, 50], got {getattr(self, name)}")
        for name in ("t_std", "lnq_std"):
            require(0 < getattr(self, name) <= 10, f"model.{name} must lie in (0, 10], got {getattr(self, name)}")

    def build(self) -> ColumnAtmosphere:
        """The model object."""
        return ColumnAtmosphere(**dataclasses.asdict(self))


@dataclass(frozen=True, kw_only=True)
class ConventionalSpec:
    """Radiosondes: ``stations`` columns evenly round the ring, T at ``levels_hpa``, q up to ``humidity_top_hpa``."""

    stations: int = 5
    levels_hpa: tuple[float, ...] = (1000.0, 850.0, 700.0, 500.0, 300.0, 200.0, 100.0, 50.0)
    humidity_top_hpa: float = 300.0
    t_error: float = 1.0
    q_error: float = 0.15
    every: int = 2

    def __post_init__(self) -> None:
        require(self.stations >= 1, f"conventional.stations must be >= 1, got {self.stations}")
        require(len(self.levels_hpa) >= 1, "conventional.levels_hpa must name at least one level")
        require(all(1 <= p <= 1100 for p in self.levels_hpa), "conventional.levels_hpa must lie in [1, 1100] hPa")
        require(0 < self.t_error <= 20, f"conventional.t_error must lie in (0, 20] K, got {self.t_error}")
        require(0 < self.q_error <= 5, f"conventional.q_error must lie in (0, 5], got {self.q_error}")
        require(self.every >= 1, f"conventional.every must be >= 1, got {self.every}")


@dataclass(frozen=True, kw_only=True)
class SatelliteSpec:
    """AMSU-A: channels, fields of view per cycle, swath drift, errors (K) and bias handling."""

    channels: tuple[int, ...] = (6, 7, 8)
    fovs: int = 30
    step: int = 7
    error_std: tuple[float, ...] = (0.35, 0.3, 0.3)
    bias: bool = True
    bias_prior_std: float = 2.0
    bias_process_var: float = 1e-4

    def __post_init__(self) -> None:
        require(len(self.channels) >= 1, "satellite.channels must name at least one channel")
        require(
            all(c in AMSUA_CHANNELS for c in self.channels),
            f"satellite.channels must be among the tabulated AMSU-A channels {sorted(AMSUA_CHANNELS)}, "
            f"got {list(self.channels)}",
        )
        require(len(set(self.channels)) == len(self.channels), "satellite.channels must not repeat a channel")
        require(
            len(self.error_std) == len(self.channels),
            f"satellite.error_std needs one value per channel ({len(self.channels)}), got {len(self.error_std)}",
        )
        require(all(0 < e <= 20 for e in self.error_std), "satellite.error_std must lie in (0, 20] K")
        require(1 <= self.fovs <= 4096, f"satellite.fovs must lie in [1, 4096], got {self.fovs}")
        require(self.bias_prior_std > 0, f"satellite.bias_prior_std must be > 0, got {self.bias_prior_std}")
        require(self.bias_process_var >= 0, f"satellite.bias_process_var must be >= 0, got {self.bias_process_var}")


@dataclass(frozen=True, kw_only=True)
class MLSpec:
    """The learned operator's network and training (one 4 x 300 ReLU network per channel in the paper)."""

    hidden: int = 300
    depth: int = 4
    epochs: int = 150
    lr: float = 1e-3
    batch_size: int = 256
    patience: int = 20

    def __post_init__(self) -> None:
        require(1 <= self.hidden <= 4096, f"ml.hidden must lie in [1, 4096], got {self.hidden}")
        require(1 <= self.depth <= 16, f"ml.depth must lie in [1, 16], got {self.depth}")
        require(1 <= self.epochs <= 100_000, f"ml.epochs must lie in [1, 100000], got {self.epochs}")
        require(0 < self.lr <= 1, f"ml.lr must lie in (0, 1], got {self.lr}")
        require(1 <= self.batch_size <= 1_000_000, f"ml.batch_size must lie in [1, 10^6], got {self.batch_size}")
        require(self.patience >= 1, f"ml.patience must be >= 1, got {self.patience}")


@dataclass(frozen=True, kw_only=True)
class RadianceConfig:
    """The radiance experiments (see the module docstring for every field)."""

    name: str = "custom"
    experiments: tuple[Experiment, ...] = ("conv", "physical", "ml")
    seeds: tuple[int, ...] = (1, 2, 3)
    model: ColumnSpec = field(default_factory=ColumnSpec)
    conventional: ConventionalSpec = field(default_factory=ConventionalSpec)
    satellite: SatelliteSpec = field(default_factory=SatelliteSpec)
    members: int = 20
    cycles: int = 240
    spinup_cycles: int = 40
    dt: float = 0.01
    steps_per_cycle: int = 5
    localization: float = 3.0
    vertical_localization: float = 1.0
    inflation: float = 1.0
    rtps: float = 0.7
    training_cycles: int = 164
    training_system: Literal["conv", "physical"] = "physical"
    truth_samples: int = 3720
    ml: MLSpec = field(default_factory=MLSpec)
    ml_error: Literal["validation", "nominal"] = "validation"
    ml_humidity_top_hpa: float = 300.0
    seed: int = 1000
    threads: int | None = 1

    def __post_init__(self) -> None:
        require(len(self.experiments) >= 1, "experiments must name at least one experiment")
        require(len(set(self.experiments)) == len(self.experiments), "experiments must not repeat an experiment")
        require(len(self.seeds) >= 1, "seeds must name at least one seed")
        require(len(set(self.seeds)) == len(self.seeds), "seeds must not repeat a seed")
        for s in (*self.seeds, self.seed):
            require(0 <= s < 2**62, f"seeds must lie in [0, 2^62) (offsets are added to them), got {s}")
        require(
            self.seed not in self.seeds and self.seed + 1 not in self.seeds,
            f"seed {self.seed} and {self.seed + 1} (the training truths) must differ from the experiment seeds",
        )
        require(2 <= self.members <= 10_000, f"members must lie in [2, 10000], got {self.members}")
        require(1 <= self.cycles <= 1_000_000, f"cycles must lie in [1, 10^6], got {self.cycles}")
        require(
            0 <= self.spinup_cycles < self.cycles, f"spinup_cycles must lie in [0, cycles), got {self.spinup_cycles}"
        )
        require(math.isfinite(self.dt) and 0 < self.dt <= 0.05, f"dt must lie in (0, 0.05], got {self.dt}")
        require(
            1 <= self.steps_per_cycle <= 10_000, f"steps_per_cycle must lie in [1, 10000], got {self.steps_per_cycle}"
        )
        require(0 < self.localization <= 1e6, f"localization must be > 0 columns, got {self.localization}")
        require(0 < self.vertical_localization <= 100, "vertical_localization must lie in (0, 100] scale heights")
        require(1.0 <= self.inflation <= 10.0, f"inflation must lie in [1, 10], got {self.inflation}")
        require(0.0 <= self.rtps <= 1.0, f"rtps must lie in [0, 1], got {self.rtps}")
        require(self.training_cycles >= 10, f"training_cycles must be >= 10, got {self.training_cycles}")
        require(0 <= self.ml_humidity_top_hpa <= 1100, "ml_humidity_top_hpa must lie in [0, 1100] hPa")
        require(self.truth_samples >= 100, f"truth_samples must be >= 100, got {self.truth_samples}")
        require(self.threads is None or 1 <= self.threads <= 1024, f"threads must lie in [1, 1024], got {self.threads}")
        require(
            self.conventional.stations <= self.model.n_columns,
            f"conventional.stations ({self.conventional.stations}) cannot exceed "
            f"model.n_columns ({self.model.n_columns})",
        )

    @property
    def vertical_scale(self) -> float:
        """Scale of the grid's vertical axis: ``localization / vertical_localization`` (see `ColumnAtmosphere.grid`)."""
        return self.localization / self.vertical_localization

    def humidity_levels(self, pressure: Tensor) -> int:
        """Levels of ``pressure`` ``(L,)`` (hPa, bottom first) whose humidity the learned operators read."""
        return int((pressure >= self.ml_humidity_top_hpa - 1e-9).sum())


def radiance_config_to_dict(config: RadianceConfig) -> dict[str, Any]:
    """JSON/YAML-serialisable form; `radiance_config_from_dict` inverts it."""
    out = dataclasses.asdict(config)
    for key, value in out.items():
        if isinstance(value, tuple):
            out[key] = list(value)
        elif isinstance(value, dict):
            out[key] = {k: list(v) if isinstance(v, tuple) else v for k, v in value.items()}
    return out


#: The radiance presets (defined in `dacast.workflow.radiance.presets`), in listing order.
RADIANCE_PRESET_REGISTRY: Presets[RadianceConfig] = Presets(radiance_presets(), noun="radiance preset")
#: Name -> configuration of every preset.
RADIANCE_PRESETS: dict[str, RadianceConfig] = {name: p.config for name, p in RADIANCE_PRESET_REGISTRY.items()}


def radiance_config_from_dict(data: Any) -> RadianceConfig:
    """A validated `RadianceConfig` from the YAML schema of this module; `ConfigError` names the key path."""
    return parse(RadianceConfig, with_preset(data, RADIANCE_PRESET_REGISTRY, radiance_config_to_dict))


def load_radiance_yaml(path: str | Path) -> RadianceConfig:
    """A validated `RadianceConfig` from a YAML file."""
    return load_yaml_with(path, radiance_config_from_dict)


def load_radiance_target(
    target: str | Path, *, cycles: int | None = None, seeds: list[int] | None = None
) -> RadianceConfig:
    """A preset name or a YAML path, with the CLI overrides applied (validated again)."""
    config, _ = resolve(target, RADIANCE_PRESET_REGISTRY, radiance_config_from_dict)
    changes: dict[str, Any] = {}
    if cycles is not None:
        changes["cycles"] = parse_value(int, cycles, "cycles")
    if seeds:
        changes["seeds"] = parse_value(tuple[int, ...], seeds, "seeds")
    return build(lambda **kw: dataclasses.replace(config, **kw), changes)


__all__ = [
    "LEARNED",
    "RADIANCE_PRESETS",
    "RADIANCE_PRESET_REGISTRY",
    "ColumnSpec",
    "ConventionalSpec",
    "Experiment",
    "MLSpec",
    "RadianceConfig",
    "SatelliteSpec",
    "load_radiance_target",
    "load_radiance_yaml",
    "radiance_config_from_dict",
    "radiance_config_to_dict",
]
