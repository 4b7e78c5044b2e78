"""``dacast diffusion run``: the diffusion filter against the LETKF on Lorenz-96 twins (``radar``: the latent filter).

Bad input (unknown preset, missing or malformed YAML, invalid values, an unknown
network, an existing run without ``--resume``, a prior in ``--prior-dir`` that does
not fit, an output folder that cannot be created) prints one red ``error:`` line and
exits 2; Ctrl-C prints one line (``--resume`` continues) and exits 130. ``--check``
validates the configuration and prints it as YAML.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dacast.cli.console import (
    CheckFlag,
    OneLineErrors,
    OutOption,
    PlotsFlag,
    ProgressFlag,
    ResumeFlag,
    fail,
    parse_seeds,
    print_finished,
    print_presets,
    run_or_check,
)
from dacast.cli.console import out as stdout
from dacast.cli.diffusion_radar import app as radar_app
from dacast.workflow.diffusion.config import DIFFUSION_PRESET_REGISTRY, diffusion_config_to_dict, load_diffusion_target
from dacast.workflow.diffusion.output import results_table
from dacast.workflow.diffusion.run import DiffusionRun, run_diffusion
from dacast.workflow.runtime import quiet, say
from dacast.workflow.schema import ConfigError

app = typer.Typer(
    name="diffusion",
    help="A learned forecast-error prior against the LETKF: Lorenz-96 twins (run), the radar twin (radar run).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=OneLineErrors,
)
app.add_typer(radar_app, name="radar")


def print_result(result: DiffusionRun) -> None:
    """The table (scores per network and filter, diffusion/LETKF ratios) and the divergences."""
    stdout.print(results_table(result.config, result.rows))
    for network, entry in result.summary["networks"].items():
        for d in entry["divergences"]:
            stdout.print(
                f"{network}: {d['filter']} seed {d['seed']} diverged at cycle {d['cycle']}: {d['reason']}",
                highlight=False,
                markup=False,
            )


@app.command("run")
def run(
    target: Annotated[str, typer.Argument(help=f"preset ({', '.join(DIFFUSION_PRESET_REGISTRY)}) or a YAML file")],
    cycles: Annotated[int | None, typer.Option(help="analysis cycles per run (dt = 0.05 each)")] = None,
    seeds: Annotated[str | None, typer.Option(help="comma-separated verification seeds, e.g. 3000,3001")] = None,
    prior_dir: Annotated[
        Path | None, typer.Option(help="a folder of trained priors prior-NETWORK[-itN].pt to read (else trained)")
    ] = None,
    out: OutOption = None,
    resume: ResumeFlag = False,
    check: CheckFlag = False,
    progress: ProgressFlag = True,
    plots: PlotsFlag = True,
) -> None:
    """Run (or resume) the comparison; write diffusion_run.nc, summary.json, the priors and plots."""
    try:
        config = load_diffusion_target(target, cycles=cycles, seeds=parse_seeds(seeds), prior_dir=prior_dir)
    except ConfigError as err:
        raise fail(str(err)) from None
    result = run_or_check(
        out,
        config.name,
        check,
        lambda: diffusion_config_to_dict(config),
        lambda out_dir: run_diffusion(
            config, out_dir, resume=resume, progress=progress, plots=plots, say=say if progress else quiet
        ),
    )  # refused: a prior that does not fit, too few training pairs
    if result is None:
        return
    print_result(result)
    print_finished(result.wall_time_s, result.paths["summary"])


@app.command("presets")
def presets() -> None:
    """List the diffusion presets."""
    print_presets(DIFFUSION_PRESET_REGISTRY)
