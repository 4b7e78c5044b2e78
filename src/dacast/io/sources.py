"""Per-source constants of the radar composites and file-name parsing.

Everything here follows ``shared/data/radar/README.md`` (the pysteps-data
subset): the projection strings, Z-R coefficients, attribution lines, folder
layouts and file-name patterns of the MeteoSwiss (``mch``), FMI (``fmi``) and
KNMI (``knmi``) composites. All timestamps are UTC and come from file names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import numpy as np

from dacast.io.errors import RadarReadError

Source = Literal["mch", "fmi", "knmi"]
SOURCES: tuple[Source, ...] = ("mch", "fmi", "knmi")

TimeLike = datetime | np.datetime64 | str


@dataclass(frozen=True, kw_only=True)
class SourceSpec:
    """Fixed facts about one radar source.

    Attributes:
        name: short source name (``mch``, ``fmi``, ``knmi``).
        institution: data provider.
        projection: PROJ string of the grid (from the README).
        xy_units: unit of the ``x``/``y`` coordinates (``"m"`` or ``"km"``).
        pixel_size_m: nominal pixel size in metres (x direction).
        grid_shape: ``(rows, columns)`` of the composite; a frame of another shape is rejected.
        zr_a: ``a`` of the Z-R relation ``Z = a R^b`` (Z in mm^6 m^-3, R in mm/h).
        zr_b: ``b`` of the Z-R relation.
        attribution: credit line to show with any product of these data.
        subdir: folder of the source below the radar root.
        folder_fmt: ``strftime`` format of the date folders below ``subdir``.
        folder_glob: glob matching every date folder below ``subdir``.
        file_glob: glob matching the source's files inside a date folder.
        file_regex: regular expression of a file name; group ``t`` holds the time.
        time_fmt: ``strptime`` format of group ``t``.
    """

    name: Source
    institution: str
    projection: str
    xy_units: Literal["m", "km"]
    pixel_size_m: float
    grid_shape: tuple[int, int]
    zr_a: float
    zr_b: float
    attribution: str
    subdir: str
    folder_fmt: str
    folder_glob: str
    file_glob: str
    file_regex: re.Pattern[str]
    time_fmt: str


MCH = SourceSpec(
    name="mch",
    institution="MeteoSwiss",
    projection=(
        "+proj=somerc +lon_0=7.43958333333333 +lat_0=46.9524055555556 +k_0=1 "
        "+x_0=600000 +y_0=200000 +ellps=bessel +towgs84=674.374,15.056,405.346,0,0,0,0 "
        "+units=m +no_defs"
    ),
    xy_units="m",
    pixel_size_m=1000.0,
    grid_shape=(640, 710),
    zr_a=316.0,
    zr_b=1.5,
    attribution="Radar data: MeteoSwiss, via pySTEPS/pysteps-data",
    subdir="mch",
    folder_fmt="%Y%m%d",
    folder_glob="*",
    file_glob="AQC*_00005.801.gif",
    file_regex=re.compile(r"^AQC(?P<t>\d{9})[A-Za-z]_00005\.801\.gif$"),
    time_fmt="%y%j%H%M",
)

FMI = SourceSpec(
    name="fmi",
    institution="Finnish Meteorological Institute",
    projection="+proj=stere +lon_0=25E +lat_0=90N +lat_ts=60 +a=6371288 +x_0=380886.310 +y_0=3395677.920 +no_defs",
    xy_units="m",
    pixel_size_m=999.674053,
    grid_shape=(1226, 760),
    zr_a=223.0,
    zr_b=1.53,
    attribution="Radar data: Finnish Meteorological Institute (FMI), via pySTEPS/pysteps-data",
    subdir="fmi/pgm",
    folder_fmt="%Y%m%d",
    folder_glob="*",
    file_glob="*_fmi.radar.composite.lowest_FIN_SUOMI1.pgm.gz",
    file_regex=re.compile(r"^(?P<t>\d{12})_fmi\.radar\.composite\.lowest_FIN_SUOMI1\.pgm\.gz$"),
    time_fmt="%Y%m%d%H%M",
)

KNMI = SourceSpec(
    name="knmi",
    institution="KNMI - Royal Netherlands Meteorological Institute",
    projection="+proj=stere +lat_0=90 +lon_0=0.0 +lat_ts=60.0 +a=6378.137 +b=6356.752 +x_0=0 +y_0=0",
    xy_units="km",
    pixel_size_m=1000.0,
    grid_shape=(765, 700),
    zr_a=200.0,
    zr_b=1.6,
    attribution="Radar data: Royal Netherlands Meteorological Institute (KNMI), via pySTEPS/pysteps-data",
    subdir="KNMI",
    folder_fmt="%Y/%m",
    folder_glob="*/*",
    file_glob="RAD_NL25_RAP_5min_*.h5",
    file_regex=re.compile(r"^RAD_NL25_RAP_5min_(?P<t>\d{12})\.h5$"),
    time_fmt="%Y%m%d%H%M",
)

SPECS: dict[str, SourceSpec] = {spec.name: spec for spec in (MCH, FMI, KNMI)}


def get_spec(source: str) -> SourceSpec:
    """The :class:`SourceSpec` of ``source``; a ``ValueError`` lists the valid names."""
    try:
        return SPECS[source]
    except KeyError:
        raise ValueError(f"unknown radar source {source!r}; valid sources: {', '.join(SPECS)}") from None


def match_source(path: str | Path) -> tuple[SourceSpec, np.datetime64] | None:
    """Source and UTC time of a radar file from its name alone, or ``None`` if no pattern matches."""
    name = Path(path).name
    for spec in SPECS.values():
        m = spec.file_regex.match(name)
        if m is None:
            continue
        try:
            t = datetime.strptime(m.group("t"), spec.time_fmt)
        except ValueError:
            return None
        return spec, to_datetime64(t)
    return None


def time_from_name(path: str | Path, spec: SourceSpec) -> np.datetime64:
    """UTC time encoded in the file name of a ``spec`` file; :class:`RadarReadError` if it has none."""
    found = match_source(path)
    if found is None or found[0] is not spec:
        raise RadarReadError(
            f"cannot read {path}: file name does not match the {spec.name} pattern "
            f"{spec.file_regex.pattern!r}; pass time= explicitly"
        )
    return found[1]


def to_datetime64(t: TimeLike) -> np.datetime64:
    """A time as ``numpy.datetime64[ns]`` in UTC.

    Naive ``datetime`` objects and strings without an offset are taken as UTC;
    aware ``datetime`` objects are converted to UTC.
    """
    if isinstance(t, datetime):
        if t.tzinfo is not None:
            t = t.astimezone(UTC).replace(tzinfo=None)
        return np.datetime64(t, "ns")
    if isinstance(t, str):
        parsed = datetime.fromisoformat(t)
        return to_datetime64(parsed)
    if isinstance(t, np.datetime64):
        return t.astype("datetime64[ns]")
    raise TypeError(f"expected a datetime, numpy.datetime64 or ISO string, got {type(t).__name__}")


def to_datetime(t: np.datetime64) -> datetime:
    """A ``numpy.datetime64`` as a naive UTC ``datetime`` (microsecond precision)."""
    us = int(t.astype("datetime64[us]").astype(np.int64))
    return datetime(1970, 1, 1) + timedelta(microseconds=us)
