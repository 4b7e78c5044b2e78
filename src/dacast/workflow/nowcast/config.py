"""Settings of the radar nowcasts: one run (`NowcastRunConfig`) and a ConvLSTM training (`NowcastTrainSpec`).

A run comes from Python or from the options of ``dacast nowcast run``. A training comes from YAML through
`dacast.workflow.schema` (`load_train_yaml`); the keys of ``model``, ``loss``,
``discriminator``, ``samples`` and ``training`` are the fields of
`dacast.ml.ConvLSTMConfig` (``kind: multires``: `MultiResConfig`), `NowcastLossConfig`, `DiscriminatorConfig`,
`NowcastDataConfig` and `NowcastTrainConfig`, with their defaults (keys in
``[brackets]`` are optional; ``data.twin`` and ``training.init_from``: `dacast.workflow.nowcast.pretrain`)::

    data:
      [root]: null                 # radar root; null: dacast.io.default_radar_root()
      train:                       # time ranges read for training (inclusive, UTC); optional with a twin
        - {source: mch, start: "2015-05-15T15:45", end: "2015-05-15T17:20"}
      validation:                  # held-back ranges, no overlap with train; a twin-only training may omit
        - {source: knmi, start: "2010-08-26T02:30", end: "2010-08-26T03:45"}  # them (held-out twin sequence)
      [twin]: {sequences: 8, frames: 48, grid: 128, seed: 0, spinup_minutes: 60, augment: false}
    [extrapolation]:               # input of the "obs + nowcasting" model (model.use_extrapolation)
      [motion]: trec               # trec | farneback | dis
      [motion_options]: {}         # fields of TRECConfig / OpticalFlowConfig (not 'method')
      [n_frames]: 3                # and the other fields of dacast.nowcast.ExtrapolationConfig
    [model]: {kind: convlstm, t_in: 4, t_out: 12, hidden_channels: [16, 32, 64], use_extrapolation: true}
                                   # multires also: n_outputs: 3, noise_channels: 0 (> 0: ensemble)
    [loss]: {huber_weight: 1.0, nonlocal_weight: 0.1, adversarial_weight: 0.02}
    [discriminator]: {channels: [16, 32, 64], n_frames: 4}
    [samples]: {min_valid_fraction: 0.9, min_rain_fraction: 0.05, samples_per_epoch: 1000}
    [training]: {batch_size: 8, max_steps: 300, crop_size: 128, lr: 1.0e-3, device: auto, val_every: 50}
                                   # multires: schedule: {steps_per_stage: [...], fade_steps: 0},
                                   #   resolution_weights: [...]; any kind: init_from: PATH (a new run only)
    checkpoint_dir: runs/nowcast-convlstm   # relative paths are taken from the current folder

Numbers are finite, seeds in [0, 2^63 - 1], max_steps <= 10^7, the crop within each source's grid, the training
within this machine's memory (`NowcastTrainSpec.estimated_bytes`); a run has <= `MAX_LEADS` leads and past frames.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_type_hints

import numpy as np
import torch

from dacast.io import SOURCES, SPECS, Source, default_radar_root
from dacast.io.sources import TimeLike, to_datetime64
from dacast.ml import DiscriminatorConfig, NowcastDataConfig, NowcastLossConfig, NowcastTrainConfig, shipped_nowcaster
from dacast.nowcast import ExtrapolationConfig
from dacast.nowcast.registry import MOTION_METHODS, NOWCAST_METHODS
from dacast.workflow.limits import ConfigError, load_yaml_with, require, require_fits, require_seed, show
from dacast.workflow.nowcast.extrapolation import extrapolation_config, extrapolation_settings
from dacast.workflow.nowcast.extrapolation import section as _section
from dacast.workflow.nowcast.pretrain import TwinData, check_training_keys, model_config
from dacast.workflow.schema import build, check_keys, mapping, parse, parse_value, require_keys

Method = Literal["extrapolation", "persistence", "convlstm"]
Motion = Literal["trec", "farneback", "dis"]
Device = Literal["auto", "cpu", "cuda"]
#: The methods of `dacast.nowcast.get_method`'s nowcast table, and the trained ConvLSTM.
METHODS: tuple[str, ...] = (*NOWCAST_METHODS, "convlstm")
#: The motion estimators of `dacast.nowcast.get_method`.
MOTIONS: tuple[str, ...] = tuple(MOTION_METHODS)
DEVICES: tuple[str, ...] = get_args(Device)
TIMESTEP_MIN = 5
DEFAULT_LEADS = 12
#: Most lead times (and past frames) of one nowcast: 24 h of 5-min frames.
MAX_LEADS = 288
#: Most ensemble members of one nowcast run.
MAX_MEMBERS = 100
#: Most optimiser steps of one training (at about 0.5 s a step, some two months).
MAX_TRAIN_STEPS = 10**7


def hhmm(t: np.datetime64) -> str:
    """``2015-05-15 16:30``: a time to the minute."""
    return str(np.datetime64(t, "m")).replace("T", " ")


def parse_time(value: TimeLike, where: str = "start") -> np.datetime64:
    """A UTC time (ISO string, naive = UTC) on the 5-min grid, as ``datetime64[ns]``; else `ConfigError`."""
    try:
        t = to_datetime64(value)
    except (TypeError, ValueError, ArithmeticError):
        raise ConfigError(f"{where} must be an ISO time such as 2015-05-15T16:30, got {show(value)}") from None
    minutes = (t - t.astype("datetime64[D]")) / np.timedelta64(1, "m")
    require(minutes % TIMESTEP_MIN == 0, f"{where} {hhmm(t)} is not on the {TIMESTEP_MIN}-min grid of the radar")
    return t


def parse_floats(text: str, where: str) -> tuple[float, ...]:
    """``"1,5"`` -> ``(1.0, 5.0)``: positive, finite numbers; else `ConfigError`."""
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"{where} must be comma-separated numbers such as 1,5, got {show(text)}") from None
    require(bool(values), f"{where} must name at least one value, got {show(text)}")
    require(all(np.isfinite(v) and v > 0 for v in values), f"{where} must be positive numbers, got {show(text)}")
    return values


def check_device(device: str) -> None:
    """`ConfigError` unless ``device`` is one of `DEVICES` and, for ``"cuda"``, CUDA is available."""
    require(device in DEVICES, f"device must be one of {', '.join(DEVICES)}; got {device!r}")
    require(device != "cuda" or torch.cuda.is_available(), "device 'cuda' asked for, but CUDA is not available")


def radar_root(root: Path | None) -> Path:
    """``root`` when it is a folder, `dacast.io.default_radar_root` for ``None``; else `ConfigError`."""
    if root is None:
        try:
            return default_radar_root()
        except FileNotFoundError as err:
            raise ConfigError(str(err)) from None
    require(Path(root).is_dir(), f"radar root {root} is not an existing folder")
    return Path(root)


@dataclass(frozen=True, kw_only=True)
class NowcastRunConfig:
    """One nowcast at one issue time.

    Attributes:
        source: ``"mch"``, ``"fmi"`` or ``"knmi"``.
        start: issue time ``t0`` (UTC), the last observed frame; ISO strings are parsed.
        method: ``"extrapolation"``, ``"persistence"`` or ``"convlstm"``.
        motion: motion estimator of the extrapolation (``"trec"``, ``"farneback"``, ``"dis"``);
            None: ``"trec"``, or for ``convlstm`` the one the checkpoint was trained with.
        n_leads: lead times of 5 min; None: 12, or the checkpoint's ``t_out``.
        past_frames: frames used for the motion of ``extrapolation`` (>= 2).
        checkpoint: ``convlstm`` only: a ``.pt`` file or checkpoint folder of `dacast.ml.train_nowcast`;
            None: the nowcaster shipped with dacast (`dacast.ml.shipped_nowcaster`).
        members: ``convlstm`` with an ensemble network only: also run this many members (2 … `MAX_MEMBERS`),
            written with their exceedance probabilities and scored with the CRPS; None: the central member only.
        root: radar root; None: `dacast.io.default_radar_root`.
        thresholds: score thresholds [mm/h].
        scales_km: FSS windows [km].
        device: ``convlstm`` only: ``"auto"``, ``"cpu"`` or ``"cuda"``.
    """

    source: Source
    start: TimeLike
    method: Method = "extrapolation"
    motion: Motion | None = None
    n_leads: int | None = None
    past_frames: int = 3
    checkpoint: Path | None = None
    members: int | None = None
    root: Path | None = None
    thresholds: tuple[float, ...] = (1.0, 5.0)
    scales_km: tuple[float, ...] = (10.0,)
    device: Device = "auto"

    def __post_init__(self) -> None:
        require(self.source in SOURCES, f"unknown radar source {self.source!r}; choose one of: {', '.join(SOURCES)}")
        object.__setattr__(self, "start", parse_time(self.start))
        require(self.method in METHODS, f"unknown method {self.method!r}; choose one of: {', '.join(METHODS)}")
        require(
            self.motion is None or self.motion in MOTIONS,
            f"unknown motion method {self.motion!r}; choose one of: {', '.join(MOTIONS)}",
        )
        require(self.motion is None or self.method != "persistence", "a motion method does not apply to persistence")
        leads_ok = self.n_leads is None or 1 <= self.n_leads <= MAX_LEADS
        require(leads_ok, f"leads must be >= 1 and <= {MAX_LEADS} (24 h of 5-min leads), got {self.n_leads}")
        require(self.past_frames >= 2, f"too few past frames: past_frames must be >= 2, got {self.past_frames}")
        require(self.past_frames <= MAX_LEADS, f"past_frames must be <= {MAX_LEADS} (24 h), got {self.past_frames}")
        if self.method == "convlstm":
            if self.checkpoint is None:
                try:
                    object.__setattr__(self, "checkpoint", shipped_nowcaster())
                except FileNotFoundError as err:
                    raise ConfigError(f"{err}; give --checkpoint PATH") from None
        else:
            require(self.checkpoint is None, f"a checkpoint applies to method convlstm only, not {self.method}")
            require(self.members is None, f"members apply to method convlstm only, not {self.method}")
        ok = self.members is None or 2 <= self.members <= MAX_MEMBERS
        require(ok, f"members must be >= 2 and <= {MAX_MEMBERS}, got {self.members}")
        for name in ("thresholds", "scales_km"):
            values = getattr(self, name)
            require(all(0 < v < np.inf for v in values) and bool(values), f"{name} must be positive, got {values}")
        require(self.device in DEVICES, f"device must be one of {', '.join(DEVICES)}; got {self.device!r}")


# ----------------------------------------------------------------------------- training

_TRAIN_SECTIONS = ("extrapolation", "model", "loss", "discriminator", "samples", "training")


@dataclass(frozen=True, kw_only=True)
class TimeRange:
    """Frames of one source from ``start`` to ``end`` inclusive, every 5 min (UTC)."""

    source: str
    start: np.datetime64
    end: np.datetime64

    def __post_init__(self) -> None:
        require(self.source in SOURCES, f"unknown radar source {self.source!r}; choose one of: {', '.join(SOURCES)}")
        require(self.end >= self.start, f"range {self}: end is before start")

    @property
    def n_frames(self) -> int:
        """Frames in the range, both ends included."""
        return int((self.end - self.start) // np.timedelta64(TIMESTEP_MIN, "m")) + 1

    def overlaps(self, other: TimeRange) -> bool:
        """Whether ``other`` shares a frame with this range."""
        return self.source == other.source and self.start <= other.end and other.start <= self.end

    def __str__(self) -> str:
        return f"{self.source} {str(self.start)[:16]}..{str(self.end)[:16]}"


@dataclass(frozen=True, kw_only=True)
class NowcastTrainSpec:
    """Everything `dacast.workflow.nowcast.train.train_from_spec` needs.

    Attributes:
        train: training time ranges (may be empty with ``twin``).
        validation: held-back validation ranges (no overlap with ``train``); empty only for a twin-only
            training, which validates on a held-out twin sequence (`TwinData.validation_seed`).
        config: the `NowcastTrainConfig` (its ``checkpoint_dir`` is where checkpoints go).
        extrapolation: extrapolation settings of the model's extra input (used when
            ``config.model.use_extrapolation``).
        root: radar root (None: `dacast.io.default_radar_root`).
        twin: twin rain sequences trained on as well as (or instead of) ``train`` (`TwinData`).
        init_from: checkpoint (file or folder) whose generator weights a new run starts from.
    """

    train: tuple[TimeRange, ...] = ()
    validation: tuple[TimeRange, ...] = ()
    config: NowcastTrainConfig
    extrapolation: ExtrapolationConfig = dataclasses.field(default_factory=ExtrapolationConfig)
    root: Path | None = None
    twin: TwinData | None = None
    init_from: Path | None = None

    def __post_init__(self) -> None:
        require(bool(self.train or self.twin), "data needs train ranges, a twin section or both")
        require(
            bool(self.validation) or not self.train,
            "data needs validation ranges with train ranges (only a twin-only training validates on the twin)",
        )
        require(self.config.checkpoint_dir is not None, "checkpoint_dir is required")
        window = self.config.data_config.window
        twin, crop = self.twin, self.config.data_config.crop_size
        if twin is not None:
            require(twin.frames >= window, f"data.twin.frames {twin.frames}: one sample needs t_in + t_out = {window}")
            require(crop <= twin.grid, f"training.crop_size {crop} is larger than the twin grid {twin.grid}")
        for kind, ranges in (("train", self.train), ("validation", self.validation)):
            for r in ranges:
                require(
                    r.n_frames >= window,
                    f"data.{kind} range {r} has {r.n_frames} frames; one sample needs t_in + t_out = {window}",
                )
        for v in self.validation:
            for t in self.train:
                require(not v.overlaps(t), f"validation range {v} overlaps training range {t}")
        model = self.config.model
        require(
            not model.use_extrapolation or (model.extra_channels == 1 and model.t_in >= 2),
            "model.use_extrapolation needs model.extra_channels = 1 and model.t_in >= 2",
        )
        config = self.config
        for where, seed in (("model.seed", model.seed), ("discriminator.seed", config.discriminator.seed)):
            require_seed(seed, where)
        require_seed(config.seed, "training.seed")
        steps = config.max_steps * (1 + (config.disc_steps if config.loss.adversarial_weight > 0 else 0))
        require(steps <= MAX_TRAIN_STEPS, f"training.max_steps (x 1 + disc_steps) must be <= 1e+07, got {steps}")
        require(config.data_config.max_tries <= 10**4, "samples.max_tries must be <= 10000")
        for where, values in (
            ("loss.nonlocal_scales", config.loss.nonlocal_scales),
            ("loss.laplacian_orders", config.loss.laplacian_orders),
            ("discriminator.downsample", (config.discriminator.downsample,)),
        ):
            require(max(values, default=0) <= crop, f"{where} must be <= the crop size {crop}, got {list(values)}")
        for r in (*self.train, *self.validation):
            rows, cols = SPECS[r.source].grid_shape
            require(crop <= min(rows, cols), f"training.crop_size {crop} is larger than the {r.source} grid")
        require_fits(
            self.estimated_bytes(),
            f"batch_size={config.batch_size} x crop {crop}^2 x {model.t_in} + "
            f"{model.t_out} frames x channels {list(model.hidden_channels)} with the data read"
            + ("" if twin is None else f" and {twin.n_arrays} twin arrays of {twin.frames} x {twin.grid}^2"),
        )

    def estimated_bytes(self) -> float:
        """Memory of the training (bytes, an estimate, float32): every frame read, and the twin's (`TwinData.pixels`:
        8x with ``augment``); the ConvLSTM's activations for the backward pass (batch x frames x crop^2 x 6
        channels a level, thrice; an ensemble network's members each count); validation samples; parameters x 4."""
        config, model = self.config, self.config.model
        frames = sum(float(r.n_frames) * math.prod(SPECS[r.source].grid_shape) for r in (*self.train, *self.validation))
        frames += 0.0 if self.twin is None else self.twin.pixels(validate=not self.validation)
        window, crop2 = float(model.t_in + model.t_out), float(config.data_config.crop_size) ** 2
        levels = sum(6.0 * h / 4.0**i for i, h in enumerate(model.hidden_channels))
        batch = config.batch_size * config.members * window * crop2 * (levels + 2.0)
        inputs = [model.in_channels + model.extra_channels, *model.hidden_channels]
        params = sum(
            4.0 * h * (c + h) * model.kernel_size**2 for c, h in zip(inputs, model.hidden_channels, strict=False)
        )
        channels = config.discriminator.channels
        params += 2.0 * 27.0 * sum(a * b for a, b in zip((1, *channels), channels, strict=False))  # discriminators
        samples = (config.val_batches + 1) * config.batch_size * window * crop2 * 2.0
        return 4.0 * (frames + 3.0 * batch + samples + 4.0 * params)


