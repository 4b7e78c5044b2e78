"""``dacast bda run|presets``: the Big Data Assimilation twin from the command line.

Bad input (unknown preset, malformed YAML, invalid values, a run too large for
this machine, an unreachable scheduler, nothing to resume, an output folder that
cannot be created) prints one red ``error:`` line on stderr and exits with status
2; Ctrl-C prints one line (``--resume`` continues) and exits 130. A cycle without
radar data is not an error: it runs the forecast only and says so. ``--check``
validates the configuration and prints it as YAML.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from dacast.cli.console import (
    FLAG,
    CheckFlag,
    OneLineErrors,
    PlotsFlag,
    ProgressFlag,
    fail,
    run_or_check,
)
from dacast.cli.console import out as stdout
from dacast.workflow.bda.config import BDA_PRESETS, bda_config_to_dict, load_bda_target
from dacast.workflow.bda.run import BDAResult, run_bda_experiment
from dacast.workflow.bda.tiled_run import parse_tiles, tile_spec
from dacast.workflow.runtime import dask_client, say
from dacast.workflow.schema import ConfigError, is_yaml_path
from dacast.workflow.twin.loader import resolve_device

app = typer.Typer(
    name="bda",
    help="Big Data Assimilation twin: convective-scale model, radar every 30 s, gridded LETKF, 30-min forecasts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=OneLineErrors,
)


@app.command()
def run(
    target: Annotated[str, typer.Argument(help="A preset (see `dacast bda presets`) or a YAML file.")],
    members: Annotated[int | None, typer.Option("--members", "-n", help="Override the ensemble size.")] = None,
    grid: Annotated[int | None, typer.Option("--grid", "-g", help="Override the grid points per side.")] = None,
    cycles: Annotated[int | None, typer.Option("--cycles", "-c", help="Override the number of cycles.")] = None,
    device: Annotated[str | None, typer.Option("--device", "-d", help="cpu, cuda or auto.")] = None,
    dask: Annotated[
        bool, typer.Option("--dask", help="Run forecasts and LETKF tiles on a Dask cluster.", metavar=FLAG)
    ] = False,
    scheduler: Annotated[
        str | None, typer.Option("--scheduler", help="Address of a running Dask scheduler (tcp://host:port).")
    ] = None,
    workers: Annotated[int, typer.Option("--workers", help="Workers of the local Dask cluster.")] = 2,
    tiles: Annotated[
        str | None,
        typer.Option(
            "--tiles",
            help="Keep the ensemble as NYxNX spatial tiles on the Dask workers (e.g. 2x2): only halos move.",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help=escape("Output directory [default: runs/<name>, runs/<name>-dask or runs/<name>-tiled]."),
        ),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from the checkpoint in --out.", metavar=FLAG)
    ] = False,
    check: CheckFlag = False,
    progress: ProgressFlag = True,
    plots: PlotsFlag = True,
) -> None:
    """Cycle the twin; write checkpoint.pt, cycles.nc, summary.json and PNG plots."""
    try:
        config, preset = load_bda_target(target, members=members, grid=grid, cycles=cycles, device=device)
        resolve_device(config.device)
        layout = None if tiles is None else parse_tiles(tiles)
        if layout is not None:
            tile_spec(config, layout)  # a grid too small for so many tiles: one line, before anything starts
    except ConfigError as err:
        raise fail(str(err)) from None
    if not 1 <= workers <= 1024:
        raise fail(f"--workers must be >= 1 and <= 1024, got {workers}")
    label = Path(target).stem if is_yaml_path(target, BDA_PRESETS) else target
    use_dask = dask or scheduler is not None or layout is not None
    # A Dask run of the same preset gets a folder of its own instead of replacing the one-process results.
    suffix = "-tiled" if layout is not None else "-dask" if use_dask else ""

    def launch(out_dir: Path) -> BDAResult:
        with dask_client(scheduler, workers=workers) if use_dask else contextlib.nullcontext() as client:
            return run_bda_experiment(
                config,
                out_dir,
                preset=preset,
                resume=resume,
                client=client,
                progress=progress,
                plots=plots,
                say=say,
                tiles=layout,
            )

    result = run_or_check(
        out, f"{label}{suffix}", check, lambda: bda_config_to_dict(config), launch, refused=()
    )  # its errors are run_errors' to report
    if result is None:
        return
    _report(label, result.summary, result.out_dir, result.plots)


def _g(value: float | None, spec: str = ".3g") -> str:
    """A number of ``summary.json`` (null where a value was not finite) as text."""
    return "n/a" if value is None else format(value, spec)


def _report(label: str, summary: dict, out_dir: Path, plots: tuple[Path, ...]) -> None:
    if "rmse_analysis" in summary:
        ra, rf = summary["rmse_analysis"], summary["rmse_free_run"]
        cells = ", ".join(f"{v} {_g(ra[v])} (free {_g(rf[v])})" for v in summary["variables"])
        stdout.print(f"[bold]{escape(label)}[/]: rmse.a {cells}", highlight=False)
        ts = summary["threat_score_30dbz"]
        if ts["lead_minutes"]:
            picks = [i for i, m in enumerate(ts["lead_minutes"]) if m in (0, 10, 20, 30)]
            row = "  ".join(
                f"+{ts['lead_minutes'][i]:g}' {_g(ts['forecast'][i], '.2f')}/{_g(ts['persistence'][i], '.2f')}"
                for i in picks
            )
            stdout.print(f"threat score 30 dBZ (forecast/persistence): {row}", highlight=False)
        cs, obs = summary["cycle_seconds"], summary["obs_per_cycle"]
        # on tiles H(x) runs inside the analysis stage, tile by tile
        hx = " + LETKF with H(x) " if "tiles" in summary else f" + H(x) {_g(cs['observation'], '.2f')} + LETKF "
        stdout.print(
            f"cycle {_g(cs['total'], '.2f')} s = forecast {_g(cs['forecast'], '.2f')}{hx}"
            f"{_g(cs['letkf'], '.2f')}; {_g(obs['dbz'], '.0f')} dBZ + "
            f"{_g(obs['vr'], '.0f')} Vr obs per volume",
            highlight=False,
        )
    if summary.get("diverged"):
        reason = escape(str(summary.get("diverged_reason")))
        stdout.print(f"[bold yellow]diverged[/] at cycle {summary.get('diverged_cycle')}: {reason}", highlight=False)
    stdout.print(f"wall {_g(summary.get('wall_time_s'), '.1f')} s on {summary.get('device')}", highlight=False)
    stdout.print(f"results: {out_dir}", highlight=False, markup=False)
    if plots:
        stdout.print("plots:   " + ", ".join(str(p) for p in plots), highlight=False, markup=False)


@app.command()
def presets() -> None:
    """List the BDA presets."""
    table = Table(title="dacast bda presets")
    table.add_column("name", style="bold", no_wrap=True)
    table.add_column("description")
    for p in BDA_PRESETS.values():
        table.add_row(p.name, p.description)
    stdout.print(table)
