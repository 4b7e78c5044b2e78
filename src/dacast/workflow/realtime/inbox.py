"""The inbox: files arrive (written atomically by a feed), are checked, and are used, skipped or rejected.

A feed writes each file under a hidden temporary name (``.NAME.tmp``) and renames it to
``NAME``: the service lists only names that do not start with a dot, so it never sees half
a file. A file it cannot use (unreadable, truncated, wrong grid, wrong time) is moved to
``state/rejected/`` with a ``NAME.reason`` text file beside it, and the reason is reported
(status, page); a used file goes to ``state/done/``. Nothing is deleted silently.

The twin radar volume format (``radar_YYYYmmddTHHMMSSZ.nc``, CF netCDF):

* ``reflectivity(y, x)`` float32 dBZ, NaN where the radar reported nothing;
* ``radial_velocity(y, x)`` float32 m/s (positive away from the radar), NaN where none;
* ``coverage(y, x)`` int8, 1 inside the radar's range and not blocked;
* coordinates ``y``, ``x`` (km, cell centres), a scalar ``time`` (UTC), attribute ``dx_m``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from torch import Tensor

from dacast.models.wursch_craig import WurschCraigConfig
from dacast.obs.radar import RadarConfig, RadarOperator, radar_mask, radar_operator
from dacast.workflow.cycle import Observation
from dacast.workflow.files import atomic_write, fsync_dir, write_text
from dacast.workflow.realtime.products import issue_name, parse_issue_name

VOLUME_PREFIX = "radar_"
VOLUME_SUFFIX = ".nc"


class Rejected(ValueError):
    """An input file that cannot be used; the message is the one-line reason."""


def arrived(path: Path) -> list[Path]:
    """The files waiting in the inbox ``path`` (hidden temporary names excluded), by name."""
    if not path.is_dir():
        return []
    return sorted(p for p in path.iterdir() if not p.name.startswith(".") and p.is_file())


def move(path: Path, folder: Path, reason: str | None = None) -> Path:
    """Move ``path`` into ``folder`` (replacing an older file of that name); write ``NAME.reason`` when given."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    if reason is not None:
        write_text(folder / f"{path.name}.reason", reason + "\n")
    os.replace(path, target)
    fsync_dir(folder)
    return target


def deliver(source: Path | Callable[[Path], None], inbox: Path, name: str) -> Path:
    """Put a file into the inbox atomically: written (or copied from ``source``) under a hidden name, then renamed."""
    inbox.mkdir(parents=True, exist_ok=True)
    write = source if callable(source) else (lambda tmp: shutil.copyfile(source, tmp))
    return atomic_write(inbox / name, write)


def volume_name(t: datetime) -> str:
    """File name of the twin radar volume valid at ``t``."""
    return f"{VOLUME_PREFIX}{issue_name(t)}{VOLUME_SUFFIX}"


def volume_time(name: str) -> datetime | None:
    """Valid time from a volume file name, ``None`` when the name is not a volume's."""
    if not (name.startswith(VOLUME_PREFIX) and name.endswith(VOLUME_SUFFIX)):
        return None
    return parse_issue_name(name[len(VOLUME_PREFIX) : -len(VOLUME_SUFFIX)])


def volume_dataset(
    y: Tensor, operator: RadarOperator, t: datetime, model: WurschCraigConfig, radar: RadarConfig
) -> xr.Dataset:
    """One superobbed radar volume as a CF Dataset (see the module docstring).

    Args:
        y: observations ``(n_obs,)``: reflectivities (dBZ) then radial velocities (m/s), in ``operator``'s order.
        operator: where they are (`dacast.obs.radar.observe_radar`).
        t: valid time (UTC).
        model: the grid.
        radar: the radar (its coverage is stored).
    """
    ny, nx = model.ny, model.nx
    dbz = np.full(ny * nx, np.nan, np.float32)
    vr = np.full(ny * nx, np.nan, np.float32)
    values = y.detach().cpu().numpy()
    kind, cell = operator.kind.cpu().numpy(), operator.cell.cpu().numpy()
    dbz[cell[kind == 0]] = values[kind == 0]
    vr[cell[kind == 1]] = values[kind == 1]
    km = model.dx / 1000.0
    coords = {"y": ("y", np.arange(ny) * km, {"units": "km"}), "x": ("x", np.arange(nx) * km, {"units": "km"})}
    cover = radar_mask(model, radar).numpy().astype(np.int8)
    ds = xr.Dataset(
        {
            "reflectivity": (("y", "x"), dbz.reshape(ny, nx), {"units": "dBZ", "long_name": "superobbed reflectivity"}),
            "radial_velocity": (
                ("y", "x"),
                vr.reshape(ny, nx),
                {"units": "m s-1", "long_name": "superobbed Doppler velocity, positive away from the radar"},
            ),
            "coverage": (("y", "x"), cover, {"long_name": "inside the radar's range and not blocked", "units": "1"}),
        },
        coords={**coords, "time": np.datetime64(t.astimezone(UTC).replace(tzinfo=None), "ns")},
        attrs={"Conventions": "CF-1.10", "title": "dacast twin radar volume", "dx_m": float(model.dx)},
    )
    return ds


