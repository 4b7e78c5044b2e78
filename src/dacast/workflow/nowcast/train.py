"""Training a ConvLSTM nowcaster on radar events: `train_from_spec` runs a `NowcastTrainSpec`.

The spec and its YAML schema are in `dacast.workflow.nowcast.config`. Every
range is loaded with `dacast.io.load_sequence` onto a regular 5-min axis;
missing frames stay NaN, which `dacast.ml.RainCropDataset` turns into masks.
Training resumes from ``checkpoint_dir/last.pt``; the extrapolation settings
are kept beside it in ``nowcast_workflow.json`` so that ``dacast nowcast run
--method convlstm`` feeds the model the same input (`read_training_sidecar`).
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
from dacast.nowcast import ExtrapolationConfig, extrapolation_nowcast
from dacast.workflow import files
from dacast.workflow.nowcast.config import (
    NowcastTrainSpec,
    TimeRange,
    extrapolation_config,
    extrapolation_settings,
    radar_root,
)
from dacast.workflow.schema import ConfigError

SIDECAR = "nowcast_workflow.json"


@dataclass(frozen=True, kw_only=True)
class TrainRun:
    """What `train_from_spec` returns: the `TrainResult`, the step it resumed from and the data read."""

    result: TrainResult
    resumed_from: int
    data_summary: tuple[str, ...]
    sidecar: Path


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


def _write_sidecar(spec: NowcastTrainSpec, ckdir: Path, root: Path, resumed_from: int) -> Path:
    """Record the extrapolation settings (and the data) beside the checkpoints; refuse to mix settings."""
    settings = extrapolation_settings(spec.extrapolation) if spec.config.model.use_extrapolation else None
    sidecar = ckdir / SIDECAR
    if resumed_from and sidecar.is_file():
        before = json.loads(sidecar.read_text(encoding="utf-8")).get("extrapolation")
        if before != settings:
            raise ConfigError(f"{ckdir} was trained with other extrapolation settings; use another checkpoint_dir")
    record = {
        "extrapolation": settings,
        "train": [str(r) for r in spec.train],
        "validation": [str(r) for r in spec.validation],
        "root": str(root),
    }
    sidecar.write_text(json.dumps(record, indent=2))
    return sidecar


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
            folder holding another model or other extrapolation settings.
        RadarReadError: a range without any readable frame.
    """
    config = spec.config
    if config.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' asked for, but CUDA is not available")
    root = radar_root(spec.root)
    train, val, summary = _load_ranges(spec, root, log)
    ckdir = Path(config.checkpoint_dir)  # type: ignore[arg-type]
    # A folder this call creates is removed again when training fails before its first checkpoint;
    # an existing one keeps its checkpoints and is marked INCOMPLETE until training finishes.
    with files.run_folder(ckdir, keep=("last.pt", "best.pt")):
        resumed_from = 0
        if (ckdir / "last.pt").is_file():
            resumed_from = _saved_step(ckdir / "last.pt")
        sidecar = _write_sidecar(spec, ckdir, root, resumed_from)
        if resumed_from and log is not None:
            log(f"resuming from step {resumed_from} ({ckdir / 'last.pt'})")
        fn = partial(_extrapolate, config=spec.extrapolation) if config.model.use_extrapolation else None
        try:
            result = train_nowcast(config, train, val, extrapolation_fn=fn, progress=progress, resume=True)
        except ValueError as err:
            raise ConfigError(" ".join(str(err).split())) from None
    return TrainRun(result=result, resumed_from=resumed_from, data_summary=summary, sidecar=sidecar)


__all__ = [
    "SIDECAR",
    "TrainRun",
    "extrapolation_config",
    "load_range",
    "read_training_sidecar",
    "train_from_spec",
]
