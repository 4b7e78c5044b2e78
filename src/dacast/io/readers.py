"""Readers for the MeteoSwiss GIF, FMI PGM.gz and KNMI HDF5 radar composites.

Every reader returns a 2-D ``xarray.DataArray`` named ``rain_rate``:

* dims ``(y, x)``, float32, rain rate in mm/h, NaN where the radar has no data;
* 1-D coords ``x`` and ``y`` at cell centres in the projection's units (metres
  for mch/fmi, km for knmi, as in the README); row 0 is the northernmost row,
  so ``y`` decreases along the array;
* a scalar ``time`` coord (``datetime64[ns]``, UTC) parsed from the file name
  (for KNMI the end of the 5-min accumulation window);
* attrs ``units``, ``source``, ``institution``, ``projection``, ``pixel_size_m``,
  ``zr_a``, ``zr_b``, ``attribution``, ``filename`` (plus ``xy_units``,
  ``accutime_min`` and ``long_name``).

The unit conversions are exactly those of ``shared/data/radar/README.md``
(and of pysteps' importers followed by ``to_rainrate``).

Whatever is wrong with a file (missing, a directory, empty, truncated, zeroed,
random bytes, another provider's format, a grid other than the provider's, a
field without a single valid pixel), the readers raise one
:class:`~dacast.io.RadarReadError` whose one-line message names the file and
the cause; the grid error gives both shapes.
"""

from __future__ import annotations

import gzip
import re
import warnings
from io import BytesIO
from pathlib import Path

import numpy as np
import xarray as xr

from dacast.io.errors import RadarReadError
from dacast.io.sources import FMI, KNMI, MCH, SourceSpec, TimeLike, match_source, time_from_name, to_datetime64

_GRID_NAMES = {"mch": "CCS4", "fmi": "FIN SUOMI1", "knmi": "NL25"}
_MCH_X0, _MCH_Y1 = 255_000.0, 480_000.0  # west and north edge of the grid [m]
# KNMI NL25 grid in km: west edge, north edge, pixel size x and y (from the files' ``geographic`` group).
_KNMI_GEO_KM = (0.0, -3650.0, 1.0, -1.0)
# Largest decompressed FMI file accepted: the pixels plus a generous header (guards against gzip bombs).
_FMI_MAX_BYTES = FMI.grid_shape[0] * FMI.grid_shape[1] + (1 << 20)


def _mch_lut() -> np.ndarray:
    """Rain rate [mm/h] of each MeteoSwiss palette index DN, shape ``(256,)``, float64."""
    dn = np.arange(256, dtype=np.float64)
    value_mm = (10.0 ** ((dn - 71.5) / 20.0) / MCH.zr_a) ** (1.0 / MCH.zr_b)  # mm per 5 min
    lut = 12.0 * value_mm
    lut[[0, 1, 251, 252, 253, 254]] = 0.0
    lut[255] = np.nan
    return lut


def _fmi_lut() -> np.ndarray:
    """Rain rate [mm/h] of each FMI grey level DN, shape ``(256,)``, float64.

    ``dBZ = (DN - 64) / 2`` and ``R = (10**(dBZ/10) / 223) ** (1/1.53)``.
    DN 0 (-32 dBZ, no echo) gives 0 mm/h: pysteps' ``to_rainrate`` sets every
    value below the field's ``threshold`` (the smallest dBZ above the field
    minimum) to zero, i.e. the DN-0 pixels whenever DN 0 occurs, which it does
    in every FMI frame here. DN 255 is missing data.
    """
    dn = np.arange(256, dtype=np.float64)
    dbz = (dn - 64.0) / 2.0
    lut = (10.0 ** (dbz / 10.0) / FMI.zr_a) ** (1.0 / FMI.zr_b)
    lut[0] = 0.0
    lut[255] = np.nan
    return lut


_MCH_LUT = _mch_lut()
_FMI_LUT = _fmi_lut()


def _check_file(path: str | Path) -> Path:
    p = Path(path)
    if p.is_file():
        return p
    if p.is_dir():
        raise RadarReadError(f"cannot read {p}: is a directory, not a file")
    if p.exists():
        raise RadarReadError(f"cannot read {p}: not a regular file")
    raise RadarReadError(f"cannot read {p}: no such file")


def _check_grid(path: Path, shape: tuple[int, ...], spec: SourceSpec) -> None:
    """`RadarReadError` naming ``path`` and both shapes unless ``shape`` is the grid of ``spec``."""
    if tuple(shape) != spec.grid_shape:
        raise RadarReadError(
            f"cannot read {path}: wrong grid: shape {tuple(shape)} is not the {spec.name} "
            f"{_GRID_NAMES[spec.name]} grid {spec.grid_shape} (rows, columns)"
        )


