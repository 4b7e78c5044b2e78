"""``dacast bda run|presets``: the Big Data Assimilation twin from the command line.

Bad input (unknown preset, malformed YAML, invalid values, an unreachable
scheduler, nothing to resume) prints one red ``error:`` line on stderr and
exits with status 2. A cycle without radar data is not an error: it runs the
forecast only and says so.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from dacast.cli.console import fail
from dacast.cli.console import out as stdout
from dacast.workflow.bda.config import BDA_PRESETS, load_bda_target
from dacast.workflow.bda.run import run_bda_experiment
from dacast.workflow.runtime import dask_client, say
from dacast.workflow.schema import ConfigError, is_yaml_path

app = typer.Typer(
    name="bda",
    help="Big Data Assimilation twin: convective-scale model, radar every 30 s, gridded LETKF, 30-min forecasts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command()
def run(
    target: Annotated[str, typer.Argument(help="A preset (see `dacast bda presets`) or a YAML file.")],
    members: Annotated[int | None, typer.Option("--members", "-n", help="Override the ensemble size.")] = None,
    grid: Annotated[int | None, typer.Option("--grid", "-g", help="Override the grid points per side.")] = None,
    cycles: Annotated[int | None, typer.Option("--cycles", "-c", help="Override the number of cycles.")] = None,
    device: Annotated[str | None, typer.Option("--device", "-d", help="cpu, cuda or auto.")] = None,
    dask: Annotated[bool, typer.Option("--dask", help="Run forecasts and LETKF tiles on a Dask cluster.")] = False,
    scheduler: Annotated[
        str | None, typer.Option("--scheduler", help="Address of a running Dask scheduler (tcp://host:port).")
    ] = None,
    workers: Annotated[int, typer.Option("--workers", help="Workers of the local Dask cluster.")] = 2,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output directory [default: runs/<name>].")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the checkpoint in --out.")] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
    plots: Annotated[bool, typer.Option("--plots/--no-plots", help="Write PNG figures.")] = True,
) -> None:
    """Cycle the twin; write checkpoint.pt, cycles.nc, summary.json and PNG plots."""
    try:
        config, preset = load_bda_target(target, members=members, grid=grid, cycles=cycles, device=device)
    except ConfigError as err:
        raise fail(str(err)) from None
    if workers < 1:
        raise fail(f"--workers must be positive, got {workers}")
    label = Path(target).stem if is_yaml_path(target, BDA_PRESETS) else target
    out_dir = out if out is not None else Path("runs") / label
    use_dask = dask or scheduler is not None

    try:
        with dask_client(scheduler, workers=workers) if use_dask else contextlib.nullcontext() as client:
            result = run_bda_experiment(
                config, out_dir, preset=preset, resume=resume, client=client, progress=progress, plots=plots, say=say
            )
    except ConfigError as err:
        raise fail(str(err)) from None
    except OSError as err:
        raise fail(f"cannot write results to {out_dir}: {err}") from None
    _report(label, result.summary, result.out_dir, result.plots)


def _report(label: str, summary: dict, out_dir: Path, plots: tuple[Path, ...]) -> None:
    ra, rf = summary["rmse_analysis"], summary["rmse_free_run"]
    cells = ", ".join(f"{v} {ra[v]:.3g} (free {rf[v]:.3g})" for v in summary["variables"])
    stdout.print(f"[bold]{label}[/]: rmse.a {cells}", highlight=False)
    ts = summary["threat_score_30dbz"]
    if ts["lead_minutes"]:
        picks = [i for i, m in enumerate(ts["lead_minutes"]) if m in (0, 10, 20, 30)]
        row = "  ".join(
            f"+{ts['lead_minutes'][i]:g}' {ts['forecast'][i]:.2f}/{ts['persistence'][i]:.2f}" for i in picks
        )
        stdout.print(f"threat score 30 dBZ (forecast/persistence): {row}", highlight=False)
    cs = summary["cycle_seconds"]
    stdout.print(
        f"cycle {cs['total']:.2f} s = forecast {cs['forecast']:.2f} + H(x) {cs['observation']:.2f} "
        f"+ LETKF {cs['letkf']:.2f}; {summary['obs_per_cycle']['dbz']:.0f} dBZ + "
        f"{summary['obs_per_cycle']['vr']:.0f} Vr obs per volume; wall {summary['wall_time_s']:.1f} s on "
        f"{summary['device']}",
        highlight=False,
    )
    stdout.print(f"results: {out_dir}", highlight=False)
    if plots:
        stdout.print("plots:   " + ", ".join(str(p) for p in plots), highlight=False)


@app.command()
def presets() -> None:
    """List the BDA presets."""
    table = Table(title="dacast bda presets")
    table.add_column("name", style="bold", no_wrap=True)
    table.add_column("description")
    for p in BDA_PRESETS.values():
        table.add_row(p.name, p.description)
    stdout.print(table)
