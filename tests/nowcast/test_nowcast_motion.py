"""Motion estimation recovers known shifts of a real radar field (MeteoSwiss, 2015-05-15 16:30)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch

from dacast.nowcast import optical_flow, smooth_motion, trec

U, V = 3.0, -2.0  # 3 px east (+x), 2 px north (-y: rows go down)
U_SUB, V_SUB = 1.5, -0.75


def shifted_pair(dbr: torch.Tensor, u: float, v: float) -> torch.Tensor:
    """(2, H, W): the field and the field moved by (u, v) pixels; NaN mask moved with it."""
    x = dbr.numpy()
    filled = np.nan_to_num(x, nan=-15.0)
    order = 0 if float(u).is_integer() and float(v).is_integer() else 3
    moved = ndi.shift(filled, (v, u), order=order, mode="nearest")
    nan_moved = ndi.shift(np.isnan(x).astype(float), (v, u), order=0, mode="nearest") > 0.5
    moved[nan_moved] = np.nan
    return torch.from_numpy(np.stack([x, moved])).float()


def median_motion(field: torch.Tensor, rain: np.ndarray) -> tuple[float, float]:
    """Median (u, v) over pixels with more than 1 mm/h."""
    wet = np.nan_to_num(rain) > 1.0
    return float(np.median(field[0].numpy()[wet])), float(np.median(field[1].numpy()[wet]))


@pytest.fixture(scope="module")
def integer_pair(dbr_1630: torch.Tensor) -> torch.Tensor:
    return shifted_pair(dbr_1630, U, V)


@pytest.fixture(scope="module")
def subpixel_pair(dbr_1630: torch.Tensor) -> torch.Tensor:
    return shifted_pair(dbr_1630, U_SUB, V_SUB)


def test_trec_integer_shift(integer_pair: torch.Tensor, rain_1630: np.ndarray) -> None:
    field = trec(integer_pair)
    assert field.shape == (2, 640, 710) and field.dtype == torch.float32
    u, v = median_motion(field, rain_1630)
    assert abs(u - U) < 0.1 and abs(v - V) < 0.1
    wet = np.nan_to_num(rain_1630) > 1.0
    assert np.quantile(np.abs(field[0].numpy()[wet] - U), 0.9) < 0.25


def test_trec_subpixel_shift(subpixel_pair: torch.Tensor, rain_1630: np.ndarray) -> None:
    u, v = median_motion(trec(subpixel_pair), rain_1630)
    assert abs(u - U_SUB) < 0.5 and abs(v - V_SUB) < 0.5
    assert abs(u - U_SUB) < 0.25 and abs(v - V_SUB) < 0.25  # parabolic peak fit, not only the integer peak


def test_trec_batched_equals_single(integer_pair: torch.Tensor) -> None:
    crop = integer_pair[:, 100:300, 300:560]
    batch = torch.stack([crop, crop.flip(-1)])  # mirrored: u changes sign
    out = trec(batch, stride=16)
    assert out.shape == (2, 2, 200, 260)
    torch.testing.assert_close(out[0], trec(crop, stride=16))
    torch.testing.assert_close(out[1], trec(crop.flip(-1), stride=16))


def test_trec_pairs_are_averaged(integer_pair: torch.Tensor, rain_1630: np.ndarray) -> None:
    x = integer_pair[0].numpy()
    third = ndi.shift(np.nan_to_num(x, nan=-15.0), (2 * V, 2 * U), order=0, mode="nearest")
    frames = torch.cat([integer_pair, torch.from_numpy(third).float()[None]])[:, 150:450, 250:600]
    u, v = median_motion(trec(frames), rain_1630[150:450, 250:600])
    assert abs(u - U) < 0.1 and abs(v - V) < 0.1


def test_trec_no_structure_gives_zero_motion() -> None:
    frames = torch.full((2, 96, 96), -15.0)
    frames[:, :10, :10] = float("nan")
    out = trec(frames)
    assert torch.equal(out, torch.zeros(2, 96, 96))


def test_trec_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="T>=2"):
        trec(torch.zeros(1, 64, 64))
    with pytest.raises(ValueError, match="larger than"):
        trec(torch.zeros(2, 16, 16), block=32)


@pytest.mark.parametrize("method", ["farneback", "dis"])
def test_optical_flow_integer_shift(method: str, integer_pair: torch.Tensor, rain_1630: np.ndarray) -> None:
    field = optical_flow(integer_pair, method=method)
    assert field.shape == (2, 640, 710) and field.dtype == torch.float32
    u, v = median_motion(field, rain_1630)
    assert abs(u - U) < 0.1 and abs(v - V) < 0.1


@pytest.mark.parametrize("method", ["farneback", "dis"])
def test_optical_flow_subpixel_shift(method: str, subpixel_pair: torch.Tensor, rain_1630: np.ndarray) -> None:
    u, v = median_motion(optical_flow(subpixel_pair, method=method), rain_1630)
    assert abs(u - U_SUB) < 0.25 and abs(v - V_SUB) < 0.25


def test_optical_flow_rejects_unknown_method(integer_pair: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="dis, farneback"):
        optical_flow(integer_pair, method="lk")  # type: ignore[arg-type]


def test_smooth_motion_keeps_uniform_field_and_damps_noise() -> None:
    uniform = torch.stack([torch.full((50, 60), 2.0), torch.full((50, 60), -1.0)])
    torch.testing.assert_close(smooth_motion(uniform, 5.0), uniform)
    noise = torch.randn(2, 50, 60, generator=torch.Generator().manual_seed(0))
    smooth = smooth_motion(noise, 3.0)
    assert smooth.std() < 0.3 * noise.std()
    kept = smooth_motion(noise, 3.0, keep_magnitude=True)
    torch.testing.assert_close((kept**2).sum(0).mean(), (noise**2).sum(0).mean())
    with pytest.raises(ValueError, match="2, H, W"):
        smooth_motion(torch.zeros(3, 5, 5), 1.0)
