"""``dacast nowcast run|verify|train``: radar nowcasts from the command line.

Thin wrappers around `dacast.workflow.nowcast` (``config``, ``run``, ``output``,
``train``): the commands parse arguments, call them and print. As everywhere in the CLI, bad
input (unknown source or method, missing radar frames, a bad checkpoint or
YAML file, invalid values) prints one red ``error:`` line on stderr and exits
with status 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer
import xarray as xr
from rich import box
from rich.markup import escape
from rich.table import Table

from dacast.cli.console import fail
from dacast.cli.console import out as stdout
from dacast.io import RadarReadError
from dacast.workflow.nowcast.config import (
    METHODS,
    MOTIONS,
    hhmm,
    load_train_yaml,
    parse_floats,
    run_config_from_options,
    with_train_overrides,
)
from dacast.workflow.nowcast.output import NowcastResult, scores_table
from dacast.workflow.nowcast.run import default_out_dir, run_nowcast, verify_nowcast
from dacast.workflow.nowcast.train import train_from_spec
from dacast.workflow.schema import ConfigError

app = typer.Typer(
    name="nowcast",
    help="Radar nowcasts: run a method at one issue time, verify a written nowcast, train a ConvLSTM.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _scores_rich(title: str, scores: xr.Dataset) -> Table:
    """The score table, narrow enough for 80 columns with the default thresholds (the CSV has full names)."""
    header, rows = scores_table(scores)
    labels = {"lead_time_min": "+min", "valid_time": "valid", "n_valid": "pixels", "mae_mmh": "MAE mm/h"}
    table = Table(title=title, box=box.SIMPLE_HEAD)
    for name in header:
        label = labels.get(name)
        if label is None:
            kind, *rest = name.split("_")
            thr = rest[0].removesuffix("mmh")
            label = f"CSI>{thr}" if kind == "csi" else f"FSS≥{thr}/{rest[1]}"
        table.add_column(escape(label), justify="right", no_wrap=True)
    for row in rows:
        table.add_row(row[0], row[1][-5:], *row[2:])
    return table


def _report(result: NowcastResult, title: str) -> None:
    if result.scores is not None:
        stdout.print(_scores_rich(title, result.scores))
    else:
        stdout.print(f"[bold]{title}[/]", highlight=False)
        stdout.print("[yellow]no observed frames after the issue time: the nowcast is not scored[/]", highlight=False)
    if result.scores is not None and result.missing_observed:
        gaps = ", ".join(hhmm(t)[-5:] for t in result.missing_observed)
        stdout.print(f"[yellow]no observed frame at {gaps} UTC[/]: those leads are not scored", highlight=False)
    p = result.paths
    stdout.print(f"nowcast: {p.nowcast}", highlight=False)
    if p.scores_csv is not None:
        stdout.print(f"scores:  {p.scores_csv}, {p.scores_nc}", highlight=False)
    if p.plots:
        stdout.print("plots:   " + ", ".join(str(x) for x in p.plots), highlight=False)


@app.command()
def run(
    source: Annotated[str | None, typer.Option("--source", help="Radar source: mch, fmi or knmi.")] = None,
    start: Annotated[
        str | None, typer.Option("--start", help="Issue time t0 (UTC, last observed frame), e.g. 2015-05-15T16:30.")
    ] = None,
    method: Annotated[str, typer.Option("--method", "-m", help=f"One of: {', '.join(METHODS)}.")] = "extrapolation",
    motion: Annotated[
        str | None,
        typer.Option(
            "--motion", help=f"Motion of the extrapolation: {', '.join(MOTIONS)} (default: trec, or the checkpoint's)."
        ),
    ] = None,
    leads: Annotated[
        int | None, typer.Option("--leads", "-l", help="Lead times of 5 min (default: 12, or the checkpoint's).")
    ] = None,
    past_frames: Annotated[int, typer.Option("--past-frames", help="Frames for the extrapolation's motion.")] = 3,
    checkpoint: Annotated[
        Path | None, typer.Option("--checkpoint", "-c", help="convlstm: a .pt file or checkpoint folder.")
    ] = None,
    root: Annotated[Path | None, typer.Option("--root", help="Radar root (default: shared/data/radar).")] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output folder (default: runs/nowcast/SOURCE-T0-METHOD).")
    ] = None,
    thresholds: Annotated[str, typer.Option("--thresholds", help="Score thresholds in mm/h, comma-separated.")] = "1,5",
    scales_km: Annotated[str, typer.Option("--scales-km", help="FSS windows in km, comma-separated.")] = "10",
    device: Annotated[str, typer.Option("--device", "-d", help="convlstm: cpu, cuda or auto.")] = "auto",
    plots: Annotated[bool, typer.Option("--plots/--no-plots", help="Write panel.png, nowcast.gif, skill.png.")] = True,
) -> None:
    """Nowcast from one issue time; write nowcast.nc, scores (when observed) and plots."""
    out_dir = out
    try:
        config = run_config_from_options(
            source=source,
            start=start,
            method=method,
            motion=motion,
            leads=leads,
            past_frames=past_frames,
            checkpoint=checkpoint,
            root=root,
            thresholds=thresholds,
            scales_km=scales_km,
            device=device,
        )
        out_dir = out if out is not None else default_out_dir(config)
        result = run_nowcast(config, out_dir, plots=plots)
    except (ConfigError, RadarReadError) as err:
        raise fail(str(err)) from None
    except OSError as err:
        raise fail(f"cannot write the nowcast to {out_dir}: {err}") from None
    ds = result.dataset
    what = method + (f" ({ds.attrs['motion']})" if "motion" in ds.attrs else "")
    title = f"{source} {hhmm(config.start)} UTC: {what}, {ds.sizes['lead_time']} leads of 5 min"
    _report(result, title)


@app.command()
def verify(
    nowcast: Annotated[Path, typer.Argument(help="A nowcast.nc written by `dacast nowcast run`.")],
    thresholds: Annotated[str, typer.Option("--thresholds", help="Score thresholds in mm/h, comma-separated.")] = "1,5",
    scales_km: Annotated[str, typer.Option("--scales-km", help="FSS windows in km, comma-separated.")] = "10",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder (default: the file's folder).")] = None,
    plots: Annotated[bool, typer.Option("--plots/--no-plots", help="Write skill.png.")] = True,
) -> None:
    """Score a written nowcast against its observed frames; print and write the table."""
    try:
        result = verify_nowcast(
            nowcast,
            out,
            thresholds=parse_floats(thresholds, "--thresholds"),
            scales_km=parse_floats(scales_km, "--scales-km"),
            plots=plots,
        )
    except ConfigError as err:
        raise fail(str(err)) from None
    except OSError as err:
        raise fail(f"cannot write the scores: {err}") from None
    a = result.dataset.attrs
    issued = str(a.get("issue_time", "?"))[:16].replace("T", " ")
    title = f"{a.get('source', '?')} {issued} UTC: {a.get('method', '?')} (from {nowcast.name})"
    _report(result, title)


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="Training YAML (see examples/nowcast_train.yaml).")],
    device: Annotated[str | None, typer.Option("--device", "-d", help="Override: cpu, cuda or auto.")] = None,
    max_steps: Annotated[int | None, typer.Option("--max-steps", help="Override the number of steps.")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Override checkpoint_dir.")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
) -> None:
    """Train (or continue training) a ConvLSTM nowcaster; checkpoints go to checkpoint_dir."""
    try:
        spec = with_train_overrides(load_train_yaml(config), device=device, max_steps=max_steps, checkpoint_dir=out)
        log = lambda text: stdout.print(text, markup=False, highlight=False)  # noqa: E731
        run = train_from_spec(spec, progress=progress, log=log)
    except (ConfigError, RadarReadError) as err:
        raise fail(str(err)) from None
    except OSError as err:
        raise fail(f"cannot write checkpoints: {err}") from None
    res = run.result
    line = f"[bold]trained[/] to step {res.step}/{spec.config.max_steps} on {res.device}"
    if np.isfinite(res.best_val_loss):
        line += f"; best validation loss {res.best_val_loss:.4g} at step {res.best_step}"
    if res.stopped_early:
        line += " (stopped early)"
    stdout.print(line, highlight=False)
    ck = res.checkpoint_dir
    stdout.print(f"checkpoints: {ck / 'best.pt'}, {ck / 'last.pt'}, {ck / 'metrics.json'}", highlight=False)  # type: ignore[operator]
