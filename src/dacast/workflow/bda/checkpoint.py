"""The BDA run's checkpoint: the state after the last checkpoint cycle, so ``--resume`` continues exactly.

``checkpoint.pt`` is written atomically (temporary file, fsync, rename) and read with
``weights_only=True`` (tensors and plain data: nothing in the file can run); `load_checkpoint`
refuses a file that is not one, one written with other settings, or one whose shapes do not fit.
"""

from __future__ import annotations

from pathlib import Path

import torch

from dacast.workflow import files
from dacast.workflow.bda.config import BDAConfig, bda_config_to_dict
from dacast.workflow.bda.forecast import CycleState
from dacast.workflow.schema import ConfigError

CHECKPOINT = "checkpoint.pt"
#: The checkpoint of a run whose ensemble is tiled on Dask workers (`dacast.workflow.bda.tiled_run`).
TILED_CHECKPOINT = "checkpoint-tiled.pt"
#: Written into every checkpoint, so that another program's file is refused by name.
FORMAT = "dacast.bda.checkpoint/1"


def save_checkpoint(state: CycleState, config: BDAConfig, path: Path) -> None:
    """Write ``state`` atomically (temporary file, fsync, rename): tensors and plain data only."""
    files.save_checkpoint(
        {
            "format": FORMAT,
            "config": bda_config_to_dict(config),
            "cycle": state.cycle,
            "truth": state.truth.cpu(),
            "ensemble": state.ensemble.cpu(),
            "free": state.free.cpu(),
            "records": state.records,
            "forecasts": state.forecasts,
            "fields": state.fields,
        },
        path,
    )


def load_checkpoint(path: Path, config: BDAConfig) -> CycleState:
    """The state in ``path``, checked against ``config``.

    Raises:
        ConfigError: unreadable, not a BDA checkpoint (or one holding code: it is never run), written
            with other settings, or inconsistent (shapes, cycle count); one line naming the file.
    """
    data = files.load_checkpoint(path)
    if data.get("format") != FORMAT:
        raise ConfigError(f"cannot resume from {path}: not a checkpoint of dacast bda run")
    require_same_settings(data, config, path)
    state = CycleState(
        cycle=int(data["cycle"]),
        truth=data["truth"],
        ensemble=data["ensemble"],
        free=data["free"],
        records=list(data["records"]),
        forecasts=list(data["forecasts"]),
        fields=list(data["fields"]),
    )
    _check(state, config, path)
    return state


def require_same_settings(data: dict, config: BDAConfig, path: Path) -> None:
    """`ConfigError` naming the keys when a checkpoint's settings (``data["config"]``) differ from ``config``.

    The number of cycles may grow on resume; everything else must match.
    """
    saved, now = dict(data["config"]), bda_config_to_dict(config)
    saved.pop("cycles", None)
    now.pop("cycles", None)
    if saved != now:
        diff = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
        raise ConfigError(f"checkpoint {path} was written with other settings (differ: {', '.join(diff)})")


def _check(state: CycleState, config: BDAConfig, path: Path) -> None:
    """Shapes and counts of a loaded state against ``config``; `ConfigError` naming what does not fit."""
    grid = (4, config.grid, config.grid)
    expected = {
        "truth": (1, *grid),
        "ensemble": (config.members, *grid),
        "free": (config.n_free_members, *grid),
    }
    for name, shape in expected.items():
        tensor = getattr(state, name)
        if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != shape:
            got = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            raise ConfigError(f"checkpoint {path} is inconsistent: {name} has shape {got}, expected {shape}")
    if not 0 <= state.cycle <= config.cycles:
        raise ConfigError(
            f"checkpoint {path} is after cycle {state.cycle}, beyond the {config.cycles} cycles asked for"
        )
    if len(state.records) != state.cycle or len(state.fields) != state.cycle:
        raise ConfigError(f"checkpoint {path} is inconsistent: {len(state.records)} records for {state.cycle} cycles")


__all__ = ["CHECKPOINT", "FORMAT", "TILED_CHECKPOINT", "load_checkpoint", "require_same_settings", "save_checkpoint"]