def _ranges(value: Any, where: str) -> tuple[TimeRange, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where} must be a non-empty list of {{source, start, end}}, got {value!r}")
    hooks = {np.datetime64: parse_time}
    return tuple(parse(TimeRange, item, f"{where}[{i}]", hooks=hooks) for i, item in enumerate(value))


def train_config_from_dict(data: Any) -> NowcastTrainSpec:
    """A validated `NowcastTrainSpec` from the YAML schema of this module (a plain mapping)."""
    data = mapping(data)
    check_keys(data, ("data", *_TRAIN_SECTIONS, "checkpoint_dir"))
    require_keys(data, ("data", "checkpoint_dir"))
    ranges = mapping(data["data"], "data")
    check_keys(ranges, ("root", "train", "validation", "twin"), "data")
    twin = parse_value(TwinData | None, ranges.get("twin"), "data.twin")
    require_keys(ranges, ("train", "validation") if twin is None else (), "data")
    require(
        "validation" in ranges or "train" not in ranges,
        "data.validation is required with data.train (only a twin-only training validates on a twin sequence)",
    )
    model = model_config(_section(data, "model"))
    training = mapping(_section(data, "training"), "training")
    check_training_keys(training, model)
    fixed = {
        "model": model,
        "loss": parse(NowcastLossConfig, _section(data, "loss"), "loss"),
        "discriminator": parse(DiscriminatorConfig, _section(data, "discriminator"), "discriminator"),
        "data": None,
        "checkpoint_dir": parse_value(Path, data["checkpoint_dir"], "checkpoint_dir"),
    }
    config = parse(NowcastTrainConfig, training, "training", fixed=fixed, tags=("init_from",))
    if data.get("samples") is not None:
        cut = {"t_in": model.t_in, "t_out": model.t_out, "crop_size": config.crop_size}
        samples = parse(NowcastDataConfig, data["samples"], "samples", fixed=cut)
        config = build(lambda **kw: dataclasses.replace(config, **kw), {"data": samples}, "samples")
    return build(
        NowcastTrainSpec,
        {
            **{k: _ranges(ranges[k], f"data.{k}") for k in ("train", "validation") if k in ranges},
            "config": config,
            "extrapolation": extrapolation_config(_section(data, "extrapolation")),
            "root": parse_value(Path | None, ranges.get("root"), "data.root"),
            "twin": twin,
            "init_from": parse_value(Path | None, training.get("init_from"), "training.init_from"),
        },
    )