def _check_values(path: Path, rain: np.ndarray) -> None:
    """`RadarReadError` when the field has no valid pixel (every pixel is the no-data value)."""
    if not np.isfinite(rain).any():
        raise RadarReadError(f"cannot read {path}: no valid pixel (every pixel is the no-data value)")


def _decode_error(path: Path, what: str, exc: BaseException) -> RadarReadError:
    text = " ".join(str(exc).split())[:200]
    return RadarReadError(f"cannot read {path}: not a readable {what} ({type(exc).__name__}: {text})")


def _time(path: Path, spec: SourceSpec, time: TimeLike | None) -> np.datetime64:
    return to_datetime64(time) if time is not None else time_from_name(path, spec)


def _centres(start: float, step: float, n: int) -> np.ndarray:
    """``n`` cell centres from the edge ``start`` in steps of ``step`` (negative for north→south)."""
    return start + step * (np.arange(n, dtype=np.float64) + 0.5)


def _wrap(
    rain: np.ndarray,
    *,
    x: np.ndarray,
    y: np.ndarray,
    time: np.datetime64,
    spec: SourceSpec,
    path: Path,
    xy_units: str,
    pixel_size_m: float,
) -> xr.DataArray:
    attrs = {
        "long_name": "rain rate",
        "units": "mm/h",
        "source": spec.name,
        "institution": spec.institution,
        "projection": spec.projection,
        "xy_units": xy_units,
        "pixel_size_m": float(pixel_size_m),
        "accutime_min": 5.0,
        "zr_a": spec.zr_a,
        "zr_b": spec.zr_b,
        "attribution": spec.attribution,
        "filename": str(path),
    }
    coords = {
        "y": ("y", y, {"units": xy_units, "long_name": "projection y coordinate (cell centre)"}),
        "x": ("x", x, {"units": xy_units, "long_name": "projection x coordinate (cell centre)"}),
        "time": ((), time, {"long_name": "valid time (UTC)"}),
    }
    return xr.DataArray(rain.astype(np.float32), dims=("y", "x"), coords=coords, attrs=attrs, name="rain_rate")


def read_mch_gif(path: str | Path, *, time: TimeLike | None = None) -> xr.DataArray:
    """Read a MeteoSwiss AQC composite (8-bit GIF, ``AQCyyDDDhhmmX_00005.801.gif``).

    DN 0, 1 and 251–254 give 0; DN 255 (outside coverage) gives NaN; otherwise
    ``R [mm/h] = 12 * (10**((DN-71.5)/20) / 316) ** (1/1.5)`` (the GIF value is
    a 5-min accumulation in mm, as in pysteps).

    Args:
        path: the GIF file.
        time: valid time (UTC) to use instead of the one in the file name.

    Returns:
        ``rain_rate`` of shape ``(y=640, x=710)`` in mm/h, float32, on the Swiss
        CCS4 grid (CH1903/LV03 metres, 1 km cells).

    Raises:
        RadarReadError: missing, corrupt or unexpected file, or no time in its name.
    """
    from PIL import Image

    p = _check_file(path)
    t = _time(p, MCH, time)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # a huge size in a corrupt header
            with Image.open(p) as im:
                if im.format != "GIF" or im.mode != "P":
                    raise RadarReadError(f"cannot read {p}: expected a palette GIF, got {im.format} mode {im.mode}")
                _check_grid(p, im.size[::-1], MCH)  # before decoding: a corrupt size could be huge
                dn = np.array(im)
    except RadarReadError:
        raise
    except Exception as exc:  # noqa: BLE001 - Pillow raises many kinds (OSError, struct.error, bomb errors, ...)
        raise _decode_error(p, "MeteoSwiss GIF", exc) from exc
    _check_grid(p, dn.shape, MCH)
    rain = _MCH_LUT[dn]
    _check_values(p, rain)
    x = _centres(_MCH_X0, MCH.pixel_size_m, MCH.grid_shape[1])
    y = _centres(_MCH_Y1, -MCH.pixel_size_m, MCH.grid_shape[0])
    return _wrap(rain, x=x, y=y, time=t, spec=MCH, path=p, xy_units="m", pixel_size_m=MCH.pixel_size_m)


