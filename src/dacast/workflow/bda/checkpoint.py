"""The BDA run's checkpoint: the state after the last checkpoint cycle, so ``--resume`` continues exactly.

``checkpoint.pt`` is written atomically (temporary file, then rename); `load_checkpoint`
refuses a checkpoint written with other settings.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from dacast.workflow.bda.config import BDAConfig, bda_config_to_dict
from dacast.workflow.bda.forecast import CycleState
from dacast.workflow.schema import ConfigError

CHECKPOINT = "checkpoint.pt"


def save_checkpoint(state: CycleState, config: BDAConfig, path: Path) -> None:
    """Write ``state`` atomically (temporary file, then rename)."""
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "config": bda_config_to_dict(config),
            "cycle": state.cycle,
            "truth": state.truth.cpu(),
            "ensemble": state.ensemble.cpu(),
            "free": state.free.cpu(),
            "records": state.records,
            "forecasts": state.forecasts,
            "fields": state.fields,
        },
        tmp,
    )
    os.replace(tmp, path)


def load_checkpoint(path: Path, config: BDAConfig) -> CycleState:
    """The state in ``path``; `ConfigError` when it belongs to other settings."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError) as err:
        raise ConfigError(f"cannot read checkpoint {path}: {err}") from None
    saved, now = dict(data["config"]), bda_config_to_dict(config)
    # The number of cycles may grow on resume; everything else must match.
    saved.pop("cycles", None)
    now.pop("cycles", None)
    if saved != now:
        diff = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
        raise ConfigError(f"checkpoint {path} was written with other settings (differ: {', '.join(diff)})")
    return CycleState(
        cycle=int(data["cycle"]),
        truth=data["truth"],
        ensemble=data["ensemble"],
        free=data["free"],
        records=list(data["records"]),
        forecasts=list(data["forecasts"]),
        fields=list(data["fields"]),
    )


__all__ = ["CHECKPOINT", "load_checkpoint", "save_checkpoint"]
