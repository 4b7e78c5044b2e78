"""Listing the radar events available under a root, e.g. to benchmark on every event found."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dacast.io.paths import default_radar_root
from dacast.io.sequence import scan_folder
from dacast.io.sources import SOURCES, Source, get_spec


@dataclass(frozen=True, kw_only=True)
class RadarEvent:
    """A run of radar frames of one source without a long interruption.

    Attributes:
        source: radar source.
        root: radar root the files were found under.
        start: first frame time (UTC).
        end: last frame time (UTC).
        n_frames: number of distinct frame times found.
        timestep_min: nominal time step [min] used for ``n_expected``.
    """

    source: Source
    root: Path
    start: np.datetime64
    end: np.datetime64
    n_frames: int
    timestep_min: int = 5

    @property
    def n_expected(self) -> int:
        """Frames a gap-free run from ``start`` to ``end`` at ``timestep_min`` would have."""
        return int((self.end - self.start) // np.timedelta64(self.timestep_min, "m")) + 1

    @property
    def complete(self) -> bool:
        """True when no frame of the run is missing."""
        return self.n_frames >= self.n_expected

    def __str__(self) -> str:
        return f"{self.source} {str(self.start)[:16]}..{str(self.end)[:16]} ({self.n_frames}/{self.n_expected} frames)"


def list_events(
    root: str | Path | None = None,
    *,
    sources: Iterable[Source] = SOURCES,
    max_gap_min: int = 60,
    timestep_min: int = 5,
) -> tuple[RadarEvent, ...]:
    """Scan the source folders under ``root`` and group their frames into events.

    Frames of a source belong to one event while consecutive file times are at
    most ``max_gap_min`` apart, so an event may contain gaps; load it with
    ``load_sequence(ev.source, ev.start, ev.end, root=ev.root)`` to get them
    reported. Times come from the file names (the MeteoSwiss 2016-07-12 00:00
    frame stored in folder ``20160711`` counts on 2016-07-12).

    Args:
        root: radar root; ``None`` uses :func:`~dacast.io.default_radar_root`.
        sources: sources to scan; a missing source folder gives no events.
        max_gap_min: longest interruption [min] inside one event.
        timestep_min: nominal time step [min] recorded in each event.

    Returns:
        The events sorted by source order, then start time.
    """
    base = default_radar_root() if root is None else Path(root)
    gap = np.timedelta64(int(max_gap_min), "m")
    events: list[RadarEvent] = []
    for source in sources:
        spec = get_spec(source)
        folder = base / spec.subdir
        if not folder.is_dir():
            continue
        times = sorted(
            {f.time for sub in folder.glob(spec.folder_glob) if sub.is_dir() for f in scan_folder(sub, spec)}
        )
        run: list[np.datetime64] = []
        for t in [*times, None]:
            if run and (t is None or t - run[-1] > gap):
                events.append(
                    RadarEvent(
                        source=spec.name,
                        root=base,
                        start=run[0],
                        end=run[-1],
                        n_frames=len(run),
                        timestep_min=timestep_min,
                    )
                )
                run = []
            if t is not None:
                run.append(t)
    return tuple(events)