def _pgm_header(raw: bytes) -> tuple[dict[str, str], tuple[int, int, int]]:
    """``# key value`` comments and ``(width, height, maxval)`` of a binary PGM."""
    if not raw.startswith(b"P5"):
        raise ValueError("not a binary PGM (no P5 magic)")
    comments: dict[str, str] = {}
    numbers: list[int] = []
    pos = 2
    while len(numbers) < 3:
        while pos < len(raw) and raw[pos : pos + 1].isspace():
            pos += 1
        if raw[pos : pos + 1] == b"#":
            end = raw.index(b"\n", pos)
            parts = raw[pos + 1 : end].decode("latin-1").strip().split(None, 1)
            if len(parts) == 2:
                comments.setdefault(parts[0], parts[1])
            pos = end + 1
            continue
        m = re.match(rb"\d+", raw[pos : pos + 12])
        if m is None:
            raise ValueError("malformed PGM header")
        numbers.append(int(m.group()))
        pos += m.end()
    width, height, maxval = numbers
    return comments, (width, height, maxval)


def read_fmi_pgm(path: str | Path, *, time: TimeLike | None = None) -> xr.DataArray:
    """Read an FMI lowest-CAPPI reflectivity composite (gzipped 8-bit PGM).

    DN 255 gives NaN; otherwise ``dBZ = (DN-64)/2`` and
    ``R [mm/h] = (10**(dBZ/10) / 223) ** (1/1.53)``, with DN 0 (-32 dBZ, no
    echo) giving 0 mm/h as pysteps' ``to_rainrate`` does.

    Coordinates: polar stereographic metres with x from 0 at the west edge and
    y from 0 at the south edge, cell sizes ``metersperpixel_x/y`` from the
    header (about 999.67 m x 999.63 m); ``pixel_size_m`` is the x size.

    Args:
        path: the ``.pgm.gz`` file.
        time: valid time (UTC) to use instead of the one in the file name.

    Returns:
        ``rain_rate`` of shape ``(y=1226, x=760)`` in mm/h, float32.

    Raises:
        RadarReadError: missing, corrupt or unexpected file, or no time in its name.
    """
    from PIL import Image

    p = _check_file(path)
    t = _time(p, FMI, time)
    try:
        with gzip.open(p, "rb") as fh:
            raw = fh.read(_FMI_MAX_BYTES + 1)
        if len(raw) > _FMI_MAX_BYTES:
            raise ValueError(f"more than {_FMI_MAX_BYTES} bytes once decompressed")
        header, (width, height, maxval) = _pgm_header(raw)
        _check_grid(p, (height, width), FMI)  # before decoding: a corrupt size could be huge
        if maxval != 255:
            raise ValueError(f"maxval {maxval}, expected 255 (8 bits)")
        with Image.open(BytesIO(raw)) as im:
            if im.mode != "L":
                raise ValueError(f"expected an 8-bit grey image, got mode {im.mode}")
            dn = np.array(im)
        dx = float(header["metersperpixel_x"])
        dy = float(header["metersperpixel_y"])
    except RadarReadError:
        raise
    except Exception as exc:  # noqa: BLE001 - gzip, the header parser and Pillow raise many kinds
        raise _decode_error(p, "FMI PGM.gz", exc) from exc
    if dn.shape != (height, width):
        raise RadarReadError(f"cannot read {p}: pixel grid {dn.shape} disagrees with the header {(height, width)}")
    if not all(abs(d / FMI.pixel_size_m - 1.0) < 0.01 for d in (dx, dy)):  # also catches NaN
        raise RadarReadError(
            f"cannot read {p}: wrong grid: pixel size {dx:g} x {dy:g} m is not the fmi FIN SUOMI1 grid's "
            f"{FMI.pixel_size_m:g} m"
        )
    rain = _FMI_LUT[dn]
    _check_values(p, rain)
    x = _centres(0.0, dx, width)
    y = _centres(height * dy, -dy, height)
    return _wrap(rain, x=x, y=y, time=t, spec=FMI, path=p, xy_units="m", pixel_size_m=dx)


_KNMI_CAL = re.compile(r"^GEO=(?P<gain>[-+0-9.eE]+)\*PV(?P<offset>[-+][0-9.eE]+)?$")


