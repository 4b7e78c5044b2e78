"""What the service tells the page: counters, latencies and recent events, kept in ``products/status.json``.

A restarted service reads the file it left, counts the restart and carries on with the
same counters, so a kill shows on the page as an event, not as a reset.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from dacast.workflow.realtime.products import iso, read_status, write_status

MAX_EVENTS = 100
MAX_LATENCIES = 2000
COUNTERS = ("issues", "analyses", "forecast_only", "skipped", "rejected", "late", "restarts")


@dataclass
class ServiceStatus:
    """The service's state as shown by ``/api/status`` (see `dacast.workflow.realtime.server`)."""

    products: Path
    mode: str
    title: str
    cycle_wall_seconds: float
    state: str = "starting"
    started: str = field(default_factory=lambda: iso(datetime.now(UTC)))
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    events: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=MAX_EVENTS))
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=MAX_LATENCIES))
    latest_issue: str | None = None
    latest_issue_time: str | None = None
    latest_published_wall: float | None = None
    latest_revision: int = 0  # how often the latest issue was amended (a slower product added)

    @classmethod
    def resume(cls, products: Path, *, mode: str, title: str, cycle_wall_seconds: float) -> ServiceStatus:
        """The status left in ``products`` by an earlier run of the same mode (counters kept), else a new one."""
        status = cls(products=products, mode=mode, title=title, cycle_wall_seconds=cycle_wall_seconds)
        old = read_status(products)
        if old.get("mode") != mode:
            return status
        for key in COUNTERS:
            status.counts[key] = int(old.get("counts", {}).get(key, 0))
        status.events.extend(e for e in old.get("events", []) if isinstance(e, dict))
        status.latencies.extend(float(x) for x in old.get("latency_samples", []))
        for key in ("latest_issue", "latest_issue_time", "latest_published_wall"):
            setattr(status, key, old.get(key))
        status.latest_revision = int(old.get("latest_revision") or 0)
        return status

    def event(self, kind: str, message: str, file: str | None = None) -> None:
        """Record one event (``rejected``, ``missing``, ``late``, ``skipped``, ``restart``, ``diverged``, ``info``)."""
        self.events.append({"wall": time.time(), "kind": kind, "message": message, "file": file})

    def published(self, name: str, issue_time: datetime, latency: float | None) -> None:
        """Record a published issue and, when it answered an input, its latency (s)."""
        self.counts["issues"] += 1
        self.latest_issue, self.latest_issue_time = name, iso(issue_time)
        self.latest_published_wall = time.time()
        self.latest_revision = 0
        if latency is not None:
            self.latencies.append(latency)

    def amended(self, name: str) -> None:
        """Record that issue ``name`` gained products; the page reloads the latest issue when it is that one."""
        if name == self.latest_issue:
            self.latest_revision += 1

    def to_json(self) -> dict[str, Any]:
        """The content of ``status.json``."""
        lat = np.asarray(self.latencies, dtype=float)
        return {
            "mode": self.mode,
            "title": self.title,
            "state": self.state,
            "started": self.started,
            "updated_wall": time.time(),
            "cycle_wall_seconds": self.cycle_wall_seconds,
            "latest_issue": self.latest_issue,
            "latest_issue_time": self.latest_issue_time,
            "latest_published_wall": self.latest_published_wall,
            "latest_revision": self.latest_revision,
            "counts": dict(self.counts),
            "latency_s": {
                "last": float(lat[-1]) if lat.size else None,
                "p50": float(np.percentile(lat, 50)) if lat.size else None,
                "p95": float(np.percentile(lat, 95)) if lat.size else None,
                "n": int(lat.size),
            },
            "latency_samples": [round(float(x), 4) for x in lat[-200:]],
            "events": list(self.events),
        }

    def save(self) -> None:
        """Write ``status.json`` (atomically)."""
        write_status(self.products, self.to_json())


__all__ = ["COUNTERS", "ServiceStatus"]
