"""``dacast surrogate run bda-surrogate-*``: the learned regional model inside the 30-second LETKF.

Called by `dacast.cli.surrogate` for the gridded presets and for YAML files with a ``bda`` section
(or a ``preset:`` among the gridded ones); bad input is one red ``error:`` line and exit 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dacast.cli.console import fail, print_finished, run_or_check
from dacast.cli.console import out as stdout
from dacast.ml.grid_surrogate import SurrogateMismatch
from dacast.workflow.bda_surrogate.config import (
    bda_surrogate_config_to_dict,
    load_bda_surrogate_target,
)
from dacast.workflow.bda_surrogate.run import run_bda_surrogate
from dacast.workflow.runtime import say
from dacast.workflow.schema import ConfigError


def run_gridded(
    target: str,
    *,
    iterations: int | None,
    device: str | None,
    out: Path | None,
    resume: bool,
    check: bool,
    progress: bool,
    plots: bool,
) -> None:
    """Load, check and run a gridded experiment; print its targets."""
    try:
        config = load_bda_surrogate_target(target, device=device, iterations=iterations)
    except ConfigError as err:
        raise fail(str(err)) from None
    result = run_or_check(
        out,
        config.name,
        check,
        lambda: bda_surrogate_config_to_dict(config),
        lambda out_dir: run_bda_surrogate(config, out_dir, resume=resume, progress=progress, plots=plots, say=say),
        refused=(SurrogateMismatch,),
    )
    if result is None:
        return
    _report(result.summary, result.paths.get("summary"))


def _report(s: dict[str, Any], summary_path: Path | None) -> None:
    head = f"[bold]{s['name']}[/]: {s['grid'][0]}x{s['grid'][1]}, {s['members']} members, {s['cycles']} cycles"
    stdout.print(f"{head}; imperfect physics: {s['imperfect_physics']}", highlight=False)
    for name, e in s["experiments"].items():
        rm = e.get("rmse_analysis") or {}
        state = f"diverged at cycle {e['diverged_cycle']}" if e.get("diverged") else "ok"
        text = ", ".join(f"{k} {float('nan') if v is None else v:.3g}" for k, v in rm.items())
        stdout.print(f"  {name:<9} analysis RMSE {text} ({state})", highlight=False)
    for key, value in s["targets"].items():
        met = value.get("met") if isinstance(value, dict) else value
        number = value.get("ratio", value.get("surrogate_over_physics")) if isinstance(value, dict) else None
        detail = f" ({number:.3g})" if number is not None else ""
        stdout.print(f"  {key}: {'met' if met else 'not met'}{detail}", highlight=False)
    print_finished(s["wall_time_s"], summary_path)


__all__ = ["run_gridded"]
