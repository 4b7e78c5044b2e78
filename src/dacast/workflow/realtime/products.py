"""The products folder of the real-time service: one folder per issue time, a status file, retention.

Layout (everything written atomically; the server only reads)::

    products/
      status.json                 # the service's state: latest issue, counters, recent events (`write_status`)
      analysis_latest.nc          # the latest analysis (BDA loop), CF netCDF
      issues/
        20260701T000030Z/         # one issue time (UTC), published whole by one rename
          index.json              # what is in the folder (`publish_issue`)
          observation.png  analysis.png  forecast_00.png ...  probability_00.png ...  verification.png

An issue folder is assembled under ``issues/.partial-NAME-PID`` and renamed into place only when
every file in it is written and synced: a reader sees a whole issue or none. A published file is
never rewritten (a restarted service that reaches the same time again keeps the first). A slower
product (the ConvLSTM nowcast) joins a published issue later (`amend_issue`): its files are added
one by one, each by rename, and only then does a new ``index.json`` (replaced by rename) list them.
Retention removes the issue folders older than ``retention_hours`` before the newest.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dacast.workflow.files import atomic_write, fsync_dir, jsonable, write_json, write_text

ISSUES = "issues"
STATUS = "status.json"
INDEX = "index.json"
LATEST_ANALYSIS = "analysis_latest.nc"
PARTIAL = ".partial-"
#: The kinds of product an issue may hold, in the page's tab order.
KINDS = ("observation", "analysis", "forecast", "convlstm", "probability", "verification")
_NAME_FORMAT = "%Y%m%dT%H%M%SZ"


def issue_name(t: datetime) -> str:
    """Folder name of issue time ``t`` (UTC): ``YYYYmmddTHHMMSSZ``."""
    return t.astimezone(UTC).strftime(_NAME_FORMAT)


def parse_issue_name(name: str) -> datetime | None:
    """The UTC time of an issue folder name, ``None`` when ``name`` is not one."""
    try:
        return datetime.strptime(name, _NAME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def iso(t: datetime) -> str:
    """``t`` as ISO 8601 UTC with a ``Z``: ``2026-07-01T00:00:30Z``."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class ColourScale:
    """A stepped colour scale: values in ``[levels[i], levels[i+1])`` get ``colours[i]``.

    Attributes:
        quantity: what is coloured (``reflectivity``, ``probability``).
        units: units of ``levels`` (``dBZ``, ``1``).
        levels: ``n + 1`` increasing bin edges; values below the first are transparent.
        colours: ``n`` colours ``#rrggbb``.
    """

    quantity: str
    units: str
    levels: tuple[float, ...]
    colours: tuple[str, ...]

    def to_json(self, zr: tuple[float, float] = (200.0, 1.6)) -> dict[str, Any]:
        """The scale for ``index.json``; reflectivity scales also give each level in mm/h by ``Z = a R^b``
        (``zr = (a, b)``; Marshall and Palmer's by default)."""
        out: dict[str, Any] = {
            "quantity": self.quantity,
            "units": self.units,
            "levels": list(self.levels),
            "colours": list(self.colours),
        }
        if self.units == "dBZ":
            out["mm_per_h"] = [round(rain_rate(z, *zr), 2) for z in self.levels]
        return out


def rain_rate(dbz: float, a: float = 200.0, b: float = 1.6) -> float:
    """Rain rate (mm/h) of a reflectivity (dBZ) by ``Z = a R^b`` (Marshall and Palmer's by default)."""
    return float((10.0 ** (dbz / 10.0) / a) ** (1.0 / b))


#: Reflectivity, 5-dBZ steps from 10 dBZ (about 0.15 mm/h) to 65+ dBZ.
DBZ_SCALE = ColourScale(
    quantity="reflectivity",
    units="dBZ",
    levels=(10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 40.0, 45.0, 50.0, 55.0, 60.0, 65.0, 100.0),
    colours=(
        "#c6e6fb", "#8cc8f5", "#4a9de8", "#1f63c8", "#2fb34a", "#1f8a35",
        "#f5e43a", "#f2a22c", "#e8552a", "#c81e1e", "#a3128f", "#5c0a6b",
    ),
)  # fmt: skip
#: Probability (0-1) in steps of 0.1 from 0.05.
PROBABILITY_SCALE = ColourScale(
    quantity="probability",
    units="1",
    levels=(0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0001),
    colours=(
        "#e9f3fb", "#c4def2", "#92c3e6", "#5ea3d6", "#3383c2",
        "#f2c14e", "#f08a3a", "#e0502e", "#b8202a", "#7a0c1e",
    ),
)  # fmt: skip
NO_DATA = (200, 200, 200, 255)  # grey: outside the radar's coverage


def render_png(field: np.ndarray, scale: ColourScale, *, north_up: bool = True) -> bytes:
    """A PNG of ``field`` on ``scale`` (palette image; fast: ~1 ms per 256x256).

    Args:
        field: ``(ny, nx)`` in the scale's units; NaN = no data (grey); below the first level: transparent.
        scale: the colour scale.
        north_up: the first row is the southernmost (model grids): flip it so that north is up.

    Returns:
        The PNG file's bytes.
    """
    values = np.asarray(field, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"field must be (ny, nx), got shape {values.shape}")
    if north_up:
        values = values[::-1]
    index = np.digitize(np.nan_to_num(values, nan=-np.inf), scale.levels)  # 0: below, n+1: above the last
    index = np.minimum(index, len(scale.colours))  # above the top: the top colour
    index[np.isnan(values)] = len(scale.colours) + 1
    palette = [(0, 0, 0, 0)] + [_rgba(c) for c in scale.colours] + [NO_DATA]
    image = Image.fromarray(index.astype(np.uint8), mode="P")
    flat = [v for rgba in palette for v in rgba[:3]]
    image.putpalette(flat + [0] * (768 - len(flat)))
    image.info["transparency"] = bytes([rgba[3] for rgba in palette])
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1, transparency=image.info["transparency"])
    return buffer.getvalue()


