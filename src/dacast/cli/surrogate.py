"""``dacast surrogate run``: the surrogate <-> DA cycle of Goodliff & Miyoshi from the command line.

Bad input (unknown preset, missing or malformed YAML, invalid values, a run too
large for this machine, an existing run without ``--resume``, an output folder
that cannot be created) prints one red ``error:`` line and exits 2; Ctrl-C prints
one line (``--resume`` continues) and exits 130. ``--check`` validates the
configuration and prints it as YAML.
"""

from __future__ import annotations

from typing import Annotated

import typer

from dacast.cli.bda_surrogate import run_gridded
from dacast.cli.console import (
    CheckFlag,
    OneLineErrors,
    OutOption,
    PlotsFlag,
    ProgressFlag,
    ResumeFlag,
    fail,
    print_finished,
    run_or_check,
)
from dacast.cli.console import out as stdout
from dacast.workflow.bda_surrogate.config import BDA_SURROGATE_PRESETS, is_bda_surrogate_target
from dacast.workflow.schema import ConfigError, is_yaml_path
from dacast.workflow.surrogate.config import SURROGATE_PRESETS, load_surrogate_target, surrogate_config_to_dict
from dacast.workflow.surrogate.output import summarise_surrogate
from dacast.workflow.surrogate.run import run_surrogate

app = typer.Typer(
    name="surrogate",
    help="Train data-driven surrogates from DA analyses and assimilate with them, iteratively.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=OneLineErrors,
)


@app.command("run")
def run(
    target: Annotated[
        str, typer.Argument(help=f"preset ({', '.join([*SURROGATE_PRESETS, *BDA_SURROGATE_PRESETS])}) or a YAML file")
    ],
    iterations: Annotated[int | None, typer.Option(help="maximum surrogate iterations after iteration 0")] = None,
    device: Annotated[str | None, typer.Option(help="training device: cpu, cuda or auto")] = None,
    out: OutOption = None,
    resume: ResumeFlag = False,
    check: CheckFlag = False,
    progress: ProgressFlag = True,
    plots: PlotsFlag = True,
) -> None:
    """Run (or resume) the cycle; write surrogate_run.nc (bda_surrogate.nc), summary.json, checkpoints and plots."""
    if is_bda_surrogate_target(target):
        run_gridded(
            target,
            iterations=iterations,
            device=device,
            out=out,
            resume=resume,
            check=check,
            progress=progress,
            plots=plots,
        )
        return
    names = [*SURROGATE_PRESETS, *BDA_SURROGATE_PRESETS]
    if target not in names and not is_yaml_path(target, names):
        raise fail(f"unknown surrogate preset {target!r}; choose one of: {', '.join(names)}")
    try:
        config = load_surrogate_target(target, iterations=iterations, device=device)
        config.device_obj()  # CUDA asked for where there is none
    except ConfigError as err:
        raise fail(str(err)) from None
    result = run_or_check(
        out,
        config.name,
        check,
        lambda: surrogate_config_to_dict(config),
        lambda out_dir: run_surrogate(config, out_dir, resume=resume, progress=progress, plots=plots),
        refused=(),  # its errors are run_errors' to report
    )
    if result is None:
        return
    s = summarise_surrogate(result)
    stdout.print(f"[bold]{config.name}[/]: {s['iterations_completed']} iterations ({s['stopped']})", highlight=False)
    stdout.print(
        f"analysis RMSE: perfect model {s['rmse_analysis_perfect']:.3f}, imperfect {s['rmse_analysis_imperfect']:.3f}, "
        f"{s['final_model']} {s['rmse_analysis_final']:.3f} ({-s['rmse_analysis_reduction']:+.0%} vs imperfect)",
        highlight=False,
    )
    best = s.get("rmse_analysis_best_fixed_inflation")
    if best and "rmse_analysis_reduction_best_fixed_inflation" in s:
        stdout.print(
            f"best fixed inflation: imperfect {best['imperfect']:.3f}, {s['final_model']} {best[s['final_model']]:.3f} "
            f"({-s['rmse_analysis_reduction_best_fixed_inflation']:+.0%})",
            highlight=False,
        )
    print_finished(s["wall_time_s"], result.paths["summary"])


@app.command("presets")
def presets() -> None:
    """List the surrogate presets."""
    for name, cfg in SURROGATE_PRESETS.items():
        stdout.print(
            f"{name}: truth {cfg.truth.name}, imperfect {cfg.imperfect.name}, net {cfg.net.kind}", highlight=False
        )
    for name, preset in BDA_SURROGATE_PRESETS.items():
        stdout.print(f"{name}: {preset.description}", highlight=False)
