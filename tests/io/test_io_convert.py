"""Rain rate <-> dBZ: known values, round trips on numpy / torch / xarray, and the sources' own dBZ scales."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from PIL import Image

from dacast.io import DEFAULT_ZERO_DBZ, from_dbz, read_fmi_pgm, read_mch_gif, to_dbz

RAIN = np.array([0.0, 0.001, 0.1, 1.0, 10.0, 115.5, np.nan])


def test_known_values_marshall_palmer() -> None:
    dbz = to_dbz(RAIN, 200.0, 1.6)
    # Z = 200 R^1.6: 1 mm/h -> 23.0103 dBZ, 10 mm/h -> 39.0103 dBZ.
    np.testing.assert_allclose(dbz[[3, 4]], [10 * np.log10(200.0), 10 * np.log10(200.0) + 16.0])
    assert dbz[0] == DEFAULT_ZERO_DBZ == -10.0
    assert dbz[1] == DEFAULT_ZERO_DBZ  # 0.001 mm/h is below the -10 dBZ floor
    assert np.isnan(dbz[-1])
    assert np.all(dbz[:-1] >= DEFAULT_ZERO_DBZ)


@pytest.mark.parametrize(("a", "b"), [(316.0, 1.5), (223.0, 1.53), (200.0, 1.6)])
def test_round_trip_numpy(a: float, b: float) -> None:
    back = from_dbz(to_dbz(RAIN, a, b), a, b)
    np.testing.assert_allclose(back[2:], RAIN[2:], rtol=1e-12, equal_nan=True)
    assert back[0] == 0.0 and back[1] == 0.0  # zero and sub-floor rain come back as 0
    rain32 = RAIN.astype(np.float32)
    assert to_dbz(rain32, a, b).dtype == np.float32
    np.testing.assert_allclose(from_dbz(to_dbz(rain32, a, b), a, b)[2:], rain32[2:], rtol=1e-5, equal_nan=True)


def test_floor_is_configurable() -> None:
    dbz = to_dbz(RAIN, 200.0, 1.6, zero_dbz=-30.0)
    assert dbz[0] == -30.0 and dbz[1] > -30.0
    np.testing.assert_allclose(from_dbz(dbz, 200.0, 1.6, zero_dbz=-30.0)[1], 0.001, rtol=1e-12)
    assert from_dbz(np.array([-10.0, -10.5]), 200.0, 1.6).tolist() == [0.0, 0.0]  # <= zero_dbz -> 0


def test_round_trip_torch_and_gradient() -> None:
    rain = torch.tensor(RAIN, dtype=torch.float64, requires_grad=True)
    dbz = to_dbz(rain, 223.0, 1.53)
    assert isinstance(dbz, torch.Tensor) and dbz.dtype == torch.float64
    np.testing.assert_allclose(dbz.detach().numpy(), to_dbz(RAIN, 223.0, 1.53), rtol=1e-12, equal_nan=True)
    back = from_dbz(dbz, 223.0, 1.53)
    np.testing.assert_allclose(back.detach().numpy()[2:], RAIN[2:], rtol=1e-12, equal_nan=True)
    dbz[torch.isfinite(dbz)].sum().backward()
    assert torch.isfinite(rain.grad).all()


def test_dataarray_uses_zr_attrs(mch_file: Path) -> None:
    rain = read_mch_gif(mch_file)
    dbz = to_dbz(rain)
    assert isinstance(dbz, xr.DataArray) and dbz.name == "reflectivity" and dbz.attrs["units"] == "dBZ"
    assert dbz.dims == rain.dims and dbz.time == rain.time and dbz.dtype == np.float32
    np.testing.assert_array_equal(dbz.values, to_dbz(rain.values, 316.0, 1.5))
    back = from_dbz(dbz)
    assert back.name == "rain_rate" and back.attrs["units"] == "mm/h"
    wet = rain.values > 0.01
    np.testing.assert_allclose(back.values[wet], rain.values[wet], rtol=1e-5)
    assert rain.attrs["units"] == "mm/h"  # input untouched
    with pytest.raises(ValueError, match="Z-R"):
        to_dbz(rain.values)


def test_mch_dbz_is_the_gif_scale(mch_file: Path) -> None:
    """MCH: 10 log10(316 R^1.5) with R = 12 x value equals (DN-71.5)/2 + 15 log10(12)."""
    dn = np.array(Image.open(mch_file)).astype(np.float64)
    rain = read_mch_gif(mch_file).values.astype(np.float64)
    wet = (dn >= 2) & (dn <= 250)
    expected = (dn[wet] - 71.5) / 2.0 + 15.0 * np.log10(12.0)
    np.testing.assert_allclose(to_dbz(rain, 316.0, 1.5, zero_dbz=-50.0)[wet], expected, atol=1e-5)


def test_fmi_dbz_recovers_the_pgm_levels(fmi_file: Path) -> None:
    """FMI: to_dbz with a = 223, b = 1.53 returns (DN-64)/2 above the floor."""
    dn = np.array(Image.open(gzip.open(fmi_file))).astype(np.float64)
    dbz = to_dbz(read_fmi_pgm(fmi_file).values.astype(np.float64), 223.0, 1.53, zero_dbz=-32.0)
    valid = dn != 255
    np.testing.assert_allclose(dbz[valid], (dn[valid] - 64.0) / 2.0, atol=1e-4)
    assert np.isnan(dbz[~valid]).all()
