"""Rain rate ⇄ reflectivity (dBZ) through a Z-R relation ``Z = a R^b``.

``Z`` in mm^6 m^-3, ``R`` in mm/h, ``dBZ = 10 log10 Z``. A rain rate of 0
(or any rate whose reflectivity would fall below the floor) maps to the floor
``zero_dbz`` (default :data:`DEFAULT_ZERO_DBZ` = -10 dBZ, i.e. about 0.01 mm/h
for the Z-R relations used here — well below the 0.1 mm/h rain/no-rain
threshold), and :func:`from_dbz` maps every value ``<= zero_dbz`` back to 0.
So ``from_dbz(to_dbz(R))`` returns ``R`` wherever ``10 log10(a R^b) > zero_dbz``
and 0 elsewhere. NaN (no data) stays NaN.

Both functions accept numpy arrays, torch tensors and xarray DataArrays of
any shape and return the same kind. For DataArrays ``a``/``b`` default to the
``zr_a``/``zr_b`` attrs set by the readers in :mod:`dacast.io`.
"""

from __future__ import annotations

import math
from typing import TypeVar

import numpy as np
import torch
import xarray as xr

DEFAULT_ZERO_DBZ = -10.0
"""Reflectivity [dBZ] given to zero rain by :func:`to_dbz` (and the "no rain" cut of :func:`from_dbz`)."""

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor, xr.DataArray)


def _zr(x: object, a: float | None, b: float | None) -> tuple[float, float]:
    if isinstance(x, xr.DataArray):
        a = float(x.attrs["zr_a"]) if a is None and "zr_a" in x.attrs else a
        b = float(x.attrs["zr_b"]) if b is None and "zr_b" in x.attrs else b
    if a is None or b is None:
        raise ValueError("give the Z-R coefficients a and b (only DataArrays with zr_a/zr_b attrs supply them)")
    if a <= 0 or b <= 0:
        raise ValueError(f"Z-R coefficients must be positive, got a={a}, b={b}")
    return float(a), float(b)


def _float_np(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    return x if np.issubdtype(x.dtype, np.floating) else x.astype(np.float64)


def _float_torch(x: torch.Tensor) -> torch.Tensor:
    return x if x.is_floating_point() else x.to(torch.get_default_dtype())


def to_dbz(
    rain_rate: ArrayT, a: float | None = None, b: float | None = None, *, zero_dbz: float = DEFAULT_ZERO_DBZ
) -> ArrayT:
    """Reflectivity ``dBZ = max(10 log10(a R^b), zero_dbz)`` of a rain rate.

    Args:
        rain_rate: rain rate ``R`` in mm/h, any shape; NaN = no data. Values
            ``<= 0`` count as no rain.
        a: Z-R ``a`` (e.g. 316 mch, 223 fmi, 200 knmi); from ``zr_a`` for DataArrays.
        b: Z-R ``b`` (e.g. 1.5 mch, 1.53 fmi, 1.6 knmi); from ``zr_b`` for DataArrays.
        zero_dbz: floor [dBZ] given to zero (and very light) rain.

    Returns:
        Reflectivity in dBZ, same shape and kind as ``rain_rate`` (floating
        dtype kept; integer input gives float). DataArrays get ``units="dBZ"``,
        ``name="reflectivity"`` and the ``zr_a``, ``zr_b``, ``zero_dbz`` used.
    """
    a, b = _zr(rain_rate, a, b)
    c0 = 10.0 * math.log10(a)
    if isinstance(rain_rate, torch.Tensor):
        r = _float_torch(rain_rate)
        wet = r > 0
        dbz = c0 + 10.0 * b * torch.log10(torch.where(wet, r, torch.ones_like(r)))
        dbz = torch.where(wet, torch.clamp_min(dbz, zero_dbz), torch.full_like(r, zero_dbz))
        return torch.where(torch.isnan(r), r, dbz)
    if isinstance(rain_rate, xr.DataArray):
        out = rain_rate.copy(data=to_dbz(_float_np(rain_rate.values), a, b, zero_dbz=zero_dbz))
        out.attrs.update(units="dBZ", long_name="equivalent reflectivity", zr_a=a, zr_b=b, zero_dbz=zero_dbz)
        return out.rename("reflectivity")
    r = _float_np(rain_rate)
    wet = r > 0
    dbz = c0 + 10.0 * b * np.log10(np.where(wet, r, 1.0))
    dbz = np.where(wet, np.maximum(dbz, zero_dbz), zero_dbz)
    return np.where(np.isnan(r), r, dbz).astype(r.dtype, copy=False)


def from_dbz(
    dbz: ArrayT, a: float | None = None, b: float | None = None, *, zero_dbz: float = DEFAULT_ZERO_DBZ
) -> ArrayT:
    """Rain rate ``R = (10**(dBZ/10) / a) ** (1/b)``, with 0 where ``dBZ <= zero_dbz``.

    Args:
        dbz: reflectivity in dBZ, any shape; NaN = no data.
        a: Z-R ``a``; from ``zr_a`` for DataArrays.
        b: Z-R ``b``; from ``zr_b`` for DataArrays.
        zero_dbz: values at or below this [dBZ] are no rain.

    Returns:
        Rain rate in mm/h, same shape and kind as ``dbz``. DataArrays get
        ``units="mm/h"`` and ``name="rain_rate"``.
    """
    a, b = _zr(dbz, a, b)
    if isinstance(dbz, torch.Tensor):
        z = _float_torch(dbz)
        rain = (10.0 ** (z / 10.0) / a) ** (1.0 / b)
        rain = torch.where(z > zero_dbz, rain, torch.zeros_like(z))
        return torch.where(torch.isnan(z), z, rain)
    if isinstance(dbz, xr.DataArray):
        out = dbz.copy(data=from_dbz(_float_np(dbz.values), a, b, zero_dbz=zero_dbz))
        out.attrs.update(units="mm/h", long_name="rain rate", zr_a=a, zr_b=b)
        out.attrs.pop("zero_dbz", None)
        return out.rename("rain_rate")
    z = _float_np(dbz)
    with np.errstate(over="ignore"):
        rain = (10.0 ** (z / 10.0) / a) ** (1.0 / b)
    rain = np.where(z > zero_dbz, rain, 0.0)
    return np.where(np.isnan(z), z, rain).astype(z.dtype, copy=False)