def read_knmi_hdf5(path: str | Path, *, time: TimeLike | None = None) -> xr.DataArray:
    """Read a KNMI 5-min radar accumulation (``RAD_NL25_RAP_5min_*.h5``).

    ``image1/image_data`` (uint16) holds PV with ``GEO = 0.01 * PV`` mm per
    5 min; 65535 is missing / outside the image. ``R [mm/h] = 12 * 0.01 * PV``.
    The time is the end of the accumulation window (the file-name time).

    Coordinates: polar stereographic **km** (``+a=6378.137``), read from the
    file's ``geographic`` group: x from 0 to 700 km, y from -3650 km (north
    edge, row 0) to -4415 km.

    Args:
        path: the HDF5 file.
        time: valid time (UTC) to use instead of the one in the file name.

    Returns:
        ``rain_rate`` of shape ``(y=765, x=700)`` in mm/h, float32.

    Raises:
        RadarReadError: missing, corrupt or unexpected file, or no time in its name.
    """
    import h5py

    p = _check_file(path)
    t = _time(p, KNMI, time)
    try:
        with h5py.File(p, "r") as f:
            data = f["image1/image_data"]
            _check_grid(p, data.shape, KNMI)  # before reading: a corrupt dataspace could be huge
            pv = np.asarray(data[()])
            cal = f["image1/calibration"].attrs
            formula = cal["calibration_formulas"]
            formula = (formula.decode() if isinstance(formula, bytes) else str(formula)).replace(" ", "")
            nodata = {int(np.ravel(cal[k])[0]) for k in ("calibration_missing_data", "calibration_out_of_image")}
            geo = f["geographic"].attrs
            ncols, nrows = int(np.ravel(geo["geo_number_columns"])[0]), int(np.ravel(geo["geo_number_rows"])[0])
            col0, row0 = float(np.ravel(geo["geo_column_offset"])[0]), float(np.ravel(geo["geo_row_offset"])[0])
            dx, dy = float(np.ravel(geo["geo_pixel_size_x"])[0]), float(np.ravel(geo["geo_pixel_size_y"])[0])
            dim = geo["geo_dim_pixel"]
            dim = (dim.decode() if isinstance(dim, bytes) else str(dim)).split(",")[0].strip().upper()
    except RadarReadError:
        raise
    except Exception as exc:  # noqa: BLE001 - h5py raises many kinds for a corrupt file
        raise _decode_error(p, "KNMI HDF5 file", exc) from exc
    m = _KNMI_CAL.match(formula)
    if m is None or float(m.group("gain")) != 0.01 or float(m.group("offset") or 0.0) != 0.0:
        raise RadarReadError(f"cannot read {p}: unexpected calibration {formula!r} (expected GEO=0.01*PV+0.0)")
    if pv.dtype != np.uint16 or pv.shape != (nrows, ncols):
        raise RadarReadError(
            f"cannot read {p}: image_data {pv.dtype}{pv.shape} does not match uint16 ({nrows}, {ncols})"
        )
    if dim not in ("KM", "M"):
        raise RadarReadError(f"cannot read {p}: unsupported pixel unit {dim!r}")
    units = dim.lower()
    km = 1.0 if units == "km" else 1e-3
    geo_km = (col0 * dx * km, row0 * dy * km, dx * km, dy * km)
    if not np.allclose(geo_km, _KNMI_GEO_KM, rtol=1e-6, atol=1e-6):
        raise RadarReadError(
            f"cannot read {p}: wrong grid: west/north edge and pixel size {tuple(round(v, 6) for v in geo_km)} km "
            f"are not those of the knmi NL25 grid {_KNMI_GEO_KM} km"
        )
    rain = 12.0 * (0.01 * pv.astype(np.float64))
    rain[np.isin(pv, list(nodata))] = np.nan
    _check_values(p, rain)
    # geo_pixel_size_y < 0: rows run north→south; the row offset is counted in pixels.
    x = _centres(col0 * dx, dx, ncols)
    y = _centres(row0 * dy, dy, nrows)
    size_m = abs(dx) * (1000.0 if units == "km" else 1.0)
    return _wrap(rain, x=x, y=y, time=t, spec=KNMI, path=p, xy_units=units, pixel_size_m=size_m)


READERS = {"mch": read_mch_gif, "fmi": read_fmi_pgm, "knmi": read_knmi_hdf5}


def read_radar(path: str | Path) -> xr.DataArray:
    """Read any supported radar composite, choosing the reader from the file name.

    ``AQC*_00005.801.gif`` → :func:`read_mch_gif`,
    ``*_fmi.radar.composite.lowest_FIN_SUOMI1.pgm.gz`` → :func:`read_fmi_pgm`,
    ``RAD_NL25_RAP_5min_*.h5`` → :func:`read_knmi_hdf5`.

    Returns:
        ``rain_rate`` of shape ``(y, x)`` in mm/h (see the module docstring).

    Raises:
        RadarReadError: unknown file name, or a missing / corrupt file.
    """
    found = match_source(path)
    if found is None:
        raise RadarReadError(
            f"cannot read {path}: unknown radar file name (expected AQCyyDDDhhmmX_00005.801.gif, "
            "YYYYMMDDhhmm_fmi.radar.composite.lowest_FIN_SUOMI1.pgm.gz or RAD_NL25_RAP_5min_YYYYMMDDhhmm.h5)"
        )
    return READERS[found[0].name](path)