def _rgba(colour: str) -> tuple[int, int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16), 255


def issues_dir(products: Path) -> Path:
    """The folder that holds the issue folders."""
    return Path(products) / ISSUES


def publish_issue(
    products: str | Path, issue_time: datetime, files: Mapping[str, bytes], index: Mapping[str, Any]
) -> Path | None:
    """Publish one issue: write ``files`` and ``index.json`` into a hidden folder, sync, rename it into place.

    Args:
        products: the products folder.
        issue_time: the issue (analysis or observation) time, UTC.
        files: file name -> content (PNG images).
        index: the issue's index (``issue_time`` and ``published`` are added).

    Returns:
        The published folder, or ``None`` when this issue time was published before (kept as it was).
    """
    root = issues_dir(Path(products))
    root.mkdir(parents=True, exist_ok=True)
    name = issue_name(issue_time)
    final = root / name
    if final.exists():
        return None
    partial = root / f"{PARTIAL}{name}-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        for file, data in files.items():
            if "/" in file or file.startswith(".") or file == INDEX:
                raise ValueError(f"bad product file name {file!r}")
            with open(partial / file, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        body = {**index, "issue_time": iso(issue_time), "published": iso(datetime.now(UTC))}
        with open(partial / INDEX, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(jsonable(body), allow_nan=False, indent=1))
            fh.flush()
            os.fsync(fh.fileno())
        fsync_dir(partial)
        os.rename(partial, final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    fsync_dir(root)
    return final


def amend_issue(
    products: str | Path, issue_time: datetime, files: Mapping[str, bytes], update: Mapping[str, Any]
) -> Path | None:
    """Add products to a published issue: new files first (each written and synced under a hidden name, then
    renamed), then ``index.json`` replaced by one rename with ``update`` merged in (``amended`` added).

    A file that is already there is kept as it is (a restarted service amending the same issue again).

    Args:
        products: the products folder.
        issue_time: the issue time, UTC.
        files: new file name -> content (PNG images).
        update: top-level index entries to set (``products`` is merged kind by kind).

    Returns:
        The issue folder, or ``None`` when it is not (or no longer) published.
    """
    folder = issues_dir(Path(products)) / issue_name(issue_time)
    index_file = folder / INDEX
    try:
        index = json.loads(index_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    for file, data in files.items():
        if "/" in file or file.startswith(".") or file == INDEX:
            raise ValueError(f"bad product file name {file!r}")
        if not (folder / file).exists():
            atomic_write(folder / file, lambda tmp, data=data: tmp.write_bytes(data))
    merged = {**index, **update, "amended": iso(datetime.now(UTC))}
    merged["products"] = index_products({**index.get("products", {}), **update.get("products", {})})
    write_text(index_file, json.dumps(jsonable(merged), allow_nan=False, indent=1))
    return folder


def list_issues(products: str | Path) -> list[str]:
    """Names of the published issues, oldest first (hidden partial folders excluded)."""
    root = issues_dir(Path(products))
    if not root.is_dir():
        return []
    names = [p.name for p in root.iterdir() if parse_issue_name(p.name) is not None and (p / INDEX).is_file()]
    return sorted(names)


def clean_partials(products: str | Path) -> int:
    """Remove issue folders left half-written by a killed service; how many."""
    root = issues_dir(Path(products))
    if not root.is_dir():
        return 0
    partials = [p for p in root.iterdir() if p.name.startswith(PARTIAL)]
    for p in partials:
        shutil.rmtree(p, ignore_errors=True)
    return len(partials)


def apply_retention(products: str | Path, hours: float) -> list[str]:
    """Remove the issues older than ``hours`` before the newest; the names removed."""
    names = list_issues(products)
    if not names:
        return []
    newest = parse_issue_name(names[-1])
    assert newest is not None
    cutoff = newest - timedelta(hours=hours)
    removed = [n for n in names if (parse_issue_name(n) or newest) < cutoff]
    for n in removed:
        shutil.rmtree(issues_dir(Path(products)) / n, ignore_errors=True)
    return removed


def read_status(products: str | Path) -> dict[str, Any]:
    """The service's ``status.json`` (an empty dict when there is none or it cannot be read)."""
    with contextlib.suppress(OSError, ValueError):
        data = json.loads((Path(products) / STATUS).read_text(encoding="utf-8"))
        if isinstance(data, dict):
            return data
    return {}


def write_status(products: str | Path, status: Mapping[str, Any]) -> None:
    """Write ``status.json`` atomically."""
    write_json(Path(products) / STATUS, dict(status))


def frame_names(kind: str, n: int) -> list[str]:
    """File names of an animated product: ``forecast_00.png``, ``forecast_01.png``, ..."""
    return [f"{kind}_{i:02d}.png" for i in range(n)]


def index_products(products: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """The ``products`` entry of an index, in tab order."""
    return {k: list(products[k]) for k in KINDS if k in products}


__all__ = [
    "DBZ_SCALE",
    "INDEX",
    "ISSUES",
    "KINDS",
    "LATEST_ANALYSIS",
    "PROBABILITY_SCALE",
    "STATUS",
    "ColourScale",
    "amend_issue",
    "apply_retention",
    "clean_partials",
    "frame_names",
    "index_products",
    "iso",
    "issue_name",
    "list_issues",
    "parse_issue_name",
    "publish_issue",
    "rain_rate",
    "read_status",
    "render_png",
    "write_status",
]
