"""``dacast realtime demo|run|serve|twin-feed|replay-feed|presets``: the real-time service.

``demo`` starts the feed, the loop and the web server and prints the page's URL; the other
commands run one part each, so that a real radar feed or another web server can replace
theirs. Bad input (malformed configuration, unknown preset, an occupied port, a folder that
cannot be written) is one red ``error:`` line and exit code 2; Ctrl-C stops cleanly (130).
"""

from __future__ import annotations

import signal
import threading
import types
from pathlib import Path
from typing import Annotated

import torch
import typer
from rich.table import Table

from dacast.cli.console import CheckFlag, OneLineErrors, fail, print_config
from dacast.cli.console import out as stdout
from dacast.workflow.realtime.bda_loop import BDALoop
from dacast.workflow.realtime.config import (
    REALTIME_PRESETS,
    RealtimeConfig,
    load_realtime_target,
    realtime_config_to_dict,
)
from dacast.workflow.realtime.demo import run_demo
from dacast.workflow.realtime.feeds import replay_frames, run_replay_feed, run_twin_feed
from dacast.workflow.realtime.nowcast_loop import NowcastLoop, load_replay_nowcaster
from dacast.workflow.realtime.server import check_port
from dacast.workflow.realtime.server import serve as serve_products
from dacast.workflow.runtime import say
from dacast.workflow.schema import ConfigError

app = typer.Typer(
    name="realtime",
    help="Real-time service: radar volumes (twin) or composites (replay) in; analyses, forecasts, a web page out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=OneLineErrors,
)

Target = Annotated[str, typer.Argument(help="A preset (see `dacast realtime presets`) or a YAML file.")]
Speed = Annotated[float | None, typer.Option("--speed", "-s", help="Run the feed this many times faster.")]
Folder = Annotated[str | None, typer.Option("--folder", "-f", help="Folder of inbox/, products/ and state/.")]
Volumes = Annotated[int | None, typer.Option("--volumes", help="Twin feed: stop after this many volumes.")]
Host = Annotated[str, typer.Option("--host", help="Address to listen on (127.0.0.1: this machine only).")]
Port = Annotated[int, typer.Option("--port", "-p", help="TCP port of the web page.")]


def _load(target: str, *, speed: float | None, folder: str | None, volumes: int | None = None) -> RealtimeConfig:
    try:
        config, _ = load_realtime_target(target, speed=speed, folder=folder, volumes=volumes)
    except ConfigError as err:
        raise fail(str(err)) from None
    return config


def _create(config: RealtimeConfig) -> None:
    """Create the service's folders (after every check: a refused command creates nothing)."""
    try:
        config.paths().create()
    except ConfigError as err:
        raise fail(str(err)) from None


def _stop_on_signals() -> threading.Event:
    """An event set by the first Ctrl-C or SIGTERM (the part then finishes its cycle); a second one interrupts."""
    stop = threading.Event()

    def handler(signum: int, _frame: types.FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


@app.command()
def demo(
    target: Annotated[str, typer.Argument(help="A preset or a YAML file.")] = "bda-small",
    speed: Speed = None,
    folder: Folder = None,
    volumes: Volumes = None,
    host: Host = "127.0.0.1",
    port: Port = 8000,
    check: CheckFlag = False,
) -> None:
    """Start the feed, the loop and the web page together; print the URL; Ctrl-C stops all three."""
    config = _load(target, speed=speed, folder=folder, volumes=volumes)
    if check:
        print_config(realtime_config_to_dict(config))
        return
    try:
        if config.mode == "replay":
            replay_frames(config)  # no data: one line now rather than a feed that keeps failing
            load_replay_nowcaster(config)  # nor a loop that keeps failing on its checkpoint
        run_demo(config, host=host, port=port, say=say)
    except ConfigError as err:
        raise fail(str(err)) from None
    except RuntimeError as err:
        raise fail(str(err)) from None


@app.command()
def run(
    target: Target,
    speed: Speed = None,
    folder: Folder = None,
    max_issues: Annotated[int | None, typer.Option("--max-issues", help="Stop after publishing this many.")] = None,
    check: CheckFlag = False,
) -> None:
    """Run the loop: watch the inbox, assimilate or nowcast, publish products (resumes from its checkpoint)."""
    config = _load(target, speed=speed, folder=folder)
    if check:
        print_config(realtime_config_to_dict(config))
        return
    torch.set_num_threads(config.threads)
    stop = _stop_on_signals()
    try:
        loop = BDALoop(config, say=say, stop=stop) if config.mode == "bda" else NowcastLoop(config, say=say, stop=stop)
    except ConfigError as err:  # e.g. the ConvLSTM checkpoint
        raise fail(str(err)) from None
    _create(config)
    try:
        status = loop.run(max_issues=max_issues)
    except ConfigError as err:
        raise fail(str(err)) from None
    counts = status.counts
    stdout.print(
        f"stopped: {counts['issues']} issues, {counts['skipped']} skipped, {counts['rejected']} rejected inputs",
        highlight=False,
    )


@app.command()
def serve(
    products: Annotated[Path, typer.Option("--products", help="The products folder to show.")] = Path(
        "realtime/products"
    ),
    host: Host = "127.0.0.1",
    port: Port = 8000,
) -> None:
    """Serve the web page and the products folder (read only) until Ctrl-C."""
    try:
        check_port(host, port)
        stdout.print(f"page: http://{host}:{port}/", highlight=False)
        serve_products(products, host, port)
    except ConfigError as err:
        raise fail(str(err)) from None


@app.command("twin-feed")
def twin_feed(target: Target, speed: Speed = None, folder: Folder = None, volumes: Volumes = None) -> None:
    """Deliver the BDA twin's radar volumes into the inbox, one every 30 s (over --speed)."""
    config = _load(target, speed=speed, folder=folder, volumes=volumes)
    if config.mode != "bda":
        raise fail(f"{target} is a {config.mode} configuration; the twin feed needs mode: bda")
    _create(config)
    torch.set_num_threads(1)
    n = run_twin_feed(config, say=say, stop=_stop_on_signals())
    stdout.print(f"twin feed: {n} volumes delivered", highlight=False)


@app.command("replay-feed")
def replay_feed(target: Target, speed: Speed = None, folder: Folder = None) -> None:
    """Copy real radar composites into the inbox in time order, at their own cadence (over --speed)."""
    config = _load(target, speed=speed, folder=folder)
    if config.mode != "replay":
        raise fail(f"{target} is a {config.mode} configuration; the replay feed needs mode: replay")
    _create(config)
    try:
        n = run_replay_feed(config, say=say, stop=_stop_on_signals())
    except ConfigError as err:
        raise fail(str(err)) from None
    stdout.print(f"replay feed: {n} files delivered", highlight=False)


@app.command()
def presets() -> None:
    """List the real-time presets."""
    table = Table(title="dacast realtime presets")
    table.add_column("name", style="bold", no_wrap=True)
    table.add_column("description")
    for p in REALTIME_PRESETS.values():
        table.add_row(p.name, p.description)
    stdout.print(table)
