"""Unlimited rain-rate sequences from the convective-scale twin, for pre-training the nowcasters.

Real radar events are scarce (tens of frames), so the ConvLSTM nowcasters can be
pre-trained on the truth runs of the Big Data Assimilation twin (mission §S4) and
then fine-tuned on real events. `twin_rain_sequence` runs the 2-D Würsch-Craig model
(`dacast.models.WurschCraig`) from a seeded rest state with its triggering noise,
spins it up, and every ``frame_minutes`` turns the model rain into what a radar
composite shows:

1. model rain ``r`` (dimensionless) -> reflectivity (dBZ) by the twin radar's power
   law, `dacast.obs.radar.reflectivity_dbz` (``rain_to_rhoqr`` and ``floor_dbz`` of
   ``config.radar``; ``docs/bda_model.md``);
2. dBZ -> rain rate ``R`` (mm/h) by ``Z = a R^b`` (Marshall-Palmer ``a = 200``,
   ``b = 1.6`` by default), `dacast.io.from_dbz`; echoes at or below the no-echo
   threshold (default the radar's ``clear_air_dbz``, 10 dBZ, about 0.15 mm/h) are
   clear air, exactly 0 mm/h.

The output is a ``(time, y, x)`` float32 array in mm/h, what `dacast.ml.RainCropDataset`
and `dacast.ml.train_nowcast` take. With the same seed and model settings the frames
equal the rain of the BDA twin's truth (`dacast.workflow.bda.forecast.initial_truth`
and the truth of `RadarTwin`), valid at the end of the spin-up and every frame after.

`augment` and `all_augmentations` give the eight rotations and mirror images of a
whole sequence (the same transform on every frame, so the motion turns with the
field); `quality_mask` is the 0/1 valid-pixel mask for the loss.

The twin's model settings and seeds are the BDA application's (`dacast.workflow.bda.config.MODEL_DEFAULTS`,
`dacast.workflow.bda.forecast.Seeds`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import Tensor

from dacast.io.convert import from_dbz
from dacast.models.wursch_craig import WurschCraig, WurschCraigConfig
from dacast.models.wursch_craig_limits import unstable_step
from dacast.obs.radar import RadarConfig, radar_mask, reflectivity_dbz
from dacast.workflow.bda.config import MODEL_DEFAULTS, BDAConfig
from dacast.workflow.bda.forecast import Seeds
from dacast.workflow.limits import INT64_MAX

__all__ = [
    "DIHEDRAL",
    "TwinRainConfig",
    "all_augmentations",
    "augment",
    "invert_augment",
    "model_rain_rate",
    "quality_mask",
    "twin_coverage",
    "twin_rain_sequence",
]

#: The eight ``(k, flip)`` of `augment`, in the order `all_augmentations` yields them.
DIHEDRAL: tuple[tuple[int, bool], ...] = tuple((k, flip) for flip in (False, True) for k in range(4))


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _steps(minutes: float, dt: float, name: str) -> int:
    """``minutes`` as a whole number of model steps of ``dt`` seconds; ValueError otherwise."""
    steps = minutes * 60.0 / dt
    _require(
        abs(steps - round(steps)) < 1e-9 * max(1.0, steps),
        f"{name} ({minutes:g} min) must be a whole number of model steps (model.dt = {dt:g} s)",
    )
    return round(steps)


@dataclass(frozen=True, kw_only=True)
class TwinRainConfig:
    """One rain-rate sequence of the twin.

    Attributes:
        grid: points per side of the periodic square domain (``grid x grid`` at ``model.dx`` m).
        frames: frames in the sequence (the first one at the end of the spin-up).
        frame_minutes: time between frames (min); a whole number of model steps ``model.dt``.
        spinup_minutes: model time from rest to the first frame (min); a whole number of model steps.
        seed: in ``[0, 2^63 - 1]``; the initial perturbations and triggering noise, as the BDA twin's truth.
        model: Würsch-Craig settings (grid spacing ``dx``, step ``dt``, physics); ``ny``/``nx`` follow
            ``grid``. Default: the BDA twin's (`MODEL_DEFAULTS`).
        radar: the twin radar; its ``rain_to_rhoqr`` and ``floor_dbz`` give the reflectivity, its
            ``clear_air_dbz`` the default no-echo threshold, its site and range `twin_coverage`.
        zr_a: ``a`` of ``Z = a R^b`` (Z in mm^6 m^-3, R in mm/h); Marshall-Palmer 200.
        zr_b: ``b`` of ``Z = a R^b``; Marshall-Palmer 1.6.
        no_echo_dbz: reflectivities at or below this (dBZ) are clear air, 0 mm/h; ``None``: the radar's
            ``clear_air_dbz``. Must not lie below ``radar.floor_dbz`` (else rain-free air would rain).
    """

    grid: int = 128
    frames: int = 48
    frame_minutes: float = 5.0
    spinup_minutes: float = 60.0
    seed: int = 0
    model: WurschCraigConfig = field(default_factory=lambda: WurschCraigConfig(**MODEL_DEFAULTS))
    radar: RadarConfig = field(default_factory=RadarConfig)
    zr_a: float = 200.0
    zr_b: float = 1.6
    no_echo_dbz: float | None = None

    def __post_init__(self) -> None:
        for name in ("grid", "frames", "seed"):
            value = getattr(self, name)
            _require(
                isinstance(value, int | np.integer) and not isinstance(value, bool),
                f"{name} must be an integer, got {value!r}",
            )
        for name in ("frame_minutes", "spinup_minutes", "zr_a", "zr_b", "no_echo_dbz"):
            value = getattr(self, name)
            _require(value is None or math.isfinite(value), f"{name} must be a finite number, got {value!r}")
        _require(self.grid >= 8, f"grid must be at least 8 points per side, got {self.grid}")
        _require(self.frames >= 1, f"frames must be at least 1, got {self.frames}")
        _require(self.frame_minutes > 0, f"frame_minutes must be positive, got {self.frame_minutes}")
        _require(self.spinup_minutes >= 0, f"spinup_minutes must be >= 0, got {self.spinup_minutes}")
        _require(0 <= self.seed <= INT64_MAX, f"seed must be >= 0 and < 2^63, got {self.seed}")
        _require(
            self.zr_a > 0 and self.zr_b > 0, f"Z-R coefficients must be positive, got a={self.zr_a}, b={self.zr_b}"
        )
        floor = self.radar.floor_dbz
        _require(
            self.echo_threshold_dbz >= floor,
            f"no_echo_dbz ({self.echo_threshold_dbz:g}) must be >= radar.floor_dbz ({floor:g}): "
            "else rain-free cells would get a positive rain rate",
        )
        if (self.model.ny, self.model.nx) != (self.grid, self.grid):
            object.__setattr__(self, "model", replace(self.model, ny=self.grid, nx=self.grid))
        _steps(self.frame_minutes, self.model.dt, "frame_minutes")
        _steps(self.spinup_minutes, self.model.dt, "spinup_minutes")
        self._check_stability()

    def _check_stability(self) -> None:
        """ValueError for model steps that surely blow up (the limits of ``docs/bda_model.md``, as `BDAConfig`)."""
        problem = unstable_step(self.model)
        _require(problem is None, problem or "")

    @classmethod
    def from_bda(cls, bda: BDAConfig, **overrides: Any) -> TwinRainConfig:
        """A config with a BDA twin's grid, model, radar, spin-up and seed, and ``overrides`` (any field) on top.

        ``bda`` is e.g. ``get_bda_preset("bda-small").config``; with the same seed the frames are that twin's truth.
        """
        base = {"grid": bda.grid, "model": bda.model, "radar": bda.radar, "spinup_minutes": bda.spinup_minutes}
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - names)
        _require(not unknown, f"unknown TwinRainConfig fields {unknown}; valid: {sorted(names)}")
        return cls(**{**base, "seed": bda.seed, **overrides})

    @property
    def echo_threshold_dbz(self) -> float:
        """The no-echo threshold in use (dBZ): ``no_echo_dbz``, else the radar's ``clear_air_dbz``."""
        return self.radar.clear_air_dbz if self.no_echo_dbz is None else float(self.no_echo_dbz)

    @property
    def min_rain_rate(self) -> float:
        """The rain rate of the no-echo threshold (mm/h): every non-zero pixel exceeds it."""
        return (10.0 ** (self.echo_threshold_dbz / 10.0) / self.zr_a) ** (1.0 / self.zr_b)

    @property
    def frame_steps(self) -> int:
        """Model steps between two frames, ``frame_minutes * 60 / model.dt``."""
        return _steps(self.frame_minutes, self.model.dt, "frame_minutes")

    @property
    def spinup_steps(self) -> int:
        """Model steps of the spin-up, ``spinup_minutes * 60 / model.dt``."""
        return _steps(self.spinup_minutes, self.model.dt, "spinup_minutes")


