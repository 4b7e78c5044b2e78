"""`dacast realtime demo`: the feed, the loop and the web server as three supervised processes.

The three parts are the same commands a user runs one by one (``dacast realtime twin-feed``
or ``replay-feed``, ``run``, ``serve``), started as child processes on the resolved settings
(written to ``state/config.yaml``). A child that dies (a crash, ``kill -9``) is restarted;
the loop then carries on from its last checkpoint and the feed from its state. Ctrl-C or
SIGTERM stops every child (SIGINT, then SIGKILL after a timeout) and returns.

Threads: the loop gets ``threads`` torch threads (1 by default); the feed runs one; the
server does no numerical work. On 2 cores the loop has one core, the feed and server the other.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
import types
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

from dacast.workflow.files import Stopped, write_text
from dacast.workflow.realtime.config import RealtimeConfig, realtime_config_to_dict
from dacast.workflow.realtime.feeds import twin_start
from dacast.workflow.realtime.products import iso
from dacast.workflow.realtime.server import check_port
from dacast.workflow.runtime import Say, quiet

MAX_RESTARTS = 20
STOP_SECONDS = 10.0


@dataclass
class Child:
    """One supervised process.

    Attributes:
        name: ``feed``, ``loop`` or ``server``.
        args: its command line after ``python -m dacast.cli``.
        restart: restart it when it ends with an error (the feed also ends normally after its last file).
    """

    name: str
    args: list[str]
    restart: bool = True
    process: subprocess.Popen | None = None
    restarts: int = 0
    env: dict[str, str] = field(default_factory=dict)

    def start(self, log: Path) -> None:
        """Start (or restart) the process, its output appended to ``log``."""
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **self.env}
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "dacast.cli", *self.args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # Ctrl-C in the terminal reaches the supervisor only
                preexec_fn=_die_with_parent,
            )


def _die_with_parent() -> None:
    """In the child, before it runs: ask Linux for SIGTERM when the supervisor dies (even by SIGKILL)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def demo_config(config: RealtimeConfig) -> RealtimeConfig:
    """``config`` with its start time fixed (feed and loop must agree on it): now, rounded down to the cycle."""
    if config.mode != "bda" or config.start_time is not None:
        return config
    return replace(config, start_time=iso(twin_start(config)))


def run_demo(config: RealtimeConfig, *, host: str = "127.0.0.1", port: int = 8000, say: Say = quiet) -> int:
    """Run feed, loop and server until Ctrl-C (or until the feed has ended and the loop is idle); the exit code.

    Args:
        config: the service (its ``folder`` holds inbox, products and state).
        host: the server's address (127.0.0.1: this machine only).
        port: the server's port.
        say: one-line notes (the URL, restarts).

    Raises:
        ConfigError: the port is taken, a folder cannot be written.
    """
    check_port(host, port)
    config = demo_config(config)
    paths = config.paths()
    paths.create()
    settings = paths.state / "config.yaml"
    write_text(settings, yaml.safe_dump(realtime_config_to_dict(config), sort_keys=False))
    feed = "twin-feed" if config.mode == "bda" else "replay-feed"
    children = [
        Child("server", ["realtime", "serve", "--products", str(paths.products), "--host", host, "--port", str(port)]),
        Child("loop", ["realtime", "run", str(settings)]),
        Child("feed", ["realtime", feed, str(settings)]),
    ]
    log = paths.state / "demo.log"
    with _stop_signals(), _supervised(children, log):
        say(f"page: http://{host}:{port}/  (folder {config.folder}; logs {log}; Ctrl-C stops)")
        while True:
            for child in children:
                code = child.process.poll() if child.process else None
                if code is None:
                    continue
                if child.name == "feed" and code == 0:
                    child.process = None  # delivered its last file
                    say("feed: done")
                    continue
                if child.name == "server" and code == 2:
                    raise RuntimeError(f"the web server could not start (see {log})")
                if child.restarts >= MAX_RESTARTS:
                    raise RuntimeError(f"{child.name} stopped {child.restarts} times (see {log})")
                child.restarts += 1
                say(f"{child.name} stopped (exit {code}); restarting it ({child.restarts})")
                child.start(log)
            time.sleep(0.2)


@contextlib.contextmanager
def _stop_signals() -> Iterator[None]:
    """Ctrl-C and SIGTERM both stop the demo through its cleanup, even where SIGINT was inherited as ignored
    (a shell's background job): without this a SIGTERM would end the supervisor and orphan its children."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(_signum: int, _frame: types.FrameType | None) -> None:
        raise Stopped("stopped by a signal")

    old = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def _supervised(children: list[Child], log: Path) -> Iterator[None]:
    """Start ``children``; on leaving (Ctrl-C included) stop them: SIGINT, then SIGKILL after `STOP_SECONDS`."""
    try:
        for child in children:
            child.start(log)
            if child.name == "server":
                time.sleep(0.3)
        yield
    finally:
        running = [c.process for c in children if c.process is not None and c.process.poll() is None]
        for p in running:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGINT)
        deadline = time.monotonic() + STOP_SECONDS
        for p in running:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


__all__ = ["Child", "demo_config", "run_demo"]
