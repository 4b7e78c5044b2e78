"""Settings of the Big Data Assimilation twin (`dacast bda run`) and its YAML schema.

The presets are defined in `dacast.workflow.bda.presets`; `BDA_PRESETS` (here)
is their registry. YAML becomes a `BDAConfig` through `dacast.workflow.schema`:
the file's keys are merged onto the settings of its preset (or of the defaults),
then every field is checked against its type hint.

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
    seed: 0                      # in [0, 2^63 - 1]
    device: auto                 # cpu | cuda | auto
    dtype: float32               # float32 | float64
    model: {...}                 # WurschCraigConfig fields except ny, nx (set by grid)
    radar: {...}                 # RadarConfig fields
    letkf: {...}                 # GriddedLETKFConfig fields

Numbers must be finite; the model step must be stable (gravity waves: sqrt(g H0) dt / dx <= 1/sqrt(2);
diffusion: K dt / dx^2 <= 1/4; rain advection: |u| dt / dx <= 1), a run at most 10^8 model steps, and
the run's arrays must fit this machine's memory (`BDAConfig.estimated_bytes`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from dacast.da.gridded import GriddedLETKFConfig
from dacast.models.wursch_craig import WurschCraigConfig
from dacast.models.wursch_craig_limits import unstable_step
from dacast.obs.radar import RadarConfig
from dacast.workflow.bda.presets import bda_presets
from dacast.workflow.limits import require_fits, require_seed, require_steps
from dacast.workflow.schema import Preset, Presets, mapping, merge, parse, require, resolve, with_preset

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
        require(self.members >= 2, f"members must be at least 2, got {self.members}")
        require(self.grid >= 8, f"grid must be at least 8 points per side, got {self.grid}")
        require(self.cycles >= 1, f"cycles must be positive, got {self.cycles}")
        require(self.cycle_seconds > 0, f"cycle_seconds must be positive, got {self.cycle_seconds}")
        steps = self.cycle_seconds / self.model.dt
        require(
            abs(steps - round(steps)) < 1e-9 and round(steps) >= 1,
            f"cycle_seconds ({self.cycle_seconds:g}) must be a multiple of the model step model.dt ({self.model.dt:g})",
        )
        require(self.spinup_minutes >= 0, f"spinup_minutes must be >= 0, got {self.spinup_minutes}")
        require(self.ensemble_pool >= 1, f"ensemble_pool must be positive, got {self.ensemble_pool}")
        require(
            self.ensemble_lag_minutes > 0, f"ensemble_lag_minutes must be positive, got {self.ensemble_lag_minutes}"
        )
        require(self.forecast_every >= 0, f"forecast_every must be >= 0, got {self.forecast_every}")
        require(self.forecast_minutes > 0, f"forecast_minutes must be positive, got {self.forecast_minutes}")
        for name in ("forecast_members", "free_run_members"):
            value = getattr(self, name)
            require(value is None or value >= 1, f"{name} must be positive or null, got {value}")
        require(
            all(0 <= c < self.cycles for c in self.outage_cycles),
            f"outage_cycles must lie in [0, {self.cycles - 1}], got {list(self.outage_cycles)}",
        )
        require(self.checkpoint_every >= 1, f"checkpoint_every must be positive, got {self.checkpoint_every}")
        require_seed(self.seed)
        require(self.device in ("cpu", "cuda", "auto"), f"device must be cpu, cuda or auto, got {self.device!r}")
        require(self.dtype in ("float32", "float64"), f"dtype must be float32 or float64, got {self.dtype!r}")
        stride = self.letkf.weight_stride
        require(self.grid % stride == 0, f"grid ({self.grid}) must be a multiple of letkf.weight_stride ({stride})")
        self._check_stability()
        rays, gates = 360.0 / self.radar.azimuth_step, self.radar.max_range / self.radar.gate_spacing
        sizes = (
            f"members={self.members} x grid {self.grid}^2 x cycles={self.cycles}, radar {rays:.3g} x {gates:.3g} gates"
        )
        require_fits(self.estimated_bytes(), sizes, gpu=self.device == "cuda")
        require_steps(self.model_steps(), f"spin-up, cycles={self.cycles} of {self.cycle_seconds:g} s and forecasts")
        if (self.model.ny, self.model.nx) != (self.grid, self.grid):
            object.__setattr__(self, "model", replace(self.model, ny=self.grid, nx=self.grid))

    def _check_stability(self) -> None:
        """`ConfigError` for settings at which the model or the radar surely overflow (docs/bda_model.md).

        The forward-backward step needs sqrt(g H0) dt / dx <= 1/sqrt(2), explicit diffusion K dt / dx^2 <= 1/4,
        upwind rain advection |u| dt / dx <= 1 and rain removal alpha dt <= 1; the triggering noise at most one
        perturbation per cell and step, no wider than the domain; reflectivities within +-100 dBZ; every
        other number within +-1e30 (float32 holds 3.4e38); LETKF inflation in [0.01, 100].
        """
        for section in ("model", "radar", "letkf"):
            for f in dataclasses.fields(getattr(self, section)):
                value = getattr(getattr(self, section), f.name)
                numbers = [v for v in (value if isinstance(value, tuple) else (value,)) if isinstance(v, float)]
                limit = 100.0 if f.name.endswith("_dbz") or f.name == "clear_air_value" else 1e30
                require(all(abs(v) <= limit for v in numbers), f"{section}.{f.name} must lie within +-{limit:g}")
        m, domain = self.model, self.grid * self.model.dx
        problem = unstable_step(m)
        require(problem is None, problem or "")
        kicks = m.noise_rate * domain * domain * m.dt
        require(kicks <= self.grid**2, f"model.noise_rate gives {kicks:.3g} perturbations a step, more than cells")
        require(m.noise_radius <= domain, f"model.noise_radius must be <= the domain ({domain:g} m)")
        inflation = self.letkf.inflation
        require(0.01 <= inflation <= 100, f"letkf.inflation must lie in [0.01, 100], got {inflation}")

    def model_steps(self) -> float:
        """Model steps of the whole run: spin-up, the pool's lagged snapshots, the cycles and the forecasts."""
        per_minute = 60.0 / self.model.dt
        lags = max(0.0, math.ceil(self.members / min(self.ensemble_pool, self.members)) - 1.0)
        forecasts = (self.cycles // self.forecast_every if self.forecast_every else 0) + 1
        spinup = (self.spinup_minutes + lags * self.ensemble_lag_minutes) * per_minute
        return (
            spinup + self.cycles * self.cycle_seconds / self.model.dt + forecasts * self.forecast_minutes * per_minute
        )

    def estimated_bytes(self) -> float:
        """Memory of the run's largest arrays (bytes, an estimate).

        With ``E = members x 4 x grid^2 x bytes`` (one ensemble): about 7 E for the ensemble, its
        analysis, H(x) of two observations per cell and the LETKF's working copies; the free run and
        the forecast members twice; the three fields per cycle (float32) kept for ``cycles.nc``, twice;
        the LETKF's neighbour table; the radar's raw polar gates (about ten float64 arrays of rays x gates).
        """
        cells, size = 4.0 * float(self.grid) ** 2, 4.0 if self.dtype == "float32" else 8.0
        ensemble = self.members * cells * size
        others = 2.0 * (self.n_free_members + self.n_forecast_members) * cells * size
        fields = 2.0 * self.cycles * 3.0 * cells * 4.0
        table = (self.grid / self.letkf.weight_stride) ** 2 * min(self.letkf.max_obs, 2.0 * self.grid**2) * 12.0
        gates = 80.0 * (360.0 / self.radar.azimuth_step) * (self.radar.max_range / self.radar.gate_spacing)
        return 7.0 * ensemble + others + fields + table + gates

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


#: A named BDA configuration with the one-line story of what it shows.
BDAPreset = Preset

#: The BDA presets (defined in `dacast.workflow.bda.presets`), in listing order.
BDA_PRESETS: Presets[BDAConfig] = Presets(bda_presets())

_SECTIONS = ("model", "radar", "letkf")


def get_bda_preset(name: str) -> Preset[BDAConfig]:
    """The preset called ``name``; `ConfigError` lists the valid names."""
    return BDA_PRESETS.get(name)


def _model_section(value: Any, where: str) -> WurschCraigConfig:
    """The ``model`` section: `WurschCraigConfig` fields except ``ny``/``nx``, which follow ``grid``."""
    return parse(WurschCraigConfig, value, where, skip=("ny", "nx"))


def bda_config_from_dict(data: Any, base: BDAConfig | None = None) -> BDAConfig:
    """A validated `BDAConfig` from a YAML mapping (see the module docstring); `ConfigError` on bad input.

    The keys of ``data`` override those of its ``preset:``, else of ``base``, else of `BDAConfig`'s
    defaults; an empty section (``letkf:`` with nothing under it) keeps the base's.
    """
    data = {k: v for k, v in mapping(data).items() if not (k in _SECTIONS and v is None)}
    if "preset" in data:
        merged = with_preset(data, BDA_PRESETS, bda_config_to_dict)
    else:
        merged = merge(bda_config_to_dict(base or BDAConfig()), data)
    return parse(BDAConfig, merged, hooks={WurschCraigConfig: _model_section})


def load_bda_target(
    target: str | Path,
    *,
    members: int | None = None,
    grid: int | None = None,
    cycles: int | None = None,
    device: str | None = None,
) -> tuple[BDAConfig, Preset[BDAConfig] | None]:
    """A preset name or YAML file, with command-line overrides; `ConfigError` on any problem.

    Returns ``(config, preset)``: ``preset`` is the named preset, ``None`` for a file (even one
    that starts from a preset: its settings are the file's).
    """
    config, preset = resolve(target, BDA_PRESETS, bda_config_from_dict, file_preset=False)
    overrides = {"members": members, "grid": grid, "cycles": cycles, "device": device}
    given = {k: v for k, v in overrides.items() if v is not None}
    if given:
        config = bda_config_from_dict(given, base=config)
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


__all__ = [
    "BDA_PRESETS",
    "MODEL_DEFAULTS",
    "BDAConfig",
    "BDAPreset",
    "bda_config_from_dict",
    "bda_config_to_dict",
    "get_bda_preset",
    "load_bda_target",
]
