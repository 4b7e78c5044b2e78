"""Radially averaged power spectrum of known fields."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dacast.nowcast.motion import gaussian_blur
from dacast.verify import radial_power_spectrum


@pytest.mark.parametrize(("h", "w", "kx", "ky"), [(64, 64, 8, 0), (64, 64, 0, 5), (48, 64, 0, 6), (64, 64, 6, 8)])
def test_sinusoid_peaks_at_its_wavenumber(h: int, w: int, kx: int, ky: int) -> None:
    yy, xx = np.mgrid[0:h, 0:w]
    k = np.hypot(kx / w, ky / h)  # cycles per pixel
    field = np.cos(2 * np.pi * (kx * xx / w + ky * yy / h))
    wavenumber, power = radial_power_spectrum(field)
    assert wavenumber.shape == power.shape == (max(h, w) // 2 + 1,)
    assert wavenumber[int(power.argmax())].item() == pytest.approx(k, abs=0.5 / max(h, w))
    assert power[0].item() == pytest.approx(0.0, abs=1e-20)  # no mean


def test_wavenumber_units_and_batch() -> None:
    field = np.cos(2 * np.pi * 8 * np.arange(64)[None, :] / 64) * np.ones((64, 1))
    wavenumber, power = radial_power_spectrum(np.stack([field, 2 * field]), pixel_size=2.0)
    assert power.shape == (2, 33)
    assert wavenumber[int(power[0].argmax())].item() == pytest.approx(8 / 64 / 2.0)
    torch.testing.assert_close(power[1], 4 * power[0])


def test_blur_removes_small_scale_power() -> None:
    noise = torch.randn(128, 128, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    k, raw = radial_power_spectrum(noise)
    _, blurred = radial_power_spectrum(gaussian_blur(noise, 2.0))
    high = k > 0.25
    assert (blurred[high] < 0.01 * raw[high]).all()
    assert blurred[1].item() == pytest.approx(raw[1].item(), rel=0.2)
