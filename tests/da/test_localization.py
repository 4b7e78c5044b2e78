"""Localization tapers: Gaspari-Cohn values and continuity, the cut Gaussian, settings."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dacast.da import Localization, gaspari_cohn, gaussian
from dacast.da.localization import GC_HALF_WIDTH


def _gc_reference(r: np.ndarray) -> np.ndarray:
    """Gaspari & Cohn (1999) eq. 4.10, written independently, in terms of r = d / c."""
    out = np.zeros_like(r)
    a = r <= 1
    b = (r > 1) & (r < 2)
    ra, rb = r[a], r[b]
    out[a] = -(ra**5) / 4 + ra**4 / 2 + 5 * ra**3 / 8 - 5 * ra**2 / 3 + 1
    out[b] = rb**5 / 12 - rb**4 / 2 + 5 * rb**3 / 8 + 5 * rb**2 / 3 - 5 * rb + 4 - 2 / (3 * rb)
    return out


def test_gaspari_cohn_values() -> None:
    c = 2.5
    d = torch.tensor([0.0, c, 2 * c, 2 * c + 1e-9, 3 * c, math.inf], dtype=torch.float64)
    w = gaspari_cohn(d, c)
    assert float(w[0]) == 1.0
    assert abs(float(w[1]) - 5 / 24) < 1e-12  # 0.208333...
    assert abs(float(w[2])) < 1e-12
    assert w[3:].tolist() == [0.0, 0.0, 0.0]
    r = np.linspace(0, 2.5, 2001)
    dist = torch.from_numpy(r * c)
    torch.testing.assert_close(gaspari_cohn(dist, c), torch.from_numpy(_gc_reference(r)), rtol=0, atol=1e-12)


def test_gaspari_cohn_continuous_and_monotone() -> None:
    c = 1.0
    r = torch.linspace(0, 2.2, 22001, dtype=torch.float64)
    w = gaspari_cohn(r, c)
    assert bool((w >= 0).all()) and bool((w <= 1).all())
    assert bool((w[1:] <= w[:-1] + 1e-15).all())
    assert float((w[1:] - w[:-1]).abs().max()) < 2e-4  # no jumps anywhere (slope <= ~1.6)
    eps = 1e-9
    for knot in (1.0, 2.0):
        left, right = gaspari_cohn(torch.tensor([knot - eps, knot + eps], dtype=torch.float64), c)
        assert abs(float(left - right)) < 1e-7
    # Smooth at the origin: matches exp(-d²/2L²) to second order with c = sqrt(10/3) L.
    small = torch.tensor([1e-3], dtype=torch.float64) * GC_HALF_WIDTH
    assert abs(float(gaspari_cohn(small, GC_HALF_WIDTH)) - math.exp(-0.5 * 1e-6 * GC_HALF_WIDTH**2)) < 1e-9


def test_gaussian_taper_cut_at_support() -> None:
    d = torch.tensor([0.0, 1.0, 2.0, 2.999, 3.0, 5.0, math.inf], dtype=torch.float64)
    w = gaussian(d, length=1.5, support=3.0)
    expected = torch.exp(-0.5 * (d / 1.5) ** 2)
    torch.testing.assert_close(w[:4], expected[:4], rtol=1e-15, atol=0)
    assert w[4:].tolist() == [0.0, 0.0, 0.0]


def test_localization_settings() -> None:
    loc = Localization(length=4.0)
    assert math.isclose(loc.cutoff, 2 * math.sqrt(10 / 3) * 4.0)
    d = torch.linspace(0, 20, 101, dtype=torch.float64)
    torch.testing.assert_close(loc.weights(d), gaspari_cohn(d, math.sqrt(10 / 3) * 4.0), rtol=0, atol=0)
    dapper_like = Localization(length=4.0, support=3.64 * 4.0)
    torch.testing.assert_close(dapper_like.weights(d), gaspari_cohn(d, 1.82 * 4.0), rtol=0, atol=0)
    g = Localization(length=2.0, taper="gaussian")
    torch.testing.assert_close(g.weights(d), gaussian(d, 2.0, 2 * math.sqrt(10 / 3) * 2.0), rtol=0, atol=0)
    assert float(g.weights(torch.tensor([7.31], dtype=torch.float64))) == 0.0
    inf = Localization(length=math.inf)
    assert math.isinf(inf.cutoff)
    assert inf.weights(torch.tensor([0.0, 1e6, math.inf])).tolist() == [1.0, 1.0, 0.0]


def test_min_weight_drops_small_weights() -> None:
    loc = Localization(length=2.0, min_weight=0.1)
    d = torch.linspace(0, 8, 81, dtype=torch.float64)
    raw = Localization(length=2.0).weights(d)
    w = loc.weights(d)
    keep = raw > 0.1
    assert bool(keep.any()) and bool((~keep & (raw > 0)).any())
    torch.testing.assert_close(w[keep], raw[keep], rtol=0, atol=0)
    assert bool((w[~keep] == 0).all())


@pytest.mark.parametrize(
    "kwargs",
    [
        {"length": 0.0},
        {"length": -1.0},
        {"length": 1.0, "taper": "boxcar"},
        {"length": 1.0, "support": 0.0},
        {"length": 1.0, "max_obs": 0},
    ],
)
def test_invalid_localization_raises(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Localization(**kwargs)  # type: ignore[arg-type]


def test_gaspari_cohn_support_may_only_restate_the_length() -> None:
    # DAPPER's rounding (1.82 instead of sqrt(10/3)) is within the tolerance ...
    assert Localization(length=4.0, support=3.64 * 4.0).cutoff == 3.64 * 4.0
    # ... a support that belongs to another length is an error naming both (it used to win silently).
    with pytest.raises(ValueError, match=r"length 3 and support 14\.56 disagree"):
        Localization(length=3.0, support=14.56)
    # The Gaussian taper uses length for its shape and support as a separate cut-off: both are meaningful.
    assert Localization(length=3.0, taper="gaussian", support=14.56).cutoff == 14.56


@pytest.mark.parametrize("weight", [-0.1, 1.0, float("inf")])
def test_min_weight_must_lie_in_unit_interval(weight: float) -> None:
    with pytest.raises(ValueError, match="min_weight"):
        Localization(length=2.0, min_weight=weight)
