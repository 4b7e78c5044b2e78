"""Semi-Lagrangian extrapolation moves fields exactly as the motion says; persistence repeats."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dacast.nowcast import displacements, extrapolate, persistence


def uniform(u: float, v: float, h: int, w: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.stack([torch.full((h, w), u, dtype=dtype), torch.full((h, w), v, dtype=dtype)])


def test_integer_shift_of_real_field_is_exact(rain_1630: np.ndarray) -> None:
    r = torch.from_numpy(rain_1630)  # float64, NaN outside the radar coverage
    u, v = 3, -2
    out = extrapolate(r, uniform(u, v, *r.shape), 12)
    assert out.shape == (12, 640, 710) and out.dtype == torch.float64
    for n in (1, 6, 12):
        # lead n: value at (y, x) comes from (y - n v, x - n u) = (y + 2n, x - 3n)
        expected = torch.full_like(r, float("nan"))
        expected[: -2 * n, 3 * n :] = r[2 * n :, : -3 * n]
        got = out[n - 1]
        assert torch.equal(torch.isnan(got), torch.isnan(expected))
        torch.testing.assert_close(got.nan_to_num(), expected.nan_to_num(), rtol=0, atol=1e-6)


def test_inflow_boundary_is_nan() -> None:
    out = extrapolate(torch.ones(20, 30, dtype=torch.float64), uniform(2.0, 1.0, 20, 30), 3)
    for n in (1, 2, 3):
        assert torch.isnan(out[n - 1, :, : 2 * n]).all() and torch.isnan(out[n - 1, :n, :]).all()
        assert (out[n - 1, n:, 2 * n :] == 1.0).all()


def test_subpixel_shift_of_linear_field_is_exact() -> None:
    h, w = 40, 50
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    field = 0.3 * xx - 0.7 * yy + 2.0  # bilinear interpolation is exact on linear fields
    u, v = 0.4, -0.25
    out = extrapolate(field, uniform(u, v, h, w), 5)
    for n in range(1, 6):
        expected = 0.3 * (xx - n * u) - 0.7 * (yy - n * v) + 2.0
        inner = (slice(5, -5), slice(5, -5))
        torch.testing.assert_close(out[n - 1][inner], expected[inner], rtol=0, atol=1e-10)


def test_zero_motion_returns_the_frame() -> None:
    frame = torch.rand(17, 23, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    out = extrapolate(frame, torch.zeros(2, 17, 23, dtype=torch.float64), 4)
    torch.testing.assert_close(out, frame.expand(4, 17, 23), rtol=0, atol=1e-12)


def test_missing_pixels_move_with_the_flow() -> None:
    frame = torch.ones(20, 20, dtype=torch.float64)
    frame[10, 10] = float("nan")
    out = extrapolate(frame, uniform(1.0, 0.0, 20, 20), 2)
    assert torch.isnan(out[1, 10, 12]) and torch.isnan(out[1]).sum() == 1 + 2 * 20  # + inflow columns
    # at a sub-pixel shift the valid neighbours are re-weighted: the gap goes where most of its weight goes
    part = extrapolate(frame, uniform(0.3, 0.0, 20, 20), 1)[0]
    assert torch.isnan(part[10, 10]) and part[10, 11] == 1.0 and part[10, 9] == 1.0
    assert torch.isnan(part).sum() == 1 + 20


def test_batch_axis_and_shared_motion() -> None:
    g = torch.Generator().manual_seed(2)
    frames = torch.rand(3, 24, 32, dtype=torch.float64, generator=g)
    motions = torch.randn(3, 2, 24, 32, dtype=torch.float64, generator=g)
    out = extrapolate(frames, motions, 4)
    assert out.shape == (3, 4, 24, 32)
    for b in range(3):
        torch.testing.assert_close(out[b], extrapolate(frames[b], motions[b], 4), equal_nan=True)
    shared = extrapolate(frames, motions[0], 2)
    torch.testing.assert_close(shared[1], extrapolate(frames[1], motions[0], 2), equal_nan=True)


def test_displacement_of_rotation_follows_the_circle() -> None:
    # solid-body rotation about the centre: backward trajectories stay on their circle
    h = w = 101
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    omega = 2 * np.pi / 200  # rad per step
    motion = torch.stack([-omega * (yy - 50), omega * (xx - 50)])[None]
    disp = displacements(motion, 20, substeps=4)[0, -1]
    r0 = torch.hypot(xx - 50, yy - 50)
    r1 = torch.hypot(xx + disp[0] - 50, yy + disp[1] - 50)
    inner = r0 < 30
    assert (r1 - r0)[inner].abs().max() < 0.05
    angle = torch.atan2((yy + disp[1] - 50)[inner], (xx + disp[0] - 50)[inner])
    expected = torch.atan2((yy - 50)[inner], (xx - 50)[inner]) - 20 * omega
    diff = torch.remainder(angle - expected + np.pi, 2 * np.pi) - np.pi
    assert diff[r0[inner] > 5].abs().max() < 0.01


def test_matches_pysteps_semilagrangian() -> None:
    sl = pytest.importorskip("pysteps.extrapolation.semilagrangian")
    g = np.random.default_rng(3)
    h, w = 48, 64
    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    field = np.sin(xx / 5.0) * np.cos(yy / 7.0) + g.normal(0, 0.05, (h, w))
    motion = np.stack([1.5 + 0.5 * np.sin(yy / 10.0), -0.8 + 0.4 * np.cos(xx / 12.0)])
    ref = sl.extrapolate(field, motion, 6, n_iter=1)
    ours = extrapolate(torch.from_numpy(field), torch.from_numpy(motion), 6).numpy()
    ok = np.isfinite(ref) & np.isfinite(ours)
    assert (np.isnan(ref) != np.isnan(ours)).sum() <= 2  # stencils touching the edge, up to rounding
    assert ok[:, 20:-20, 20:-20].all()
    np.testing.assert_allclose(ours[ok], ref[ok], rtol=0, atol=1e-10)


def test_float32_on_cpu() -> None:
    out = extrapolate(torch.ones(10, 12), torch.zeros(2, 10, 12), 2)
    assert out.dtype == torch.float32 and torch.equal(out, torch.ones(2, 10, 12))


def test_persistence() -> None:
    frame = torch.arange(12.0).view(3, 4)
    out = persistence(frame, 5)
    assert out.shape == (5, 3, 4) and torch.equal(out[3], frame)
    out[0, 0, 0] = -1.0
    assert frame[0, 0] == 0.0  # a copy, not a view
    assert persistence(torch.zeros(2, 3, 4), 6).shape == (2, 6, 3, 4)


def test_bad_shapes() -> None:
    with pytest.raises(ValueError, match="motion must have shape"):
        extrapolate(torch.zeros(10, 10), torch.zeros(2, 10, 11), 1)
    with pytest.raises(ValueError, match="frame must have shape"):
        extrapolate(torch.zeros(10), torch.zeros(2, 10, 10), 1)
    with pytest.raises(ValueError, match="substeps"):
        extrapolate(torch.zeros(10, 10), torch.zeros(2, 10, 10), 1, substeps=0)
