"""Finding radar files by time and loading gap-aware sequences.

Layout below a radar root (``shared/data/radar``; see its README):

* mch:  ``mch/%Y%m%d/AQC%y%j%H%M?_00005.801.gif``
* fmi:  ``fmi/pgm/%Y%m%d/%Y%m%d%H%M_fmi.radar.composite.lowest_FIN_SUOMI1.pgm.gz``
* knmi: ``KNMI/%Y/%m/RAD_NL25_RAP_5min_%Y%m%d%H%M.h5``

File times come from the file names, never from the folder: the archive puts
the 2016-07-12 00:00 MeteoSwiss frame in folder ``20160711``, so the folders
of the neighbouring days (months for KNMI) are searched too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
import xarray as xr

from dacast.io.errors import RadarReadError, SequenceReadError
from dacast.io.paths import default_radar_root
from dacast.io.readers import READERS
from dacast.io.sources import Source, SourceSpec, TimeLike, get_spec, match_source, to_datetime, to_datetime64

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor, xr.DataArray)


@dataclass(frozen=True, kw_only=True)
class FrameFile:
    """One radar file: its source, UTC time (from the file name) and path."""

    source: Source
    time: np.datetime64
    path: Path


@dataclass(frozen=True, kw_only=True)
class UnreadableFrame:
    """A file that exists for an expected time but could not be used, and why."""

    time: np.datetime64
    path: Path
    error: str


@dataclass(frozen=True, kw_only=True)
class SequenceReport:
    """What :func:`load_sequence` expected, read and could not read.

    Attributes:
        source: radar source.
        root: radar root searched.
        timestep_min: time step of the expected times [min].
        expected: every time of the requested window, ascending.
        found: times read into the array (its ``time`` coordinate), ascending.
        files: the file read for each time in ``found``.
        missing: expected times without any file (gaps).
        unreadable: expected times whose file could not be read, with the error.
        duplicates: further files for a time already read (not used).
        off_grid: files inside the window at times not on the time-step grid (not used).
    """

    source: Source
    root: Path
    timestep_min: int
    expected: tuple[np.datetime64, ...]
    found: tuple[np.datetime64, ...]
    files: tuple[Path, ...]
    missing: tuple[np.datetime64, ...]
    unreadable: tuple[UnreadableFrame, ...]
    duplicates: tuple[Path, ...] = ()
    off_grid: tuple[Path, ...] = ()

    @property
    def complete(self) -> bool:
        """True when every expected time was read."""
        return not self.missing and not self.unreadable

    @property
    def gaps(self) -> tuple[np.datetime64, ...]:
        """Expected times absent from the array (missing or unreadable), ascending."""
        return tuple(sorted((*self.missing, *(u.time for u in self.unreadable))))

    def summary(self) -> str:
        """One line: source, window and counts, e.g. for logs and error messages."""
        first, last = (str(self.expected[0])[:16], str(self.expected[-1])[:16]) if self.expected else ("-", "-")
        text = (
            f"{self.source} {first}..{last} every {self.timestep_min} min: "
            f"{len(self.found)}/{len(self.expected)} read, {len(self.missing)} missing, "
            f"{len(self.unreadable)} unreadable"
        )
        if self.missing:
            text += " (missing: " + _first(str(t)[:16] for t in self.missing) + ")"
        if self.unreadable:
            text += " (unreadable: " + _first(f"{u.path.name}: {u.error}" for u in self.unreadable) + ")"
        return text


def _first(items: Iterable[str], n: int = 5) -> str:
    """The first ``n`` items joined by "; ", with a count of the rest."""
    items = list(items)
    rest = f"; ... {len(items) - n} more" if len(items) > n else ""
    return "; ".join(items[:n]) + rest


def _root(root: str | Path | None) -> Path:
    return default_radar_root() if root is None else Path(root)


def _folders(base: Path, spec: SourceSpec, start: np.datetime64, end: np.datetime64) -> list[Path]:
    """Date folders covering ``start - 1 day`` to ``end + 1 day``."""
    day = to_datetime(start).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    last = to_datetime(end) + timedelta(days=1)
    names: dict[str, None] = {}
    while day <= last:
        names[day.strftime(spec.folder_fmt)] = None
        day += timedelta(days=1)
    return [base / name for name in names]


def scan_folder(folder: Path, spec: SourceSpec) -> list[FrameFile]:
    """Files of ``spec`` in one folder whose names parse to a time (unsorted)."""
    out = []
    for path in folder.glob(spec.file_glob):
        found = match_source(path)
        if found is not None and found[0] is spec:
            out.append(FrameFile(source=spec.name, time=found[1], path=path))
    return out


def find_frames(root: str | Path | None, source: Source, start: TimeLike, end: TimeLike) -> list[FrameFile]:
    """Files of ``source`` with file-name times in ``[start, end]`` (inclusive, UTC).

    Args:
        root: radar root (holding ``mch/``, ``fmi/``, ``KNMI/``); ``None`` uses
            :func:`~dacast.io.default_radar_root`.
        source: ``"mch"``, ``"fmi"`` or ``"knmi"``.
        start: first time (naive = UTC).
        end: last time (naive = UTC).

    Returns:
        The files sorted by time, then name; an empty list when the source
        folder does not exist. Several files at one time are all listed.
    """
    spec = get_spec(source)
    t0, t1 = to_datetime64(start), to_datetime64(end)
    base = _root(root) / spec.subdir
    frames = [
        f
        for folder in _folders(base, spec, t0, t1)
        if folder.is_dir()
        for f in scan_folder(folder, spec)
        if t0 <= f.time <= t1
    ]
    return sorted(frames, key=lambda f: (f.time, f.path.name, str(f.path)))


def _expected_times(
    start: TimeLike, end: TimeLike | None, n_frames: int | None, timestep_min: int
) -> tuple[np.datetime64, ...]:
    if (end is None) == (n_frames is None):
        raise ValueError("give exactly one of end or n_frames")
    if timestep_min <= 0:
        raise ValueError(f"timestep_min must be positive, got {timestep_min}")
    t0 = to_datetime64(start)
    step = np.timedelta64(int(timestep_min), "m").astype("timedelta64[ns]")
    if n_frames is None:
        t1 = to_datetime64(end)  # type: ignore[arg-type]
        if t1 < t0:
            raise ValueError(f"end {t1} is before start {t0}")
        n_frames = int((t1 - t0) // step) + 1
    if n_frames < 1:
        raise ValueError(f"n_frames must be at least 1, got {n_frames}")
    return tuple(t0 + k * step for k in range(n_frames))


def load_sequence(
    source: Source,
    start: TimeLike,
    end: TimeLike | None = None,
    *,
    n_frames: int | None = None,
    root: str | Path | None = None,
    timestep_min: int = 5,
    strict: bool = False,
) -> tuple[xr.DataArray, SequenceReport]:
    """Load the frames of ``source`` at ``start, start + dt, ...`` as one array.

    Gaps are never skipped silently: an expected time without a file is in
    ``report.missing``, one whose file cannot be read (or has another grid than
    most frames read) is in ``report.unreadable`` with its path and the error.
    Every expected time is in exactly one of ``found``, ``missing`` and
    ``unreadable``. Missing and unreadable times are absent from the array, so
    check ``report.complete`` (or the ``time`` coordinate) before assuming a
    regular time axis.

    Args:
        source: ``"mch"``, ``"fmi"`` or ``"knmi"``.
        start: first time (naive = UTC).
        end: last time, inclusive (give this or ``n_frames``).
        n_frames: number of expected frames (give this or ``end``).
        root: radar root; ``None`` uses :func:`~dacast.io.default_radar_root`.
        timestep_min: spacing of the expected times [min].
        strict: raise if anything is missing or unreadable.

    Returns:
        ``(rain_rate, report)``: ``rain_rate`` of shape ``(time, y, x)`` in mm/h,
        float32, NaN = no data, with the readers' coords and attrs plus a
        ``filename`` coordinate along ``time``; and the :class:`SequenceReport`.

    Raises:
        SequenceReadError: (a `RadarReadError`) no frame at all could be read, or
            ``strict`` and the sequence is incomplete; the message names the
            unreadable files and ``err.report`` holds the report.
        ValueError: bad arguments (unknown source, both/neither of end and n_frames).
    """
    spec = get_spec(source)
    expected = _expected_times(start, end, n_frames, timestep_min)
    base = _root(root)
    wanted = set(expected)
    by_time: dict[np.datetime64, list[Path]] = {}
    off_grid: list[Path] = []
    for f in find_frames(base, spec.name, expected[0], expected[-1]):
        if f.time in wanted:
            by_time.setdefault(f.time, []).append(f.path)
        else:
            off_grid.append(f.path)

    read: list[tuple[np.datetime64, Path, xr.DataArray]] = []
    missing: list[np.datetime64] = []
    unreadable: list[UnreadableFrame] = []
    duplicates: list[Path] = []
    reader = READERS[spec.name]
    for t in expected:
        paths = by_time.get(t)
        if not paths:
            missing.append(t)
            continue
        path, *extra = paths
        duplicates.extend(extra)
        try:
            read.append((t, path, reader(path)))
        except RadarReadError as exc:
            unreadable.append(UnreadableFrame(time=t, path=path, error=str(exc)))

    frames: list[xr.DataArray] = []
    files: list[Path] = []
    found: list[np.datetime64] = []
    ref = _reference_grid([da for _, _, da in read])
    for t, path, da in read:
        if ref is not None and not _same_grid(da, ref):  # the odd frame out is blamed, not the majority
            error = f"cannot use {path}: its grid {_grid_text(da)} differs from the other frames' {_grid_text(ref)}"
            unreadable.append(UnreadableFrame(time=t, path=path, error=error))
            continue
        frames.append(da)
        files.append(path)
        found.append(t)
    unreadable.sort(key=lambda u: u.time)

    report = SequenceReport(
        source=spec.name,
        root=base,
        timestep_min=int(timestep_min),
        expected=expected,
        found=tuple(found),
        files=tuple(files),
        missing=tuple(missing),
        unreadable=tuple(unreadable),
        duplicates=tuple(duplicates),
        off_grid=tuple(off_grid),
    )
    if not frames:
        folder = base / spec.subdir
        where = str(folder) if folder.is_dir() else f"{folder} (no such folder)"
        raise SequenceReadError(f"no {spec.name} frame could be read under {where}: {report.summary()}", report)
    if strict and not report.complete:
        raise SequenceReadError(f"incomplete sequence under {base}: {report.summary()}", report)
    return _stack(frames, files), report


def _same_grid(a: xr.DataArray, b: xr.DataArray) -> bool:
    return a.shape == b.shape and np.array_equal(a.x.values, b.x.values) and np.array_equal(a.y.values, b.y.values)


def _reference_grid(frames: list[xr.DataArray]) -> xr.DataArray | None:
    """The first frame of the grid most frames share (ties: the earliest), ``None`` without frames."""
    groups: list[list[xr.DataArray]] = []
    for da in frames:
        group = next((g for g in groups if _same_grid(g[0], da)), None)
        if group is None:
            groups.append([da])
        else:
            group.append(da)
    return max(groups, key=len)[0] if groups else None


def _grid_text(da: xr.DataArray) -> str:
    """Shape and first cell centres of a frame, e.g. ``(640, 710) from x=255500, y=479500``."""
    x0 = float(da.x.values[0]) if da.sizes["x"] else float("nan")
    y0 = float(da.y.values[0]) if da.sizes["y"] else float("nan")
    return f"{tuple(da.shape)} from x={x0:g}, y={y0:g}"


def _stack(frames: list[xr.DataArray], files: list[Path]) -> xr.DataArray:
    first = frames[0]
    attrs = {k: v for k, v in first.attrs.items() if k != "filename"}
    times = np.array([f.time.values for f in frames], dtype="datetime64[ns]")
    return xr.DataArray(
        np.stack([f.values for f in frames]),
        dims=("time", "y", "x"),
        coords={
            "time": ("time", times, {"long_name": "valid time (UTC)"}),
            "y": first.y,
            "x": first.x,
            "filename": ("time", np.array([str(p) for p in files], dtype=object)),
        },
        attrs=attrs,
        name="rain_rate",
    )


def valid_mask(rain: ArrayT) -> ArrayT:
    """True where every frame has data (is finite).

    Args:
        rain: shape ``(..., y, x)``, e.g. ``(time, y, x)`` from :func:`load_sequence`
            or a single ``(y, x)`` frame; NaN = no data. DataArrays are reduced
            over every dim except ``y`` and ``x``.

    Returns:
        Boolean mask of shape ``(y, x)``, same kind as ``rain``.
    """
    if isinstance(rain, xr.DataArray):
        other = [d for d in rain.dims if d not in ("y", "x")]
        finite = xr.apply_ufunc(np.isfinite, rain, keep_attrs=False)
        mask = finite.all(dim=other) if other else finite
        return mask.rename("valid_mask")
    if isinstance(rain, torch.Tensor):
        finite_t = torch.isfinite(rain)
        return finite_t.reshape(-1, *rain.shape[-2:]).all(dim=0) if rain.ndim > 2 else finite_t
    finite_np = np.isfinite(np.asarray(rain))
    return finite_np.reshape(-1, *finite_np.shape[-2:]).all(axis=0) if finite_np.ndim > 2 else finite_np
