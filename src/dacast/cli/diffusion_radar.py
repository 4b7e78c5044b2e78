"""``dacast diffusion radar``: the latent diffusion filter against the gridded LETKF on the radar twin.

Bad input (unknown preset, missing or malformed YAML, invalid values, an existing run
without ``--resume``, a ``--filter`` file that is missing or made for another grid or
model, an output folder that cannot be created) prints one red ``error:`` line and exits
2; Ctrl-C prints one line (``--resume`` continues) and exits 130. ``--check`` validates
the configuration and prints it as YAML. A filter that diverges is a result: exit 0.
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
from dacast.workflow.diffusion.radar_config import RADAR_PRESET_REGISTRY, load_radar_target, radar_config_to_dict
from dacast.workflow.diffusion.radar_output import LABELS, results_table
from dacast.workflow.diffusion.radar_run import LatentRun, run_latent
from dacast.workflow.runtime import quiet, say
from dacast.workflow.schema import ConfigError

app = typer.Typer(
    name="radar",
    help="The latent diffusion filter against the gridded LETKF on the radar twin (Wursch-Craig, radar volumes).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=OneLineErrors,
)


def print_result(result: LatentRun) -> None:
    """The table (scores per filter, latent/LETKF ratios, training cost) and the divergences."""
    stdout.print(results_table(result.config, result.rows, result.training))
    for d in result.summary["divergences"]:
        stdout.print(
            f"{LABELS[d['filter']]} seed {d['seed']} stopped at cycle {d['cycle']}: {d['reason']}",
            highlight=False,
            markup=False,
        )


@app.command("run")
def run(
    target: Annotated[str, typer.Argument(help=f"preset ({', '.join(RADAR_PRESET_REGISTRY)}) or a YAML file")],
    cycles: Annotated[int | None, typer.Option(help="analysis cycles per verification run (bda.cycles)")] = None,
    seeds: Annotated[str | None, typer.Option(help="comma-separated verification seeds, e.g. 0,1")] = None,
    filter_file: Annotated[
        Path | None, typer.Option("--filter", help="a trained latent-filter.pt to use instead of training")
    ] = None,
    out: OutOption = None,
    resume: ResumeFlag = False,
    check: CheckFlag = False,
    progress: ProgressFlag = True,
    plots: PlotsFlag = True,
) -> None:
    """Run (or resume) the comparison; write latent_run.nc, summary.json, the filter and the plot."""
    try:
        config = load_radar_target(target, cycles=cycles, seeds=parse_seeds(seeds), filter_file=filter_file)
    except ConfigError as err:
        raise fail(str(err)) from None
    result = run_or_check(
        out,
        config.name,
        check,
        lambda: radar_config_to_dict(config),
        lambda out_dir: run_latent(
            config, out_dir, resume=resume, progress=progress, plots=plots, say=say if progress else quiet
        ),
    )  # refused: a filter that does not fit, too few training samples
    if result is None:
        return
    print_result(result)
    print_finished(result.wall_time_s, result.paths["summary"])


@app.command("presets")
def presets() -> None:
    """List the latent radar presets."""
    print_presets(RADAR_PRESET_REGISTRY)