def load_train_yaml(path: str | Path) -> NowcastTrainSpec:
    """A validated `NowcastTrainSpec` from a YAML file; every problem raises a one-line `ConfigError`."""
    return load_yaml_with(path, train_config_from_dict)


def with_train_overrides(
    spec: NowcastTrainSpec,
    *,
    device: str | None = None,
    max_steps: int | None = None,
    checkpoint_dir: str | Path | None = None,
) -> NowcastTrainSpec:
    """``spec`` with the device, step count or checkpoint folder replaced (validated again)."""
    changes: dict[str, Any] = {}
    if device is not None:
        changes["device"] = parse_value(get_type_hints(NowcastTrainConfig)["device"], device, "device")
    if max_steps is not None:
        changes["max_steps"] = max_steps
    if checkpoint_dir is not None:
        changes["checkpoint_dir"] = Path(checkpoint_dir)
    config = build(lambda **kw: dataclasses.replace(spec.config, **kw), changes)
    return dataclasses.replace(spec, config=config)


__all__ = [
    "DEFAULT_LEADS",
    "DEVICES",
    "MAX_LEADS",
    "MAX_TRAIN_STEPS",
    "METHODS",
    "MOTIONS",
    "TIMESTEP_MIN",
    "NowcastRunConfig",
    "NowcastTrainSpec",
    "TimeRange",
    "check_device",
    "extrapolation_config",
    "extrapolation_settings",
    "hhmm",
    "load_train_yaml",
    "parse_floats",
    "parse_time",
    "radar_root",
    "train_config_from_dict",
    "with_train_overrides",
]
