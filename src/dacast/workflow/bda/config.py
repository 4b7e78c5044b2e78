"""Settings of the Big Data Assimilation twin (`dacast bda run`), its presets and YAML schema.

YAML schema (every key optional; defaults in parentheses)::

    [preset]: bda-small          # start from a preset; the keys below override it
    members: 50                  # ensemble size (>= 2)
    grid: 64                     # grid points per side of the periodic square domain
    cycles: 20                   # 30-second analysis cycles
    cycle_seconds: 30.0          # time between radar volumes (s)
    spinup_minutes: 60.0         # truth and ensemble-pool spin-up before the first cycle (min)
    ensemble_pool: 50            # independent runs the initial members are drawn from
    ensemble_lag_minutes: 3.0    # time between snapshots taken from one pool run (min)
    forecast_every: 10           # every N cycles a 30-minute forecast (0: only after the last cycle)
    forecast_minutes: 30.0       # length of those forecasts (min)
    forecast_members: null       # members run in them (null: all)
    free_run_members: null       # members of the no-DA reference run (null: all)
    outage_cycles: []            # cycles without radar data (forecast only)
    checkpoint_every: 10         # cycles between checkpoints (the last cycle always writes one)
    seed: 0
    device: auto                 # cpu | cuda | auto
    dtype: float32               # float32 | float64
    model: {...}                 # WurschCraigConfig fields except ny, nx (set by grid)
    radar: {...}                 # RadarConfig fields
    letkf: {...}                 # GriddedLETKFConfig fields
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from dacast.da.gridded import GriddedLETKFConfig
from dacast.models.wursch_craig import WurschCraigConfig
from dacast.obs.radar import RadarConfig
from dacast.workflow.twin.config import ConfigError
from dacast.workflow.twin.loader import _build, _check_keys, _mapping, _merge, is_yaml_path, load_yaml_with
from dacast.workflow.nowcast.train import _fields

Dtype = Literal["float32", "float64"]

# The twin's model settings where they differ from WurschCraigConfig's: a steering wind
# that carries the cells across the radar's view, and rain removed about half as fast
# (half-life 2.75 h instead of 83 min), so that cells outlive a 30-minute forecast.
MODEL_DEFAULTS: dict[str, float] = {"background_u": 5.0, "background_v": 2.5, "alpha": 7e-5}
Device = Literal["cpu", "cuda", "auto"]


@dataclass(frozen=True, kw_only=True)
class BDAConfig:
    """One Big Data Assimilation twin experiment (mission S4).

    Attributes:
        members: ensemble size k.
        grid: points per side of the periodic square grid (``grid x grid`` at ``model.dx``).
        cycles: number of analysis cycles.
        cycle_seconds: time between radar volumes and analyses (s).
        spinup_minutes: spin-up of the truth and of the ensemble pool from rest (min).
        ensemble_pool: independent runs (own triggering noise) the initial members are taken from.
        ensemble_lag_minutes: spacing of the snapshots taken from each pool run (min).
        forecast_every: cycles between extended forecasts (0: one after the last cycle).
        forecast_minutes: length of the extended forecasts (min).
        forecast_members: members run in the extended forecasts (None: all).
        free_run_members: members of the reference run without DA (None: all).
        outage_cycles: cycles (0-based) with no radar data: forecast only.
        checkpoint_every: cycles between checkpoints.
        seed: master seed (truth noise, pool noise, observation errors).
        device: ``cpu``, ``cuda`` or ``auto``.
        dtype: floating type of model, operators and filter.
        model: convective-scale model settings (``ny``/``nx`` follow ``grid``; defaults
            `MODEL_DEFAULTS` on top of `WurschCraigConfig`'s).
        radar: radar and observation-error settings.
        letkf: gridded LETKF settings.
    """

    members: int = 50
    grid: int = 64
    cycles: int = 20
    cycle_seconds: float = 30.0
    spinup_minutes: float = 60.0
    ensemble_pool: int = 50
    ensemble_lag_minutes: float = 3.0
    forecast_every: int = 10
    forecast_minutes: float = 30.0
    forecast_members: int | None = None
    free_run_members: int | None = None
    outage_cycles: tuple[int, ...] = ()
    checkpoint_every: int = 10
    seed: int = 0
    device: Device = "auto"
    dtype: Dtype = "float32"
    model: WurschCraigConfig = field(default_factory=lambda: WurschCraigConfig(**MODEL_DEFAULTS))
    radar: RadarConfig = field(default_factory=RadarConfig)
    letkf: GriddedLETKFConfig = field(default_factory=GriddedLETKFConfig)

    def __post_init__(self) -> None:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ConfigError(message)

        need(self.members >= 2, f"members must be at least 2, got {self.members}")
        need(self.grid >= 8, f"grid must be at least 8 points per side, got {self.grid}")
        need(self.cycles >= 1, f"cycles must be positive, got {self.cycles}")
        need(self.cycle_seconds > 0, f"cycle_seconds must be positive, got {self.cycle_seconds}")
        steps = self.cycle_seconds / self.model.dt
        need(
            abs(steps - round(steps)) < 1e-9 and round(steps) >= 1,
            f"cycle_seconds ({self.cycle_seconds:g}) must be a multiple of the model step model.dt ({self.model.dt:g})",
        )
        need(self.spinup_minutes >= 0, f"spinup_minutes must be >= 0, got {self.spinup_minutes}")
        need(self.ensemble_pool >= 1, f"ensemble_pool must be positive, got {self.ensemble_pool}")
        need(self.ensemble_lag_minutes > 0, f"ensemble_lag_minutes must be positive, got {self.ensemble_lag_minutes}")
        need(self.forecast_every >= 0, f"forecast_every must be >= 0, got {self.forecast_every}")
        need(self.forecast_minutes > 0, f"forecast_minutes must be positive, got {self.forecast_minutes}")
        for name in ("forecast_members", "free_run_members"):
            value = getattr(self, name)
            need(value is None or value >= 1, f"{name} must be positive or null, got {value}")
        need(
            all(0 <= c < self.cycles for c in self.outage_cycles),
            f"outage_cycles must lie in [0, {self.cycles - 1}], got {list(self.outage_cycles)}",
        )
        need(self.checkpoint_every >= 1, f"checkpoint_every must be positive, got {self.checkpoint_every}")
        need(self.device in ("cpu", "cuda", "auto"), f"device must be cpu, cuda or auto, got {self.device!r}")
        need(self.dtype in ("float32", "float64"), f"dtype must be float32 or float64, got {self.dtype!r}")
        if (self.model.ny, self.model.nx) != (self.grid, self.grid):
            object.__setattr__(self, "model", replace(self.model, ny=self.grid, nx=self.grid))

    @property
    def steps_per_cycle(self) -> int:
        """Model steps between two analyses."""
        return round(self.cycle_seconds / self.model.dt)

    @property
    def dx_km(self) -> float:
        """Grid spacing (km)."""
        return self.model.dx / 1000.0

    @property
    def n_forecast_members(self) -> int:
        """Members run in the extended forecasts."""
        return min(self.members, self.forecast_members or self.members)

    @property
    def n_free_members(self) -> int:
        """Members of the no-DA reference run."""
        return min(self.members, self.free_run_members or self.members)

    def forecast_due(self, cycle: int) -> bool:
        """Whether an extended forecast starts from the analysis of ``cycle`` (0-based)."""
        if cycle == self.cycles - 1:
            return True
        return self.forecast_every > 0 and (cycle + 1) % self.forecast_every == 0


@dataclass(frozen=True)
class BDAPreset:
    """A named configuration with the one-line story of what it shows."""

    name: str
    description: str
    config: BDAConfig


# SCALE-LETKF's RTPP 0.95 and 2-km localization are tuned for 1000 members; with 50-100
# members, less relaxation and a 1-km length halve the rain error of the analysis and keep
# winds and height closer to the free run (measured: docs/bda.md).
SMALL_ENSEMBLE_LETKF = GriddedLETKFConfig(localization=1.0, rtpp=0.5)
# On the 1000-member run, weights every 2nd or 4th point gave the same or slightly lower
# analysis RMSE than every point (docs/bda.md), at a fraction of the cost.
MID_LETKF = replace(SMALL_ENSEMBLE_LETKF, weight_stride=2)


def _presets() -> dict[str, BDAPreset]:
    small = BDAConfig(
        members=50,
        grid=64,
        spinup_minutes=45.0,
        ensemble_pool=25,
        ensemble_lag_minutes=5.0,
        letkf=SMALL_ENSEMBLE_LETKF,
    )
    mid = BDAConfig(members=100, grid=256, forecast_every=20, free_run_members=50, letkf=MID_LETKF)
    big = replace(
        mid, members=1000, cycles=10, forecast_every=10, forecast_members=100, letkf=GriddedLETKFConfig(weight_stride=4)
    )
    return {
        p.name: p
        for p in (
            BDAPreset("bda-small", "64x64 at 500 m, 50 members, 20 cycles, L=1 km, RTPP 0.5 (runs in CI)", small),
            BDAPreset(
                "bda-256",
                "256x256 at 500 m (128 km), 100 members, 20 cycles, L=1 km, RTPP 0.5, weights every 2nd point",
                mid,
            ),
            BDAPreset(
                "bda-256-1000",
                "256x256 at 500 m, 1000 members, 10 cycles, SCALE-LETKF's L=2 km, RTPP 0.95; weights every 4th point",
                big,
            ),
        )
    }


BDA_PRESETS: dict[str, BDAPreset] = _presets()


def get_bda_preset(name: str) -> BDAPreset:
    """The preset called ``name``; `ConfigError` lists the valid names."""
    try:
        return BDA_PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(BDA_PRESETS)}") from None


_SECTIONS: dict[str, type] = {"model": WurschCraigConfig, "radar": RadarConfig, "letkf": GriddedLETKFConfig}
_TOP = tuple(f.name for f in dataclasses.fields(BDAConfig) if f.name not in _SECTIONS)


def bda_config_from_dict(data: Any, base: BDAConfig | None = None) -> BDAConfig:
    """A validated `BDAConfig` from a YAML mapping (see the module docstring); `ConfigError` on bad input."""
    data = dict(_mapping(data, "configuration"))
    if "preset" in data:
        preset = data.pop("preset")
        if not isinstance(preset, str):
            raise ConfigError(f"preset must be a name, got {preset!r}")
        base = get_bda_preset(preset).config
    base = base or BDAConfig()
    _check_keys(data, ("preset", *_TOP, *_SECTIONS), "configuration")
    kwargs: dict[str, Any] = _fields(BDAConfig, {k: v for k, v in data.items() if k in _TOP}, "configuration")
    for name, cls in _SECTIONS.items():
        current = dataclasses.asdict(getattr(base, name))
        skip = ("ny", "nx") if name == "model" else ()
        given = _fields(cls, data.get(name), name, skip=skip)
        kwargs[name] = _build(cls, _merge(current, given), name)
    return _build(BDAConfig, {**_plain_top(base), **kwargs}, "configuration")


def _plain_top(config: BDAConfig) -> dict[str, Any]:
    return {name: getattr(config, name) for name in _TOP}


def load_bda_target(
    target: str | Path,
    *,
    members: int | None = None,
    grid: int | None = None,
    cycles: int | None = None,
    device: str | None = None,
) -> tuple[BDAConfig, BDAPreset | None]:
    """A preset name or YAML file, with command-line overrides; `ConfigError` on any problem."""
    if is_yaml_path(target):
        config, preset = load_yaml_with(target, bda_config_from_dict), None
    else:
        preset = get_bda_preset(str(target))
        config = preset.config
    overrides = {"members": members, "grid": grid, "cycles": cycles, "device": device}
    given = {k: v for k, v in overrides.items() if v is not None}
    if given:
        config = bda_config_from_dict(given, base=config)
    if config.members < 2:
        raise ConfigError(f"members must be at least 2, got {config.members}")
    return config, preset


def bda_config_to_dict(config: BDAConfig) -> dict[str, Any]:
    """Plain (JSON/YAML-ready) form of ``config``; `bda_config_from_dict` reads it back.

    ``model.ny``/``model.nx`` are left out: they follow ``grid``.
    """

    def plain(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        return value

    out = plain(dataclasses.asdict(config))
    for key in ("ny", "nx"):
        out["model"].pop(key, None)
    return out
