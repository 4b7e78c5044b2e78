"""What both loops of the service share: the desk that files inputs away, and the polling loop.

`Desk` moves every input out of the inbox exactly once (used, skipped or rejected, the
last two counted and reported) and records published issues; `serve` polls a loop's
``poll`` until it is stopped, and leaves ``status.json`` saying so.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from dacast.workflow.files import load_checkpoint
from dacast.workflow.limits import ConfigError
from dacast.workflow.realtime.config import RealtimePaths
from dacast.workflow.realtime.inbox import move
from dacast.workflow.realtime.products import apply_retention, clean_partials, issue_name
from dacast.workflow.realtime.status import ServiceStatus
from dacast.workflow.runtime import Say

POLL_SECONDS = 0.05


@dataclass
class Desk:
    """Files the inputs of one service and keeps its status.

    Attributes:
        paths: the service's folders.
        status: the status shown on the page.
        retention_hours: how long issues and used inputs are kept.
        say: one-line notes.
    """

    paths: RealtimePaths
    status: ServiceStatus
    retention_hours: float
    say: Say

    def open(self, checkpoint: str, settings: dict[str, Any]) -> dict[str, Any] | None:
        """Create the folders, remove half-written issues; the loop's checkpoint (`resume_state`), None if none."""
        self.paths.create()
        clean_partials(self.paths.products)
        ckpt = self.paths.state / checkpoint
        return resume_state(ckpt, settings) if ckpt.exists() else None

    def resumed(self, message: str) -> None:
        """Count a restart from a checkpoint and report it."""
        self.status.counts["restarts"] += 1
        self.status.event("restart", message)
        self.say(message)

    def running(self) -> None:
        """Say (in ``status.json``) that the loop is running."""
        self.status.state = "running"
        self.status.save()

    def reject(self, path: Path, reason: str) -> None:
        """Move ``path`` to ``rejected/`` with its reason; count and report it."""
        move(path, self.paths.rejected, reason)
        self.status.counts["rejected"] += 1
        self.status.event("rejected", f"{path.name}: {reason}", path.name)
        self.status.save()
        self.say(f"rejected {path.name}: {reason}")

    def skip(self, path: Path, message: str) -> None:
        """Move ``path`` to ``done/`` unused; count and report it."""
        move(path, self.paths.done)
        self.status.counts["skipped"] += 1
        self.status.event("skipped", message, path.name)
        self.status.save()
        self.say(message)

    def used(self, path: Path | None) -> None:
        """Move a used input to ``done/``."""
        if path is not None and path.exists():
            move(path, self.paths.done)

    def amended(self, issue_time: datetime) -> None:
        """Record that a published issue gained products (the page reloads it when it is the latest)."""
        self.status.amended(issue_name(issue_time))
        self.status.save()

    def published(self, issue_time: datetime, arrival: float | None) -> float | None:
        """Record an issue just published (``arrival``: the input's arrival, wall s), save the status, apply
        retention; the latency from arrival to the status listing the issue (s)."""
        _release_memory()
        latency = None if arrival is None else time.time() - arrival
        self.status.published(issue_name(issue_time), issue_time, latency)
        self.status.save()
        apply_retention(self.paths.products, self.retention_hours)
        _prune(self.paths.done, self.retention_hours)
        _prune(self.paths.rejected, self.retention_hours)
        return latency


def resume_state(ckpt: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """The loop checkpoint ``ckpt`` (`load_checkpoint`: no code runs), checked to be of ``settings``.

    Raises:
        ConfigError: unreadable, or written by a service of other settings (one line: what differs, what to do).
    """
    data = load_checkpoint(ckpt)
    saved = data.get("settings")
    if saved != settings:
        differ = sorted(k for k in settings if not isinstance(saved, dict) or saved.get(k) != settings[k])
        raise ConfigError(
            f"{ckpt} was written by a service with other settings ({', '.join(differ)}); "
            f"use another folder, or remove {ckpt.parent} to start afresh"
        )
    return data


def serve(poll: Callable[[], int], status: ServiceStatus, stop: threading.Event, max_issues: int | None) -> None:
    """Call ``poll`` (it returns the issues it published) until ``stop`` is set or ``max_issues`` were published.

    While idle, ``status.json`` is rewritten once a cycle (at least once a second), so that the page can tell
    a quiet loop from a dead one.
    """
    published, beat = 0, time.monotonic()
    try:
        while not stop.is_set() and (max_issues is None or published < max_issues):
            n = poll()
            published += n
            if n:
                beat = time.monotonic()
                continue
            if time.monotonic() - beat > max(1.0, status.cycle_wall_seconds):  # heartbeat: the loop is alive
                status.save()
                beat = time.monotonic()
            stop.wait(POLL_SECONDS)
    except BaseException:
        status.state = "failed"
        status.save()
        raise
    status.state = "stopped"
    status.save()


def _release_memory() -> None:
    """Give the heap's freed pages back to the system (glibc ``malloc_trim``; a no-op elsewhere).

    Each cycle allocates and frees hundreds of MB of temporary tensors; without this the resident
    size of a long-running loop wanders upwards with the allocator's fragmentation (docs/realtime.md).
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _prune(folder: Path, hours: float) -> None:
    """Remove files in ``folder`` last modified more than ``hours`` ago."""
    cutoff = time.time() - hours * 3600.0
    for path in folder.iterdir() if folder.is_dir() else ():
        if path.is_file() and path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)


__all__ = ["POLL_SECONDS", "Desk", "resume_state", "serve"]
