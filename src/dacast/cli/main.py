"""Command-line interface: ``dacast run|presets`` and the ``bda``, ``surrogate`` and ``nowcast`` sub-commands.

Bad input (unknown preset, missing or malformed file, invalid values, a configuration too
large for this machine, an unknown option, a folder ``--out`` cannot create) prints one red
line on stderr and exits with status 2; Ctrl-C prints one line and exits with 130. A filter
that diverges is a result, not an error: the run finishes, says so, and exits 0.
``--check`` validates a configuration and prints it, resolved, as YAML, without running.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

import dacast
from dacast.cli.bda import app as bda_app
from dacast.cli.console import (
    CheckFlag,
    OneLineErrors,
    PlotsFlag,
    ProgressFlag,
    fail,
    interrupted,
    run_or_check,
)
from dacast.cli.console import out as stdout
from dacast.cli.diffusion import app as diffusion_app
from dacast.cli.nowcast import app as nowcast_app
from dacast.cli.obsop import app as obsop_app
from dacast.cli.realtime import app as realtime_app
from dacast.cli.surrogate import app as surrogate_app
from dacast.workflow import PRESETS, ConfigError, config_to_dict, load_target, run_experiment
from dacast.workflow.schema import is_yaml_path
from dacast.workflow.twin.loader import resolve_device

app = typer.Typer(
    name="dacast",
    help="Data assimilation and ML for weather prediction: twin experiments, radar BDA cycles, surrogates, nowcasts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=OneLineErrors,
)
app.add_typer(nowcast_app, name="nowcast")
app.add_typer(bda_app, name="bda")
app.add_typer(surrogate_app, name="surrogate")
app.add_typer(realtime_app, name="realtime")
app.add_typer(obsop_app, name="obsop")
app.add_typer(diffusion_app, name="diffusion")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dacast {dacast.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Data assimilation and ML for weather prediction: twin experiments, radar BDA cycles, surrogates, nowcasts."""


@app.command()
def run(
    target: Annotated[str, typer.Argument(help="A preset name (see `dacast presets`) or a YAML file.")],
    members: Annotated[int | None, typer.Option("--members", "-n", help="Override the ensemble size.")] = None,
    cycles: Annotated[int | None, typer.Option("--cycles", "-c", help="Override the number of analyses.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", "-s", help="Override the random seed.")] = None,
    device: Annotated[
        str | None, typer.Option("--device", "-d", help="cpu, cuda or auto (CUDA when available).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help=escape("Output directory [default: runs/<preset or file stem>].")),
    ] = None,
    check: CheckFlag = False,
    progress: ProgressFlag = True,
    plots: PlotsFlag = True,
) -> None:
    """Run a twin experiment; write results.nc, summary.json and PNG plots."""
    try:
        config, preset = load_target(target, members=members, cycles=cycles, seed=seed, device=device)
        resolve_device(config.device)
    except ConfigError as err:
        raise fail(str(err)) from None
    label = Path(target).stem if is_yaml_path(target, PRESETS) else target
    result = run_or_check(
        out,
        label,
        check,
        lambda: config_to_dict(config),
        lambda out_dir: run_experiment(config, out_dir, preset=preset, progress=progress, plots=plots),
        refused=(),  # its errors are run_errors' to report
    )
    if result is None:
        return
    compare = preset is not None and config == preset.config  # the preset's expected RMSE is for its own settings
    _report(label, result.summary, result.paths.results, result.paths.summary, result.paths.plots, compare=compare)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _report(
    label: str, summary: dict, results: Path, summary_path: Path, plots: tuple[Path, ...], *, compare: bool
) -> None:
    rmse = summary["rmse_analysis"]
    expected = summary.get("expected_rmse_analysis")
    line = f"[bold]{escape(label)}[/]: rmse.a = [bold]{_fmt(rmse)}[/]"
    if compare and expected is not None and rmse is not None:
        line += f" (expected {expected:.3g}, {100.0 * (rmse - expected) / expected:+.1f}%)"
    line += f", rmse.f = {_fmt(summary['rmse_forecast'])}, spread.a = {_fmt(summary['spread_analysis'])}"
    stdout.print(line, highlight=False)
    if summary["diverged"]:
        stdout.print(
            f"[bold yellow]diverged[/] at cycle {summary['diverged_cycle']}: {escape(str(summary['diverged_reason']))}",
            highlight=False,
        )
    stdout.print(f"wall time {summary['wall_time_s']:.2f} s on {summary['device']}", highlight=False)
    stdout.print(f"results: {results}\nsummary: {summary_path}", highlight=False, markup=False)
    if plots:
        stdout.print("plots:   " + ", ".join(str(p) for p in plots), highlight=False, markup=False)


@app.command()
def presets() -> None:
    """List the named presets with their expected analysis RMSE and source."""
    table = Table(title="dacast presets")
    table.add_column("name", style="bold", no_wrap=True)
    table.add_column("description", ratio=3)
    table.add_column("expected rmse.a", justify="right", no_wrap=True)
    table.add_column("source", ratio=3, overflow="fold")
    for p in PRESETS.values():
        expected = "-" if p.expected_rmse_analysis is None else f"{p.expected_rmse_analysis:.2f}"
        table.add_row(p.name, p.description, expected, p.source)
    stdout.print(table)


def main() -> None:
    """Console-script entry point: exits 0, 2 (bad input, one ``error:`` line) or 130 (interrupted)."""
    try:
        app()
    except KeyboardInterrupt:  # before or after a command ran (`OneLineErrors` reports those within one)
        raise SystemExit(interrupted().exit_code) from None


if __name__ == "__main__":
    main()
