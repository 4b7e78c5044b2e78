"""Command-line interface: ``dacast run|presets`` and the ``bda``, ``surrogate`` and ``nowcast`` sub-commands.

Bad input (unknown preset, missing or malformed file, invalid values) prints
one red line on stderr and exits with status 2. A filter that diverges is a
result, not an error: the run finishes, says so, and exits 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from dacast.cli.bda import app as bda_app
from dacast.cli.console import fail
from dacast.cli.console import out as stdout
from dacast.cli.nowcast import app as nowcast_app
from dacast.cli.surrogate import app as surrogate_app
from dacast.workflow import PRESETS, ConfigError, load_target, run_experiment
from dacast.workflow.schema import is_yaml_path

app = typer.Typer(
    name="dacast",
    help="Data assimilation and ML for weather prediction: twin experiments, radar BDA cycles, surrogates, nowcasts.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(nowcast_app, name="nowcast")
app.add_typer(bda_app, name="bda")
app.add_typer(surrogate_app, name="surrogate")


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
        Path | None, typer.Option("--out", "-o", help="Output directory [default: runs/<preset or file stem>].")
    ] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
    plots: Annotated[bool, typer.Option("--plots/--no-plots", help="Write PNG figures.")] = True,
) -> None:
    """Run a twin experiment; write results.nc, summary.json and PNG plots."""
    try:
        config, preset = load_target(target, members=members, cycles=cycles, seed=seed, device=device)
    except ConfigError as err:
        raise fail(str(err)) from None
    label = Path(target).stem if is_yaml_path(target, PRESETS) else target
    out_dir = out if out is not None else Path("runs") / label
    try:
        result = run_experiment(config, out_dir, preset=preset, progress=progress, plots=plots)
    except ConfigError as err:
        raise fail(str(err)) from None
    except OSError as err:
        raise fail(f"cannot write results to {out_dir}: {err}") from None
    _report(label, result.summary, result.paths.results, result.paths.summary, result.paths.plots)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _report(label: str, summary: dict, results: Path, summary_path: Path, plots: tuple[Path, ...]) -> None:
    rmse = summary["rmse_analysis"]
    expected = summary.get("expected_rmse_analysis")
    line = f"[bold]{label}[/]: rmse.a = [bold]{_fmt(rmse)}[/]"
    if expected is not None and rmse is not None:
        line += f" (expected {expected:.3g}, {100.0 * (rmse - expected) / expected:+.1f}%)"
    line += f", rmse.f = {_fmt(summary['rmse_forecast'])}, spread.a = {_fmt(summary['spread_analysis'])}"
    stdout.print(line, highlight=False)
    if summary["diverged"]:
        stdout.print(
            f"[bold yellow]diverged[/] at cycle {summary['diverged_cycle']}: {summary['diverged_reason']}",
            highlight=False,
        )
    stdout.print(f"wall time {summary['wall_time_s']:.2f} s on {summary['device']}", highlight=False)
    stdout.print(f"results: {results}\nsummary: {summary_path}", highlight=False)
    if plots:
        stdout.print("plots:   " + ", ".join(str(p) for p in plots), highlight=False)


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
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
