"""``dacast obsop run``: satellite radiances in the LETKF with a physical and a learned operator.

Bad input (unknown preset, missing or malformed YAML, invalid values, an
existing run without ``--resume``, an output folder that cannot be created)
prints one red ``error:`` line and exits 2; Ctrl-C prints one line
(``--resume`` continues) and exits 130. ``--check`` validates the configuration
and prints it as YAML.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

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
from dacast.workflow.radiance.config import RADIANCE_PRESET_REGISTRY, load_radiance_target, radiance_config_to_dict
from dacast.workflow.radiance.run import RadianceRun, run_radiance
from dacast.workflow.schema import ConfigError

app = typer.Typer(
    name="obsop",
    help="Assimilate AMSU-A radiances with a physical and a learned observation operator (column twin).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=OneLineErrors,
)


def print_table(result: RadianceRun) -> None:
    """The headline table: analysis RMSE of T and q per experiment (mean and max - min over seeds)."""
    s = result.summary
    n = len(result.config.seeds)
    table = Table(title=f"{result.config.name}: analysis RMSE after spin-up, mean of {n} seed(s)")
    for col in ("experiment", "T (K)", "T range", "q (g/kg)", "q range", "T spread"):
        table.add_column(col, justify="left" if col == "experiment" else "right")
    for name, e in s["experiments"].items():
        diverged = [(c, seed) for c, seed in zip(e["diverged_cycles"], result.config.seeds, strict=True) if c >= 0]
        if diverged:
            cycle, seed = min(diverged)
            table.add_row(name, "diverged", f"cycle {cycle}", f"seed {seed}", f"({len(diverged)}/{n})", "")
            continue
        table.add_row(
            name,
            f"{e['rmse_t_a']:.3f}",
            f"{e['rmse_t_a_seed_range']:.3f}",
            f"{e['rmse_q_a']:.4f}",
            f"{e['rmse_q_a_seed_range']:.4f}",
            f"{e['spread_t_a']:.3f}",
        )
    stdout.print(table)
    for key, o in s["ordering"].items():
        verdict = "holds" if o["holds"] else "does NOT hold"
        margin = "above" if o["gap_exceeds_spread"] else "within"
        stdout.print(
            f"{key}: {verdict} (gap {o['gap']:+.4f}, {margin} the seed range {o['seed_spread']:.4f})",
            highlight=False,
        )


@app.command("run")
def run(
    target: Annotated[str, typer.Argument(help=f"preset ({', '.join(RADIANCE_PRESET_REGISTRY)}) or a YAML file")],
    cycles: Annotated[int | None, typer.Option(help="analysis cycles per experiment (6 h each)")] = None,
    seeds: Annotated[str | None, typer.Option(help="comma-separated experiment seeds, e.g. 1,2,3")] = None,
    out: OutOption = None,
    resume: ResumeFlag = False,
    check: CheckFlag = False,
    progress: ProgressFlag = True,
    plots: PlotsFlag = True,
) -> None:
    """Run (or resume) the experiments; write radiance_run.nc, summary.json, the operators and plots."""
    try:
        config = load_radiance_target(target, cycles=cycles, seeds=parse_seeds(seeds))
    except ConfigError as err:
        raise fail(str(err)) from None
    result = run_or_check(
        out,
        config.name,
        check,
        lambda: radiance_config_to_dict(config),
        lambda out_dir: run_radiance(config, out_dir, resume=resume, progress=progress, plots=plots),
    )  # refused: a bad observation, or a saved operator that does not fit
    if result is None:
        return
    print_table(result)
    print_finished(result.wall_time_s, result.paths["summary"])


@app.command("presets")
def presets() -> None:
    """List the radiance presets."""
    print_presets(RADIANCE_PRESET_REGISTRY)
