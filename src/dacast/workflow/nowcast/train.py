"""Training a ConvLSTM nowcaster on radar events described in YAML.

YAML schema (keys in ``[brackets]`` are optional; the keys of ``model``, ``loss``,
``discriminator``, ``samples`` and ``training`` are the fields of
`dacast.ml.ConvLSTMConfig`, `NowcastLossConfig`, `DiscriminatorConfig`,
`NowcastDataConfig` and `NowcastTrainConfig`, with their defaults)::

    data:
      [root]: null                 # radar root; null: dacast.io.default_radar_root()
      train:                       # time ranges read for training (inclusive, UTC)
        - {source: mch, start: "2015-05-15T15:45", end: "2015-05-15T17:20"}
      validation:                  # held-back ranges; must not overlap a training range
        - {source: knmi, start: "2010-08-26T02:30", end: "2010-08-26T03:45"}
    [extrapolation]:               # input of the "obs + nowcasting" model (model.use_extrapolation)
      [motion]: trec               # trec | farneback | dis
      [motion_options]: {}         # fields of TRECConfig / OpticalFlowConfig (not 'method')
      [n_frames]: 3                # and the other fields of dacast.nowcast.ExtrapolationConfig
    [model]: {t_in: 4, t_out: 12, hidden_channels: [16, 32, 64], use_extrapolation: true}
    [loss]: {huber_weight: 1.0, nonlocal_weight: 0.1, adversarial_weight: 0.02}
    [discriminator]: {channels: [16, 32, 64], n_frames: 4}
    [samples]: {min_valid_fraction: 0.9, min_rain_fraction: 0.05, samples_per_epoch: 1000}
    [training]: {batch_size: 8, max_steps: 300, crop_size: 128, lr: 1.0e-3, device: auto, val_every: 50}
    checkpoint_dir: runs/nowcast-convlstm   # relative paths are taken from the current folder

Every range is loaded with `dacast.io.load_sequence` onto a regular 5-min axis;
missing frames stay NaN, which `dacast.ml.RainCropDataset` turns into masks.
Training resumes from ``checkpoint_dir/last.pt``; the extrapolation settings
are kept beside it in ``nowcast_workflow.json`` so that ``dacast nowcast run
--method convlstm`` feeds the model the same input.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, Literal, Union

import numpy as np
import torch
import xarray as xr
from torch import Tensor

from dacast.io import SOURCES, default_radar_root, load_sequence
from dacast.ml import (
    ConvLSTMConfig,
    DiscriminatorConfig,
    NowcastDataConfig,
    NowcastLossConfig,
    NowcastTrainConfig,
    TrainResult,
    train_nowcast,
)
from dacast.nowcast import ExtrapolationConfig, OpticalFlowConfig, TRECConfig, extrapolation_nowcast
from dacast.workflow.twin.config import ConfigError
from dacast.workflow.twin.loader import _build, _check_keys, _mapping, load_yaml_with

MOTIONS: tuple[str, ...] = ("trec", "farneback", "dis")
SIDECAR = "nowcast_workflow.json"
TIMESTEP_MIN = 5
_TOP_KEYS = ("data", "extrapolation", "model", "loss", "discriminator", "samples", "training", "checkpoint_dir")
_SET_ELSEWHERE = {
    "samples": ("t_in", "t_out", "crop_size"),
    "training": ("model", "loss", "discriminator", "data", "checkpoint_dir"),
}


# ----------------------------------------------------------------------------- generic field parsing


def _value(tp: Any, value: Any, where: str) -> Any:
    """``value`` checked against the type hint ``tp`` (int, float, bool, str, Path, Literal, tuple, X | None)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        rest = [a for a in args if a is not type(None)]
        return _value(rest[0], value, where)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where} must be one of {', '.join(map(str, args))}; got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_value(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{where} must have {len(args)} entries, got {value!r}")
        return tuple(_value(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if tp is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{where} must be an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if tp in (str, Path) and not isinstance(value, str):
        raise ConfigError(f"{where} must be a string, got {value!r}")
    return Path(value) if tp is Path else value


def _fields(cls: type, data: Any, where: str, *, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """Keyword arguments of dataclass ``cls`` from a YAML mapping (unknown keys and bad types: `ConfigError`)."""
    data = _mapping({} if data is None else data, where)
    hints = typing.get_type_hints(cls)
    allowed = tuple(f.name for f in dataclasses.fields(cls) if f.name not in skip)
    _check_keys(data, allowed, where)
    return {key: _value(hints[key], value, f"{where}.{key}") for key, value in data.items()}


# ----------------------------------------------------------------------------- extrapolation input


def extrapolation_config(settings: Mapping[str, Any], where: str = "extrapolation") -> ExtrapolationConfig:
    """`ExtrapolationConfig` from ``{motion, motion_options, n_frames, ...}`` (see the module docstring)."""
    settings = dict(_mapping(settings, where))
    motion = settings.pop("motion", "trec")
    if motion not in MOTIONS:
        raise ConfigError(f"unknown motion method {motion!r} in {where}; choose one of: {', '.join(MOTIONS)}")
    options = settings.pop("motion_options", None)
    if motion == "trec":
        motion_cfg = _build(TRECConfig, _fields(TRECConfig, options, f"{where}.motion_options"), where)
    else:
        opts = _fields(OpticalFlowConfig, options, f"{where}.motion_options", skip=("method",))
        motion_cfg = _build(OpticalFlowConfig, {**opts, "method": motion}, where)
    kwargs = _fields(ExtrapolationConfig, settings, where, skip=("motion",))
    return _build(ExtrapolationConfig, {**kwargs, "motion": motion_cfg}, where)


def extrapolation_settings(config: ExtrapolationConfig) -> dict[str, Any]:
    """The inverse of `extrapolation_config`: a JSON/YAML-ready dict."""
    d = dataclasses.asdict(config)
    options = d.pop("motion")
    motion = "trec" if isinstance(config.motion, TRECConfig) else options.pop("method")
    return {"motion": motion, "motion_options": options, **d}


def _extrapolate(frames: Tensor, n_leads: int, *, config: ExtrapolationConfig) -> Tensor:
    return extrapolation_nowcast(frames, n_leads, config)


def read_training_sidecar(checkpoint: str | Path) -> dict[str, Any]:
    """The extrapolation settings saved beside a checkpoint (``{}`` when there are none)."""
    path = Path(checkpoint)
    folder = path if path.is_dir() else path.parent
    file = folder / SIDECAR
    if not file.is_file():
        return {}
    try:
        return dict(json.loads(file.read_text(encoding="utf-8")).get("extrapolation") or {})
    except (OSError, ValueError, AttributeError) as err:
        raise ConfigError(f"cannot read {file}: {err}") from None


# ----------------------------------------------------------------------------- the spec


@dataclass(frozen=True, kw_only=True)
class TimeRange:
    """Frames of one source from ``start`` to ``end`` inclusive, every 5 min (UTC)."""

    source: str
    start: np.datetime64
    end: np.datetime64

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ConfigError(f"unknown radar source {self.source!r}; choose one of: {', '.join(SOURCES)}")
        if self.end < self.start:
            raise ConfigError(f"range {self}: end is before start")

    @property
    def n_frames(self) -> int:
        return int((self.end - self.start) // np.timedelta64(TIMESTEP_MIN, "m")) + 1

    def overlaps(self, other: TimeRange) -> bool:
        return self.source == other.source and self.start <= other.end and other.start <= self.end

    def __str__(self) -> str:
        return f"{self.source} {str(self.start)[:16]}..{str(self.end)[:16]}"


@dataclass(frozen=True, kw_only=True)
class NowcastTrainSpec:
    """Everything `train_from_spec` needs.

    Attributes:
        train: training time ranges.
        validation: held-back validation ranges (no overlap with ``train``).
        config: the `NowcastTrainConfig` (its ``checkpoint_dir`` is where checkpoints go).
        extrapolation: extrapolation settings of the model's extra input (used when
            ``config.model.use_extrapolation``).
        root: radar root (None: `dacast.io.default_radar_root`).
    """

    train: tuple[TimeRange, ...]
    validation: tuple[TimeRange, ...]
    config: NowcastTrainConfig
    extrapolation: ExtrapolationConfig = dataclasses.field(default_factory=ExtrapolationConfig)
    root: Path | None = None

    def __post_init__(self) -> None:
        if not self.train or not self.validation:
            raise ConfigError("data needs at least one train and one validation range")
        if self.config.checkpoint_dir is None:
            raise ConfigError("checkpoint_dir is required")
        window = self.config.data_config.window
        for kind, ranges in (("train", self.train), ("validation", self.validation)):
            for r in ranges:
                if r.n_frames < window:
                    raise ConfigError(
                        f"data.{kind} range {r} has {r.n_frames} frames; one sample needs t_in + t_out = {window}"
                    )
        for v in self.validation:
            for t in self.train:
                if v.overlaps(t):
                    raise ConfigError(f"validation range {v} overlaps training range {t}")
        model = self.config.model
        if model.use_extrapolation and (model.extra_channels != 1 or model.t_in < 2):
            raise ConfigError("model.use_extrapolation needs model.extra_channels = 1 and model.t_in >= 2")


def _time(value: Any, where: str) -> np.datetime64:
    if isinstance(value, datetime):
        value = value.isoformat()
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be an ISO time such as '2015-05-15T16:30', got {value!r}")
    try:
        t = np.datetime64(datetime.fromisoformat(value).replace(tzinfo=None), "ns")
    except ValueError:
        raise ConfigError(f"{where} must be an ISO time such as '2015-05-15T16:30', got {value!r}") from None
    if int((t - t.astype("datetime64[D]")) / np.timedelta64(1, "m")) % TIMESTEP_MIN:
        raise ConfigError(f"{where} {value} is not on the {TIMESTEP_MIN}-min grid of the radar")
    return t


def _ranges(value: Any, where: str) -> tuple[TimeRange, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where} must be a non-empty list of {{source, start, end}}, got {value!r}")
    out = []
    for i, item in enumerate(value):
        w = f"{where}[{i}]"
        item = _mapping(item, w)
        _check_keys(item, ("source", "start", "end"), w)
        missing = [k for k in ("source", "start", "end") if k not in item]
        if missing:
            raise ConfigError(f"{w} is missing the required key {missing[0]!r}")
        source = _value(str, item["source"], f"{w}.source")
        out.append(
            TimeRange(source=source, start=_time(item["start"], f"{w}.start"), end=_time(item["end"], f"{w}.end"))
        )
    return tuple(out)


def train_config_from_dict(data: Any) -> NowcastTrainSpec:
    """A validated `NowcastTrainSpec` from the YAML schema of this module (a plain mapping)."""
    data = _mapping(data, "the configuration")
    _check_keys(data, _TOP_KEYS, "the configuration")
    for key in ("data", "checkpoint_dir"):
        if key not in data:
            raise ConfigError(f"the configuration is missing the required key {key!r}")
    d = _mapping(data["data"], "data")
    _check_keys(d, ("root", "train", "validation"), "data")
    for key in ("train", "validation"):
        if key not in d:
            raise ConfigError(f"data is missing the required key {key!r}")
    root = _value(Path | None, d.get("root"), "data.root")
    model = _build(ConvLSTMConfig, _fields(ConvLSTMConfig, data.get("model"), "model"), "model")
    loss = _build(NowcastLossConfig, _fields(NowcastLossConfig, data.get("loss"), "loss"), "loss")
    disc_kw = _fields(DiscriminatorConfig, data.get("discriminator"), "discriminator")
    disc = _build(DiscriminatorConfig, disc_kw, "discriminator")
    training = _fields(NowcastTrainConfig, data.get("training"), "training", skip=_SET_ELSEWHERE["training"])
    samples = None
    if data.get("samples") is not None:
        s_kw = _fields(NowcastDataConfig, data["samples"], "samples", skip=_SET_ELSEWHERE["samples"])
        crop = training.get("crop_size", 128)
        samples = _build(
            NowcastDataConfig, {**s_kw, "t_in": model.t_in, "t_out": model.t_out, "crop_size": crop}, "samples"
        )
    checkpoint_dir = _value(Path, data["checkpoint_dir"], "checkpoint_dir")
    config = _build(
        NowcastTrainConfig,
        {**training, "model": model, "loss": loss, "discriminator": disc, "data": samples,
         "checkpoint_dir": checkpoint_dir},
        "training",
    )  # fmt: skip
    return NowcastTrainSpec(
        train=_ranges(d["train"], "data.train"),
        validation=_ranges(d["validation"], "data.validation"),
        config=config,
        extrapolation=extrapolation_config(data.get("extrapolation") or {}),
        root=root,
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
        changes["device"] = _value(typing.get_type_hints(NowcastTrainConfig)["device"], device, "device")
    if max_steps is not None:
        changes["max_steps"] = max_steps
    if checkpoint_dir is not None:
        changes["checkpoint_dir"] = Path(checkpoint_dir)
    config = _build(lambda **kw: dataclasses.replace(spec.config, **kw), changes, "override")
    return dataclasses.replace(spec, config=config)


# ----------------------------------------------------------------------------- training


@dataclass(frozen=True, kw_only=True)
class TrainRun:
    """What `train_from_spec` returns: the `TrainResult`, the step it resumed from and the data read."""

    result: TrainResult
    resumed_from: int
    data_summary: tuple[str, ...]
    sidecar: Path


def load_range(r: TimeRange, root: Path) -> tuple[xr.DataArray, str]:
    """The frames of ``r`` on a regular 5-min axis ``(time, y, x)`` [mm/h] (NaN for gaps), and a summary line."""
    da, report = load_sequence(r.source, r.start, r.end, root=root)
    da = da.drop_vars("filename").reindex(time=np.array(report.expected, dtype="datetime64[ns]"))
    return da, report.summary()


def train_from_spec(
    spec: NowcastTrainSpec, *, progress: bool = True, log: Callable[[str], None] | None = None
) -> TrainRun:
    """Load the ranges, then train (or continue training) the nowcaster of ``spec``.

    Args:
        spec: what to train on, and how.
        progress: show a Rich progress bar.
        log: called with one line per range loaded and, when resuming, the step resumed from.

    Raises:
        ConfigError: CUDA asked for but absent, crops larger than a grid, a checkpoint
            folder holding another model or other extrapolation settings.
        RadarReadError: a range without any readable frame.
    """
    config = spec.config
    if config.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' asked for, but CUDA is not available")
    if spec.root is None:
        try:
            root = default_radar_root()
        except FileNotFoundError as err:
            raise ConfigError(str(err)) from None
    else:
        if not spec.root.is_dir():
            raise ConfigError(f"radar root {spec.root} is not an existing folder")
        root = spec.root
    train, val, summary = [], [], []
    for ranges, arrays in ((spec.train, train), (spec.validation, val)):
        for r in ranges:
            da, line = load_range(r, root)
            crop = config.data_config.crop_size
            if min(da.sizes["y"], da.sizes["x"]) < crop:
                raise ConfigError(f"crop_size {crop} is larger than the {r.source} grid {da.shape[1:]}")
            arrays.append(da)
            summary.append(line)
            if log is not None:
                log(f"data: {line}")

    ckdir = Path(config.checkpoint_dir)  # type: ignore[arg-type]
    ckdir.mkdir(parents=True, exist_ok=True)
    resumed_from = 0
    if (ckdir / "last.pt").is_file():
        resumed_from = int(torch.load(ckdir / "last.pt", map_location="cpu", weights_only=True)["step"])
    use_ext = config.model.use_extrapolation
    settings = extrapolation_settings(spec.extrapolation) if use_ext else None
    sidecar = ckdir / SIDECAR
    if resumed_from and sidecar.is_file():
        before = json.loads(sidecar.read_text(encoding="utf-8")).get("extrapolation")
        if before != settings:
            raise ConfigError(f"{ckdir} was trained with other extrapolation settings; use another checkpoint_dir")
    sidecar.write_text(
        json.dumps(
            {
                "extrapolation": settings,
                "train": [str(r) for r in spec.train],
                "validation": [str(r) for r in spec.validation],
                "root": str(root),
            },
            indent=2,
        )
    )
    if resumed_from and log is not None:
        log(f"resuming from step {resumed_from} ({ckdir / 'last.pt'})")
    fn = partial(_extrapolate, config=spec.extrapolation) if use_ext else None
    try:
        result = train_nowcast(config, train, val, extrapolation_fn=fn, progress=progress, resume=True)
    except ValueError as err:
        raise ConfigError(" ".join(str(err).split())) from None
    return TrainRun(result=result, resumed_from=resumed_from, data_summary=tuple(summary), sidecar=sidecar)


__all__ = [
    "MOTIONS",
    "NowcastTrainSpec",
    "TimeRange",
    "TrainRun",
    "extrapolation_config",
    "extrapolation_settings",
    "load_range",
    "load_train_yaml",
    "read_training_sidecar",
    "train_config_from_dict",
    "train_from_spec",
    "with_train_overrides",
]