def write_volume(inbox: Path, ds: xr.Dataset, t: datetime) -> Path:
    """Deliver volume ``ds`` valid at ``t`` into ``inbox`` (atomically)."""
    return deliver(lambda tmp: ds.to_netcdf(tmp, engine="netcdf4"), inbox, volume_name(t))


@dataclass(frozen=True)
class RadarVolume:
    """A checked volume: reflectivity and radial velocity ``(ny, nx)`` float32 (NaN = none), valid ``time``."""

    time: datetime
    reflectivity: np.ndarray
    radial_velocity: np.ndarray
    path: Path


def read_volume(path: Path, model: WurschCraigConfig) -> RadarVolume:
    """Read and check a volume file; `Rejected` (one line) when it is unreadable, of another grid or time."""
    t = volume_time(path.name)
    if t is None:
        raise Rejected(f"not a radar volume name (expected {VOLUME_PREFIX}YYYYmmddTHHMMSSZ{VOLUME_SUFFIX})")
    try:
        with xr.open_dataset(path, engine="netcdf4") as ds:
            ds = ds.load()
    except Exception as err:  # noqa: BLE001 - netCDF raises many kinds for a truncated or foreign file
        text = " ".join(str(err).replace(str(path), path.name).split())
        raise Rejected(f"unreadable ({type(err).__name__}: {text[:160]})") from None
    for name in ("reflectivity", "radial_velocity"):
        if name not in ds:
            raise Rejected(f"no {name} variable")
        if ds[name].dims != ("y", "x") or ds[name].shape != (model.ny, model.nx):
            raise Rejected(f"wrong grid: {name} is {dict(ds[name].sizes)}, the model's is y={model.ny}, x={model.nx}")
    if abs(float(ds.attrs.get("dx_m", -1.0)) - model.dx) > 1e-6 * model.dx:
        raise Rejected(f"wrong grid spacing: dx_m={ds.attrs.get('dx_m')}, the model's is {model.dx:g} m")
    stamp = ds["time"].values if "time" in ds.coords else None
    if stamp is None or np.datetime64(t.replace(tzinfo=None), "ns") != np.datetime64(stamp, "ns"):
        raise Rejected(f"time in the file ({stamp}) differs from its name ({t:%Y-%m-%dT%H:%M:%SZ})")
    dbz = ds["reflectivity"].values.astype(np.float32)
    vr = ds["radial_velocity"].values.astype(np.float32)
    if np.isinf(dbz).any() or np.isinf(vr).any() or (np.abs(np.nan_to_num(dbz)) > 200).any():
        raise Rejected("values out of range (infinite, or reflectivity beyond +-200 dBZ)")
    return RadarVolume(time=t, reflectivity=dbz, radial_velocity=vr, path=path)


def volume_observation(
    volume: RadarVolume, model: WurschCraigConfig, radar: RadarConfig, *, dtype: torch.dtype, device: torch.device
) -> Observation:
    """The observations of ``volume`` for the LETKF: the superobs and their `RadarOperator`.

    The order is `observe_radar`'s (reflectivities by cell, then radial velocities by cell), so a volume
    written by the twin feed gives exactly the observations the batch twin assimilates.
    """
    dbz = torch.from_numpy(volume.reflectivity.reshape(-1))
    vr = torch.from_numpy(volume.radial_velocity.reshape(-1))
    cells = torch.nonzero(~torch.isnan(dbz)).reshape(-1)
    vr_cells = torch.nonzero(~torch.isnan(vr)).reshape(-1)
    operator = radar_operator(cells, vr_cells, model, radar)
    y = torch.cat([dbz[cells], vr[vr_cells]]).to(dtype=dtype, device=device)
    return Observation(y=y, operator=operator)


__all__ = [
    "RadarVolume",
    "Rejected",
    "arrived",
    "deliver",
    "move",
    "read_volume",
    "volume_dataset",
    "volume_name",
    "volume_observation",
    "volume_time",
    "write_volume",
]