def model_rain_rate(rain: Tensor, config: TwinRainConfig) -> Tensor:
    """Rain rate a radar would report for the model rain ``r``.

    ``dBZ = reflectivity_dbz(r)`` (the twin radar's power law, ``config.radar``), then
    ``R = (10^(dBZ/10) / a)^(1/b)``, and ``R = 0`` where ``dBZ <= config.echo_threshold_dbz``.

    Args:
        rain: model rain ``r``, any shape, dimensionless (>= 0).
        config: the conversion settings (``radar``, ``zr_a``, ``zr_b``, ``no_echo_dbz``).

    Returns:
        Rain rate in mm/h, same shape, dtype and device as ``rain``; 0 or ``> config.min_rain_rate``.
    """
    dbz = reflectivity_dbz(rain, rain_to_rhoqr=config.radar.rain_to_rhoqr, floor_dbz=config.radar.floor_dbz)
    return from_dbz(dbz, config.zr_a, config.zr_b, zero_dbz=config.echo_threshold_dbz)


def twin_rain_sequence(config: TwinRainConfig, *, progress: bool = False) -> np.ndarray:
    """Run the twin's truth (no assimilation) and return its radar rain rate every ``frame_minutes``.

    The model starts from rest with tiny seeded height perturbations
    (`WurschCraig.initial_state`), runs ``spinup_minutes`` with its triggering noise, and
    then ``frames - 1`` times ``frame_minutes``; frame ``t`` is valid ``spinup_minutes +
    t * frame_minutes`` after the start. Noise step ``j`` after the spin-up is the BDA
    twin's global step ``j``, so the frames are the BDA truth's rain for the same seed and
    model. Same config, same output (bitwise on one machine); another seed gives an
    independent run. Runs on the CPU in float32; single-threaded torch is fastest for one
    small grid (set the thread count in the calling process).

    Args:
        config: grid, frames, spin-up, seed, model, radar and Z-R settings.
        progress: show a progress bar over the frames.

    Returns:
        Rain rate, shape ``(frames, grid, grid)`` = ``(time, y, x)``, float32, mm/h; finite, 0 in clear
        air, else above ``config.min_rain_rate``. Row ``j`` is ``y = j * model.dx`` (north is +y, as in
        `dacast.obs.radar`); the domain is periodic.
    """
    model = WurschCraig(config.model)
    seed = Seeds.of(config.seed).truth
    dt = config.model.dt
    x = model.initial_state(1, seed=seed, dtype=torch.float32)
    if config.spinup_steps:
        x = model.forecast(x, config.spinup_steps * dt, seed=seed, start_step=-config.spinup_steps)
    out = np.empty((config.frames, config.grid, config.grid), dtype=np.float32)
    columns = (TextColumn("[bold]twin rain"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, disable=not progress) as bar:
        task = bar.add_task("", total=config.frames)
        for t in range(config.frames):
            if t > 0:
                x = model.forecast(x, config.frame_steps * dt, seed=seed, start_step=(t - 1) * config.frame_steps)
            out[t] = model_rain_rate(x[0, 3], config).numpy()
            bar.update(task, completed=t + 1)
    return out


def twin_coverage(config: TwinRainConfig) -> np.ndarray:
    """Cells the twin radar sees (`dacast.obs.radar.radar_mask`): ``(grid, grid)`` bool, ``(y, x)``.

    Use it as ``coverage`` in `quality_mask` to train on the twin with a real radar's gaps
    (near range, blocked sector, beyond ``max_range``).
    """
    return radar_mask(config.model, config.radar).numpy()


def _as_field(sequence: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(sequence)
    _require(a.ndim >= 2, f"{what} must have at least the axes (y, x), got shape {a.shape}")
    return a


def _quarter_turns(k: int, flip: bool) -> int:
    _require(isinstance(k, int | np.integer) and not isinstance(k, bool), f"k must be an integer, got {k!r}")
    _require(isinstance(flip, bool | np.bool_), f"flip must be a bool, got {flip!r}")
    return int(k) % 4


def augment(sequence: np.ndarray, k: int, flip: bool) -> np.ndarray:
    """One of the eight rotations and reflections of the square, applied to every frame alike.

    The mirror (``flip``: ``x -> -x``, the last axis reversed) comes first, then ``k``
    quarter turns ``np.rot90(..., k, axes=(-2, -1))``. A whole sequence moves with its
    field: each quarter turn takes a motion ``(dy, dx)`` (pixels per frame) to
    ``(-dx, dy)``, the mirror takes it to ``(dy, -dx)``. Transform a quality mask the same
    way. Rain rates are unchanged, so the sample stays physically consistent; what is
    lost is a preferred direction (prevailing winds, orography, a radar's fixed gaps).

    Args:
        sequence: ``(..., y, x)``, e.g. ``(time, y, x)`` rain rate in mm/h; not modified.
        k: quarter turns (any integer; taken modulo 4).
        flip: mirror ``x`` first.

    Returns:
        A new C-contiguous array, ``(..., x, y)`` for odd ``k``, else ``(..., y, x)``; same dtype and unit.
    """
    a = _as_field(sequence, "sequence")
    turns = _quarter_turns(k, flip)
    if flip:
        a = a[..., ::-1]
    return np.ascontiguousarray(np.rot90(a, turns, axes=(-2, -1)))


def invert_augment(sequence: np.ndarray, k: int, flip: bool) -> np.ndarray:
    """The inverse of `augment` with the same ``(k, flip)``: ``invert_augment(augment(a, k, f), k, f) == a``.

    Args:
        sequence: ``(..., y, x)`` as returned by ``augment(a, k, flip)``, e.g. a prediction; not modified.
        k: quarter turns given to `augment`.
        flip: mirror given to `augment`.

    Returns:
        A new C-contiguous array in the original orientation, same dtype and unit.
    """
    a = _as_field(sequence, "sequence")
    turns = _quarter_turns(k, flip)
    a = np.rot90(a, -turns, axes=(-2, -1))
    if flip:
        a = a[..., ::-1]
    return np.ascontiguousarray(a)


def all_augmentations(sequence: np.ndarray) -> Iterator[np.ndarray]:
    """Yield the eight dihedral variants of ``sequence`` (``(..., y, x)``), in the order of `DIHEDRAL`.

    The first is an unchanged copy. Each is a new array (8 copies of the data in all),
    e.g. ``RainCropDataset(list(all_augmentations(seq)), config)``.
    """
    a = _as_field(sequence, "sequence")
    for k, flip in DIHEDRAL:
        yield augment(a, k, flip)


def quality_mask(
    sequence: np.ndarray, coverage: np.ndarray | None = None, *, max_rain: float | None = None
) -> np.ndarray:
    """Data-quality mask for the loss: 1.0 where a pixel is valid, 0.0 where it is not.

    A pixel is valid where the rain rate is finite (not NaN: no data), not negative,
    at most ``max_rain`` (when given: larger values are clutter or artefacts) and inside
    ``coverage`` (when given). Weight the loss by it, or set ``sequence[mask == 0] = NaN``
    before `RainCropDataset`, which masks NaN.

    Args:
        sequence: rain rate, ``(time, y, x)``, mm/h; NaN = no data.
        coverage: where the radar sees, ``(y, x)`` (every frame) or ``(time, y, x)``; bool, or numbers
            (non-zero and finite = inside), e.g. `twin_coverage`.
        max_rain: largest plausible rain rate (mm/h), positive; ``None``: no upper limit.

    Returns:
        Mask ``(time, y, x)`` float32 of 0.0 and 1.0.
    """
    rain = np.asarray(sequence)
    _require(rain.ndim == 3, f"sequence must be (time, y, x), got shape {rain.shape}")
    _require(max_rain is None or max_rain > 0, f"max_rain must be positive or None, got {max_rain}")
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(rain) & (rain >= 0)
        if max_rain is not None:
            valid &= rain <= max_rain
    if coverage is not None:
        cov = np.asarray(coverage)
        _require(
            cov.shape in (rain.shape[1:], rain.shape),
            f"coverage must have shape (y, x) = {rain.shape[1:]} or (time, y, x) = {rain.shape}, got {cov.shape}",
        )
        inside = cov if cov.dtype == bool else np.isfinite(cov) & (cov != 0)
        valid &= inside
    return valid.astype(np.float32)
