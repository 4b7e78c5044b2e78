"""``dacast nowcast run|verify|train``: radar nowcasts from the command line.

Thin wrappers around `dacast.workflow.nowcast` (``config``, ``run``, ``output``,
``train``): the commands parse arguments, call them and print. As everywhere in the CLI, bad
input (unknown source or method, missing radar frames, a bad checkpoint or
YAML file, invalid values, an output folder that cannot be created) prints one red
``error:`` line on stderr and exits with status 2; Ctrl-C prints one line and exits 130.
``dacast nowcast train CONFIG --check`` validates the training and prints it as YAML.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
import xarray as xr
from rich import box
from rich.markup import escape
from rich.table import Table

from dacast.cli.console import FLAG, OneLineErrors, check_out_dir, fail, print_config, set_interrupt_hint
from dacast.cli.console import out as stdout
from dacast.io import RadarReadError
from dacast.ml import MultiResConfig
from dacast.workflow.nowcast.config import (
    MAX_LEADS,
    METHODS,
    MOTIONS,
    NowcastRunConfig,
    NowcastTrainSpec,
    check_device,
    extrapolation_settings,
    hhmm,
    load_train_yaml,
    parse_floats,
    parse_time,
    with_train_overrides,
)
from dacast.workflow.nowcast.output import NowcastResult, scores_table
from dacast.workflow.nowcast.pretrain import MULTIRES_KEYS, model_settings
from dacast.workflow.nowcast.run import default_out_dir, run_nowcast, verify_nowcast
from dacast.workflow.nowcast.train import train_from_spec
from dacast.workflow.schema import ConfigError

app = typer.Typer(
    name="nowcast",
    help="Radar nowcasts: run a method at one issue time, verify a written nowcast, train a ConvLSTM.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=OneLineErrors,
)


def _scores_rich(title: str, scores: xr.Dataset) -> Table:
    """The score table, narrow enough for 80 columns with the default thresholds (the CSV has full names)."""
    header, rows = scores_table(scores)
    n_det = header.index("mae_mmh") + 1  # an ensemble's CRPS and spread/skill go in a table of their own
    header, rows = header[:n_det], [r[:n_det] for r in rows]
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


def _ensemble_rich(scores: xr.Dataset) -> Table:
    """CRPS and spread/skill per lead of an ensemble nowcast."""
    table = Table(title="ensemble members", box=box.SIMPLE_HEAD)
    for label in ("+min", "CRPS mm/h", "spread/skill"):
        table.add_column(label, justify="right")
    for i, lead in enumerate(scores["lead_time"].values):
        table.add_row(f"{lead:g}", f"{scores['crps'].values[i]:.4f}", f"{scores['spread_skill'].values[i]:.3f}")
    return table


def _report(result: NowcastResult, title: str) -> None:
    if result.scores is not None:
        stdout.print(_scores_rich(title, result.scores))
        if "crps" in result.scores:
            stdout.print(_ensemble_rich(result.scores))
    else:
        stdout.print(f"[bold]{title}[/]", highlight=False)
        stdout.print("[yellow]no observed frames after the issue time: the nowcast is not scored[/]", highlight=False)
    if result.scores is not None and result.missing_observed:
        gaps = ", ".join(hhmm(t)[-5:] for t in result.missing_observed)
        stdout.print(f"[yellow]no observed frame at {gaps} UTC[/]: those leads are not scored", highlight=False)
    for bad in result.unreadable_observed:  # one line per file, never wrapped
        when = hhmm(bad.time)[-5:]
        line = f"[yellow]unreadable observed frame at {when} UTC[/]: {escape(bad.error)}; that lead is not scored"
        stdout.print(line, highlight=False, soft_wrap=True)
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
        int | None,
        typer.Option("--leads", "-l", help=f"Lead times of 5 min, <= {MAX_LEADS} (default: 12, or the checkpoint's)."),
    ] = None,
    past_frames: Annotated[int, typer.Option("--past-frames", help="Frames for the extrapolation's motion.")] = 3,
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            "--checkpoint", "-c", help="convlstm: a .pt file or checkpoint folder (default: the shipped one)."
        ),
    ] = None,
    members: Annotated[
        int | None,
        typer.Option("--members", help="convlstm ensemble network: also run N members (P(rain > thr), CRPS)."),
    ] = None,
    root: Annotated[Path | None, typer.Option("--root", help="Radar root (default: shared/data/radar).")] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output folder (default: runs/nowcast/SOURCE-T0-METHOD).")
    ] = None,
    thresholds: Annotated[str, typer.Option("--thresholds", help="Score thresholds in mm/h, comma-separated.")] = "1,5",
    scales_km: Annotated[str, typer.Option("--scales-km", help="FSS windows in km, comma-separated.")] = "10",
    device: Annotated[str, typer.Option("--device", "-d", help="convlstm: cpu, cuda or auto.")] = "auto",
    plots: Annotated[
        bool, typer.Option("--plots/--no-plots", help="Write panel.png, nowcast.gif, skill.png.", metavar=FLAG)
    ] = True,
) -> None:
    """Nowcast from one issue time; write nowcast.nc, scores (when observed) and plots."""
    out_dir = out
    try:
        if source is None or start is None:
            raise ConfigError(f"--{'source' if source is None else 'start'} is required")
        config = NowcastRunConfig(
            source=source,  # type: ignore[arg-type]  # checked by NowcastRunConfig
            start=parse_time(start, "--start"),
            method=method,  # type: ignore[arg-type]
            motion=motion,  # type: ignore[arg-type]
            n_leads=leads,
            past_frames=past_frames,
            checkpoint=checkpoint,
            members=members,
            root=root,
            thresholds=parse_floats(thresholds, "--thresholds"),
            scales_km=parse_floats(scales_km, "--scales-km"),
            device=device,  # type: ignore[arg-type]
        )
        out_dir = out if out is not None else default_out_dir(config)
        check_out_dir(out_dir)
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
    plots: Annotated[bool, typer.Option("--plots/--no-plots", help="Write skill.png.", metavar=FLAG)] = True,
) -> None:
    """Score a written nowcast against its observed frames; print and write the table."""
    if out is not None:
        check_out_dir(out)
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
    ctx: typer.Context,
    config: Annotated[Path, typer.Argument(help="Training YAML (see examples/nowcast_train.yaml).")],
    device: Annotated[str | None, typer.Option("--device", "-d", help="Override: cpu, cuda or auto.")] = None,
    max_steps: Annotated[int | None, typer.Option("--max-steps", help="Override the number of steps.")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Override checkpoint_dir.")] = None,
    check: Annotated[
        bool, typer.Option("--check", help="Validate, print the resolved training as YAML, and stop.", metavar=FLAG)
    ] = False,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Show a progress bar.", metavar=FLAG)
    ] = True,
) -> None:
    """Train (or continue training) a ConvLSTM or multi-resolution nowcaster; checkpoints go to checkpoint_dir."""
    try:
        spec = with_train_overrides(load_train_yaml(config), device=device, max_steps=max_steps, checkpoint_dir=out)
        check_device(spec.config.device)
    except ConfigError as err:
        raise fail(str(err)) from None
    assert spec.config.checkpoint_dir is not None  # checked by NowcastTrainSpec
    check_out_dir(spec.config.checkpoint_dir, "checkpoint_dir")
    if check:
        print_config(train_spec_to_dict(spec))
        return
    set_interrupt_hint(ctx, "; rerun the same command to continue from the last checkpoint")
    try:
        log = lambda text: stdout.print(text, markup=False, highlight=False)  # noqa: E731
        run = train_from_spec(spec, progress=progress, log=log)
    except (ConfigError, RadarReadError) as err:
        raise fail(str(err)) from None
    except OSError as err:
        raise fail(f"cannot write checkpoints to {spec.config.checkpoint_dir}: {err}") from None
    res = run.result
    line = f"[bold]trained[/] to step {res.step}/{spec.config.max_steps} on {res.device}"
    if np.isfinite(res.best_val_loss):
        line += f"; best validation loss {res.best_val_loss:.4g} at step {res.best_step}"
    if res.stopped_early:
        line += " (stopped early)"
    stdout.print(line, highlight=False)
    ck = res.checkpoint_dir
    stdout.print(f"checkpoints: {ck / 'best.pt'}, {ck / 'last.pt'}, {ck / 'metrics.json'}", highlight=False)  # type: ignore[operator]


def train_spec_to_dict(spec: NowcastTrainSpec) -> dict[str, Any]:
    """The training YAML of ``spec`` (the schema of `dacast.workflow.nowcast.config`), every default filled in."""
    config = spec.config
    training = {f.name: getattr(config, f.name) for f in fields(config)}
    for key in ("model", "loss", "discriminator", "data", "checkpoint_dir"):
        training.pop(key)
    if not isinstance(config.model, MultiResConfig):  # keys of a multires model only
        for key in MULTIRES_KEYS:
            training.pop(key)
    training["init_from"] = None if spec.init_from is None else str(spec.init_from)
    ranges = {
        kind: [{"source": r.source, "start": str(r.start)[:16], "end": str(r.end)[:16]} for r in values]
        for kind, values in (("train", spec.train), ("validation", spec.validation))
        if values
    }
    twin = {} if spec.twin is None else {"twin": spec.twin}
    out: dict[str, Any] = {
        "data": {"root": None if spec.root is None else str(spec.root), **ranges, **twin},
        "extrapolation": extrapolation_settings(spec.extrapolation),
        "model": model_settings(config.model),
        "loss": config.loss,
        "discriminator": config.discriminator,
    }
    if config.data is not None:
        out["samples"] = {k: v for k, v in asdict(config.data).items() if k not in ("t_in", "t_out", "crop_size")}
    return {**out, "training": training, "checkpoint_dir": str(config.checkpoint_dir)}
