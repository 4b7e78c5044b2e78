"""Training a ConvLSTM nowcaster on radar events and twin rain: `train_from_spec` runs a `NowcastTrainSpec`.

The spec and its YAML schema are in `dacast.workflow.nowcast.config`. Every
range is loaded with `dacast.io.load_sequence` onto a regular 5-min axis;
missing frames stay NaN, which `dacast.ml.RainCropDataset` turns into masks.
Twin rain (``data.twin``) is generated before training and trained on with the
radar ranges; samples are drawn uniformly over the windows of all arrays, so
each kind's share of the batches is its share of the windows.
Training resumes from ``checkpoint_dir/last.pt``; a new run with ``init_from``
starts from a checkpoint's generator weights (`dacast.workflow.nowcast.pretrain`),
and once it has written its own ``last.pt`` it resumes from that like any run.
The extrapolation settings are kept beside the checkpoints in
``nowcast_workflow.json`` so that ``dacast nowcast run --method convlstm`` feeds
the model the same input (`read_training_sidecar`); the file also records the
data (radar ranges, twin settings and seeds) and the checkpoint ``init_from`` read.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import Tensor

from dacast.io import load_sequence
from dacast.ml import TrainResult, train_nowcast
from dacast.ml.nowcast_train_config import model_kind
from dacast.nowcast import ExtrapolationConfig, extrapolation_nowcast
from dacast.workflow import files
from dacast.workflow.nowcast.config import (
    NowcastTrainSpec,
    TimeRange,
    extrapolation_config,
    extrapolation_settings,
    radar_root,
)
from dacast.workflow.nowcast.pretrain import InitState, load_init_state, twin_arrays
from dacast.workflow.schema import ConfigError, require

SIDECAR = "nowcast_workflow.json"


@dataclass(frozen=True, kw_only=True)
class TrainRun:
    """What `train_from_spec` returns: the `TrainResult`, the step it resumed from, the data read, the
    sidecar file and the checkpoint whose generator weights the run started from (``init_from``)."""

    result: TrainResult
    resumed_from: int
    data_summary: tuple[str, ...]
    sidecar: Path
    initialised_from: Path | None = None


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


def load_range(r: TimeRange, root: Path) -> tuple[xr.DataArray, str]:
    """The frames of ``r`` on a regular 5-min axis ``(time, y, x)`` [mm/h] (NaN for gaps), and a summary line."""
    da, report = load_sequence(r.source, r.start, r.end, root=root)
    da = da.drop_vars("filename").reindex(time=np.array(report.expected, dtype="datetime64[ns]"))
    return da, report.summary()


def _load_ranges(
    spec: NowcastTrainSpec, root: Path, log: Callable[[str], None] | None
) -> tuple[list[xr.DataArray], list[xr.DataArray], tuple[str, ...]]:
    """The training and validation frames, and one summary line per range."""
    crop = spec.config.data_config.crop_size
    train, val, summary = [], [], []
    for ranges, arrays in ((spec.train, train), (spec.validation, val)):
        for r in ranges:
            da, line = load_range(r, root)
            if min(da.sizes["y"], da.sizes["x"]) < crop:
                raise ConfigError(f"crop_size {crop} is larger than the {r.source} grid {da.shape[1:]}")
            arrays.append(da)
            summary.append(line)
            if log is not None:
                log(f"data: {line}")
    return train, val, tuple(summary)


def _settings(spec: NowcastTrainSpec) -> dict[str, Any] | None:
    """The extrapolation settings of ``spec`` as JSON gives them back (None: the model reads no extrapolation)."""
    if not spec.config.model.use_extrapolation:
        return None
    return json.loads(json.dumps(extrapolation_settings(spec.extrapolation)))


def _write_sidecar(
    spec: NowcastTrainSpec, ckdir: Path, root: Path | None, resumed_from: int, init: InitState | None
) -> Path:
    """Record the extrapolation settings, the data and ``init_from`` beside the checkpoints; refuse to mix
    settings. A resumed run keeps the ``init_from`` its first part recorded."""
    settings = _settings(spec)
    sidecar = ckdir / SIDECAR
    before = json.loads(sidecar.read_text(encoding="utf-8")) if resumed_from and sidecar.is_file() else {}
    if before and before.get("extrapolation") != settings:
        raise ConfigError(f"{ckdir} was trained with other extrapolation settings; use another checkpoint_dir")
    record = {
        "extrapolation": settings,
        "model_kind": model_kind(spec.config.model),
        "train": [str(r) for r in spec.train],
        "validation": [str(r) for r in spec.validation],
        "root": None if root is None else str(root),
        "twin": None if spec.twin is None else spec.twin.record(validate=not spec.validation),
        "init_from": init.record() if init is not None else before.get("init_from"),
    }
    sidecar.write_text(json.dumps(record, indent=2))
    return sidecar


def _init_state(spec: NowcastTrainSpec, ckdir: Path) -> InitState | None:
    """The generator weights of ``spec.init_from`` for a new run in ``ckdir`` (None without ``init_from``, or
    when ``ckdir`` holds a ``last.pt``: that run resumes from its own weights)."""
    if spec.init_from is None or (ckdir / "last.pt").is_file():
        return None
    init = load_init_state(spec.init_from, spec.config.model)
    sidecar = init.path.parent / SIDECAR
    if sidecar.is_file():
        try:
            theirs = json.loads(sidecar.read_text(encoding="utf-8")).get("extrapolation")
        except (OSError, ValueError, AttributeError) as err:
            raise ConfigError(f"training.init_from: cannot read {sidecar}: {err}") from None
        require(
            theirs == _settings(spec),
            f"training.init_from: {init.path} was trained with other extrapolation settings (see {sidecar})",
        )
    return init


def _load_data(
    spec: NowcastTrainSpec, log: Callable[[str], None] | None
) -> tuple[list[Any], list[Any], tuple[str, ...], Path | None]:
    """The training and validation arrays (radar ranges, then twin rain), summary lines and the radar root."""
    root = radar_root(spec.root) if spec.train or spec.validation else None
    train, val, summary = _load_ranges(spec, root, log) if root is not None else ([], [], ())
    if spec.twin is not None:
        twin_train, twin_val, line = twin_arrays(spec.twin, validate=not spec.validation, log=log)
        train, val, summary = [*train, *twin_train], [*val, *twin_val], (*summary, line)
        if log is not None:
            log(f"data: {line}")
    schedule = spec.config.schedule
    last_stage = None if schedule is None else schedule.total_steps - schedule.steps_per_stage[-1]
    if log is not None and last_stage is not None and spec.config.max_steps <= last_stage:
        log(f"note: max_steps {spec.config.max_steps} ends before the last (full-resolution) stage of the schedule")
    return train, val, summary, root


def _extrapolate(frames: Tensor, n_leads: int, *, config: ExtrapolationConfig) -> Tensor:
    return extrapolation_nowcast(frames, n_leads, config)


def _saved_step(path: Path) -> int:
    """The training step a checkpoint was written at; `ConfigError` for a file that is not a training checkpoint."""
    step = files.load_checkpoint(path).get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ConfigError(f"cannot resume from {path}: not a checkpoint of dacast nowcast train (no training step)")
    return step


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
            folder holding another model or other extrapolation settings, an ``init_from``
            that does not fit.
        RadarReadError: a range without any readable frame.
    """
    config = spec.config
    if config.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' asked for, but CUDA is not available")
    ckdir = Path(config.checkpoint_dir)  # type: ignore[arg-type]
    init = _init_state(spec, ckdir)
    train, val, summary, root = _load_data(spec, log)
    # A folder this call creates is removed again when training fails before its first checkpoint;
    # an existing one keeps its checkpoints and is marked INCOMPLETE until training finishes.
    with files.run_folder(ckdir, keep=("last.pt", "best.pt")):
        resumed_from = 0
        if init is not None and log is not None:
            log(f"initialised the generator from {init.path} (step {init.step})")
        elif (ckdir / "last.pt").is_file():
            resumed_from = _saved_step(ckdir / "last.pt")
        sidecar = _write_sidecar(spec, ckdir, root, resumed_from, init)
        if resumed_from and log is not None:
            log(f"resuming from step {resumed_from} ({ckdir / 'last.pt'})")
        fn = partial(_extrapolate, config=spec.extrapolation) if config.model.use_extrapolation else None
        weights = None if init is None else init.model
        try:
            result = train_nowcast(
                config, train, val, extrapolation_fn=fn, progress=progress, resume=True, initial_weights=weights
            )
        except ValueError as err:
            raise ConfigError(" ".join(str(err).split())) from None
    return TrainRun(
        result=result,
        resumed_from=resumed_from,
        data_summary=summary,
        sidecar=sidecar,
        initialised_from=None if init is None else init.path,
    )


__all__ = [
    "SIDECAR",
    "TrainRun",
    "extrapolation_config",
    "load_range",
    "read_training_sidecar",
    "train_from_spec",
]
