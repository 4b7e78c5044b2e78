"""Fractions skill score: limits, hand-computed values and pysteps regression values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dacast.verify import fss

# Regression values from pysteps 1.21.5, pysteps.verification.spatialscores.fss;
# regenerate with tests/verify/make_pysteps_reference.py.
PYSTEPS_SYNTHETIC = {1: 0.3423284502698535, 4: 0.8754832218319182, 7: 0.9545213998212564}
PYSTEPS_MCH = {  # forecast = 16:30 (persistence), observed = 17:00 UTC, MeteoSwiss 2015-05-15
    (1.0, 10): 0.6862625313108115,
    (5.0, 10): 0.5252913004525277,
    (1.0, 1): 0.5443189415531863,
    (1.0, 25): 0.8193190291287314,
    (0.5, 6): 0.6905949700620122,
}


def synthetic() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.gamma(0.5, 2.0, (40, 50)), rng.gamma(0.5, 2.0, (40, 50))


def test_perfect_forecast_is_one() -> None:
    x, _ = synthetic()
    for scale in (1, 3, 10):
        assert fss(x, x, 1.0, scale).item() == pytest.approx(1.0)


def test_disjoint_at_pixel_scale_is_zero() -> None:
    f = np.zeros((8, 8))
    o = np.zeros((8, 8))
    f[2, 2] = 5.0
    o[5, 6] = 5.0
    assert fss(f, o, 1.0, 1).item() == 0.0
    assert 0.0 < fss(f, o, 1.0, 9).item() < 1.0  # the neighbourhood sees the near miss


def test_hand_computed_odd_window() -> None:
    # 3 x 3 grid, 3 x 3 window, zero padding. Forecast event in the centre: every
    # window holds it, P_f = 1/9 at 9 pixels. Observed event in a corner: 4 windows
    # hold it, P_o = 1/9 at 4 pixels. FSS = 1 - (5/81) / (9/81 + 4/81) = 8/13.
    f = np.zeros((3, 3))
    o = np.zeros((3, 3))
    f[1, 1] = 2.0
    o[0, 0] = 2.0
    assert fss(f, o, 1.0, 3).item() == pytest.approx(8 / 13, abs=1e-15)


def test_hand_computed_even_window() -> None:
    # 2 x 2 window on a 2 x 2 grid; scipy places it over rows/cols (i - 1, i).
    # Forecast event at (0, 0): P_f = 1/4 everywhere. Observed event at (1, 1):
    # P_o = 1/4 only at (1, 1). FSS = 1 - (3/16) / (4/16 + 1/16) = 0.4.
    f = np.array([[1.0, 0.0], [0.0, 0.0]])
    o = np.array([[0.0, 0.0], [0.0, 1.0]])
    assert fss(f, o, 0.5, 2).item() == pytest.approx(0.4, abs=1e-15)


def test_threshold_is_inclusive() -> None:
    f = np.array([[1.0, 0.0]])
    assert fss(f, f, 1.0, 1).item() == 1.0  # value == threshold is an event for FSS (pysteps)


def test_no_events_is_nan() -> None:
    assert math.isnan(fss(np.zeros((4, 4)), np.zeros((4, 4)), 1.0, 3).item())


@pytest.mark.parametrize("scale", sorted(PYSTEPS_SYNTHETIC))
def test_pysteps_regression_synthetic(scale: int) -> None:
    f, o = synthetic()
    assert fss(f, o, 1.0, scale).item() == pytest.approx(PYSTEPS_SYNTHETIC[scale], abs=1e-12)


def test_pysteps_regression_real_radar(mch_pair: tuple[np.ndarray, np.ndarray]) -> None:
    f, o = mch_pair
    for (thr, scale), ref in PYSTEPS_MCH.items():
        assert fss(f, o, thr, scale).item() == pytest.approx(ref, abs=1e-12)


def test_batched_and_masked() -> None:
    f, o = synthetic()
    both = fss(np.stack([f, o]), np.stack([o, o]), 1.0, 4)
    assert both.shape == (2,)
    assert both[0].item() == pytest.approx(PYSTEPS_SYNTHETIC[4]) and both[1].item() == pytest.approx(1.0)
    mask = np.zeros((40, 50), bool)
    mask[:, :25] = True
    left = fss(f, o, 1.0, 4, mask=mask)
    assert left.item() == pytest.approx(fss(f * mask, o * mask, 1.0, 4).item())
    f_nan = torch.from_numpy(f).clone()
    f_nan[0, 0] = float("nan")  # a missing pixel is "no event" in its own field
    zeroed = torch.from_numpy(f).clone()
    zeroed[0, 0] = 0.0
    assert fss(f_nan, o, 1.0, 4).item() == pytest.approx(fss(zeroed, o, 1.0, 4).item())
    with pytest.raises(ValueError, match="scale"):
        fss(f, o, 1.0, 0)
