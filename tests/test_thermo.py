"""Moist thermodynamics: Goff-Gratch, humidity conversions and hypsometric heights against textbook values."""

import math

import torch

from dacast.thermo import (
    heights,
    relative_humidity,
    saturation_specific_humidity,
    saturation_vapour_pressure,
    specific_humidity,
    vapour_pressure,
)


def test_saturation_vapour_pressure_textbook_values():
    # Smithsonian Meteorological Tables (List 1963): 6.1078 hPa at 0 °C, 1013.25 hPa at the boiling point.
    es = saturation_vapour_pressure(torch.tensor([273.15, 293.15, 373.16], dtype=torch.float64))
    assert abs(float(es[0]) - 6.107) < 0.01
    assert abs(float(es[1]) - 23.37) < 0.05
    assert abs(float(es[2]) - 1013.246) < 1e-6


def test_humidity_round_trip_and_relative_humidity():
    p = torch.tensor([1000.0, 500.0, 100.0], dtype=torch.float64)
    q = torch.tensor([10.0, 1.0, 0.003], dtype=torch.float64)
    assert torch.allclose(specific_humidity(vapour_pressure(q, p), p), q, rtol=1e-12)
    t = torch.full_like(p, 290.0)
    rh = relative_humidity(t, saturation_specific_humidity(t, p), p)
    assert torch.allclose(rh, torch.ones_like(rh), rtol=1e-12)


def test_heights_isothermal_atmosphere_scale_height():
    p = torch.tensor([1000.0, 1000.0 / math.e], dtype=torch.float64)
    t = torch.full((2,), 250.0, dtype=torch.float64)
    z = heights(p, t, torch.zeros(2, dtype=torch.float64))
    assert float(z[0]) == 0.0
    assert abs(float(z[1]) - 287.04 * 250.0 / 9.80665 / 1000) < 1e-9  # one scale height, km


def test_heights_batched_and_moist_air_is_thicker():
    p = torch.tensor([1000.0, 850.0, 500.0], dtype=torch.float64)
    t = torch.tensor([[290.0, 280.0, 255.0]] * 2, dtype=torch.float64)
    q = torch.tensor([[0.0] * 3, [15.0, 8.0, 1.0]], dtype=torch.float64)
    z = heights(p, t, q)
    assert z.shape == (2, 3)
    assert float(z[1, -1]) > float(z[0, -1])
    assert 5.4 < float(z[0, -1]) < 5.8  # 1000-500 hPa thickness of a mild atmosphere
