"""Rain-rate sequences of the convective-scale twin, dihedral augmentations and the quality mask."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from dacast.io.convert import from_dbz
from dacast.models import TriggeredWurschCraig, WurschCraig, WurschCraigConfig, advance
from dacast.obs.radar import RadarConfig
from dacast.workflow.bda.config import MODEL_DEFAULTS, BDAConfig
from dacast.workflow.bda.forecast import Seeds, initial_truth, state_dbz
from dacast.workflow.nowcast.twin_rain import (
    DIHEDRAL,
    TwinRainConfig,
    all_augmentations,
    augment,
    invert_augment,
    model_rain_rate,
    quality_mask,
    twin_coverage,
    twin_rain_sequence,
)

# 24 x 24 cells of 500 m, 20 min spin-up, 6 frames of 5 min: 270 model steps, ~0.2 s on one thread.
CFG = TwinRainConfig(grid=24, frames=6, spinup_minutes=20.0, seed=0)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny grids: one torch thread is far faster than several on a shared CPU."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def seq() -> np.ndarray:
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return twin_rain_sequence(CFG)
    finally:
        torch.set_num_threads(old)


# ---------------------------------------------------------------------------------------------- sequences


def test_shape_dtype_and_units(seq: np.ndarray) -> None:
    assert seq.shape == (6, 24, 24) and seq.dtype == np.float32
    assert np.isfinite(seq).all() and (seq >= 0).all()
    wet = seq > 0
    # after the spin-up every frame has convective rain, and clear air is exactly 0 mm/h
    assert (wet.mean(axis=(1, 2)) > 0.1).all()
    assert (seq.max(axis=(1, 2)) > 2.0).all() and seq.max() > 5.0
    assert (~wet).mean() > 0.1
    # every echo is above the no-echo threshold: 10 dBZ is (10 / 200)^(1/1.6) = 0.154 mm/h (Marshall-Palmer)
    assert CFG.min_rain_rate == pytest.approx((10.0 / 200.0) ** (1 / 1.6))
    assert seq[wet].min() > CFG.min_rain_rate and seq.max() < 200.0


def test_model_rain_rate_follows_radar_power_law_and_marshall_palmer() -> None:
    # docs/bda_model.md: r = 5e-4 -> 1 g m^-3 -> Z = 2.53e4 mm^6 m^-3 (44 dBZ); Z = 200 R^1.6 -> R = 20.6 mm/h
    rain = torch.tensor([0.0, 4e-6, 5e-4], dtype=torch.float64)
    rate = model_rain_rate(rain, CFG)
    assert rate.dtype == torch.float64 and rate[0] == 0 and rate[1] == 0  # 4e-6 is 5.4 dBZ: clear air at 10 dBZ
    assert rate[2].item() == pytest.approx((2.53e4 / 200.0) ** (1 / 1.6), rel=1e-9)
    assert rate[2].item() == pytest.approx(20.6, abs=0.05)
    other = dataclasses.replace(CFG, zr_a=300.0, zr_b=1.4, no_echo_dbz=0.0)
    rate = model_rain_rate(rain, other)
    assert rate[0] == 0  # no rain is the 0-dBZ floor: clear air
    z = 2.53e4 * (2e3 * 4e-6) ** 1.84  # rho q_r = 2 kg m^-3 per unit r, in g m^-3
    assert rate[1].item() == pytest.approx((z / 300.0) ** (1 / 1.4), rel=1e-9)
    assert rate[2].item() == pytest.approx((2.53e4 / 300.0) ** (1 / 1.4), rel=1e-9)


def test_frames_are_the_bda_twins_truth(seq: np.ndarray) -> None:
    bda = BDAConfig(members=2, ensemble_pool=1, grid=24, spinup_minutes=20.0, seed=0)
    assert TwinRainConfig.from_bda(bda, frames=6) == CFG
    model = WurschCraig(bda.model)
    truth = initial_truth(bda, model, torch.device("cpu"))
    expected0 = from_dbz(state_dbz(bda, truth[0]), 200.0, 1.6, zero_dbz=bda.radar.clear_air_dbz)
    np.testing.assert_array_equal(seq[0], expected0.numpy())
    # ten 30-s cycles of the twin's truth (as RadarTwin advances it) are frame 1
    stepper = TriggeredWurschCraig(model, seed=Seeds.of(bda.seed).truth)
    dt, n = bda.model.dt, bda.steps_per_cycle
    for c in range(10):
        truth = advance(stepper, truth, n, dt, t0=c * n * dt)
    expected1 = from_dbz(state_dbz(bda, truth[0]), 200.0, 1.6, zero_dbz=bda.radar.clear_air_dbz)
    np.testing.assert_array_equal(seq[1], expected1.numpy())
    assert not np.array_equal(seq[0], seq[1])


def test_default_model_is_the_bda_twins() -> None:
    assert TwinRainConfig().model == dataclasses.replace(BDAConfig(grid=128).model, ny=128, nx=128)


def test_same_seed_same_sequence_other_seed_independent(seq: np.ndarray) -> None:
    np.testing.assert_array_equal(twin_rain_sequence(CFG), seq)
    other = twin_rain_sequence(dataclasses.replace(CFG, seed=1))
    assert other.shape == seq.shape and (other > 0).mean() > 0.1
    # independent runs: rain and clear air disagree in a large share of the pixels, in every frame
    disagree = ((other > 0) != (seq > 0)).mean(axis=(1, 2))
    assert (disagree > 0.15).all(), disagree


def test_frame_spacing_is_honoured(seq: np.ndarray) -> None:
    assert CFG.frame_steps == 30 and CFG.spinup_steps == 120  # 5 min and 20 min of 10-s steps
    finer = TwinRainConfig(grid=24, model=WurschCraigConfig(dt=5.0, **MODEL_DEFAULTS))
    assert finer.frame_steps == 60 and finer.spinup_steps == 720
    # 10-minute frames are every second 5-minute frame (the noise depends on the global step only)
    coarse = twin_rain_sequence(dataclasses.replace(CFG, frame_minutes=10.0, frames=3))
    np.testing.assert_array_equal(coarse, seq[::2])
    assert not np.array_equal(coarse, seq[:3])


def test_model_is_run_spinup_then_one_forecast_per_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[float, int]] = []
    forecast = WurschCraig.forecast

    def spy(self: WurschCraig, x: torch.Tensor, seconds: float, **kw: object) -> torch.Tensor:
        calls.append((seconds, kw["start_step"]))  # type: ignore[arg-type]
        return forecast(self, x, seconds, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(WurschCraig, "forecast", spy)
    twin_rain_sequence(TwinRainConfig(grid=16, frames=4, frame_minutes=2.5, spinup_minutes=5.0))
    assert calls == [(300.0, -30), (150.0, 0), (150.0, 15), (150.0, 30)]


def test_no_spinup_starts_dry_and_progress_bar_changes_nothing() -> None:
    cfg = TwinRainConfig(grid=16, frames=3, spinup_minutes=0.0, seed=3)
    quiet = twin_rain_sequence(cfg)
    assert (quiet[0] == 0).all()  # the rest state has no rain
    np.testing.assert_array_equal(twin_rain_sequence(cfg, progress=True), quiet)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"grid": 4}, "grid must be at least 8"),
        ({"grid": 16.0}, "grid must be an integer"),
        ({"frames": 0}, "frames must be at least 1"),
        ({"frame_minutes": 0.0}, "frame_minutes must be positive"),
        ({"frame_minutes": float("nan")}, "frame_minutes must be a finite number"),
        ({"frame_minutes": 0.25}, r"frame_minutes \(0.25 min\) must be a whole number of model steps"),
        ({"spinup_minutes": -1.0}, "spinup_minutes must be >= 0"),
        ({"spinup_minutes": 0.1}, "spinup_minutes .* whole number of model steps"),
        ({"seed": -1}, "seed must be >= 0"),
        ({"zr_a": 0.0}, "Z-R coefficients must be positive"),
        ({"zr_b": -1.6}, "Z-R coefficients must be positive"),
        ({"no_echo_dbz": -5.0}, r"no_echo_dbz \(-5\) must be >= radar.floor_dbz"),
        ({"radar": RadarConfig(floor_dbz=20.0)}, "must be >= radar.floor_dbz"),
        ({"model": WurschCraigConfig(dt=30.0)}, "gravity waves"),
        ({"model": WurschCraigConfig(dx=100.0)}, "gravity waves"),
        ({"model": WurschCraigConfig(background_u=80.0, dt=10.0)}, "rain advection"),
    ],
)
def test_bad_configs_raise(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TwinRainConfig(**{"grid": 16, **kwargs})


def test_from_bda_rejects_unknown_fields() -> None:
    with pytest.raises(ValueError, match="unknown TwinRainConfig fields"):
        TwinRainConfig.from_bda(BDAConfig(grid=16), frame=3)


# ---------------------------------------------------------------------------------------------- augmentations


def _field(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).gamma(0.5, 2.0, size=shape).astype(np.float32)


def test_eight_distinct_variants_of_an_asymmetric_field() -> None:
    a = _field((3, 5, 5))
    variants = list(all_augmentations(a))
    assert len(variants) == 8 == len(DIHEDRAL)
    np.testing.assert_array_equal(variants[0], a)
    for i in range(8):
        assert variants[i].shape == a.shape and variants[i].dtype == a.dtype
        np.testing.assert_array_equal(np.sort(variants[i], axis=None), np.sort(a, axis=None))  # same values
        for j in range(i):
            assert not np.array_equal(variants[i], variants[j]), (DIHEDRAL[i], DIHEDRAL[j])
    # a field with the square's symmetry has one variant only
    sym = np.add.outer(np.arange(5.0) ** 2, np.arange(5.0) ** 2)[None]
    sym = sym + sym[..., ::-1, ::-1] + sym[..., ::-1, :] + sym[..., :, ::-1]
    assert all(np.array_equal(v, sym) for v in all_augmentations(sym))


def test_inverse_recovers_the_input_and_arrays_are_torch_ready() -> None:
    a = _field((3, 4, 6), seed=1)  # not square: odd turns swap y and x
    for k, flip in [*DIHEDRAL, (5, True), (-1, False)]:
        b = augment(a, k, flip)
        assert b.shape == ((3, 6, 4) if k % 2 else (3, 4, 6))
        assert b.flags.c_contiguous and torch.from_numpy(b).shape == b.shape
        np.testing.assert_array_equal(invert_augment(b, k, flip), a)
    np.testing.assert_array_equal(augment(a, 5, False), augment(a, 1, False))
    np.testing.assert_array_equal(augment(a, -1, True), augment(a, 3, True))
    np.testing.assert_array_equal(a, _field((3, 4, 6), seed=1))  # input untouched


def test_rotation_turns_a_shift_in_x_into_a_shift_in_y() -> None:
    f = _field((6, 6), seed=2)
    shifted = np.roll(f, 1, axis=-1)  # one pixel towards +x
    turned = augment(shifted, 1, False)
    np.testing.assert_array_equal(turned, np.roll(augment(f, 1, False), -1, axis=-2))
    assert not np.array_equal(turned, augment(f, 1, False))


@pytest.mark.parametrize(("k", "flip"), DIHEDRAL)
def test_motion_turns_with_the_field(k: int, flip: bool) -> None:
    # pure advection by (dy, dx) = (0, 1) pixel per frame stays pure advection, with the motion transformed:
    # the mirror takes (dy, dx) to (dy, -dx), each quarter turn to (-dx, dy) (augment's docstring)
    f = _field((6, 6), seed=3)
    seq = np.stack([np.roll(f, t, axis=-1) for t in range(4)])
    dy, dx = (0, -1) if flip else (0, 1)
    for _ in range(k):
        dy, dx = -dx, dy
    out = augment(seq, k, flip)
    for t in range(4):
        np.testing.assert_array_equal(out[t], np.roll(out[0], (dy * t, dx * t), axis=(0, 1)))
    assert not np.array_equal(out[1], out[0])


@pytest.mark.parametrize(
    ("args", "match"),
    [((np.zeros(3), 1, False), "at least the axes"), ((np.zeros((2, 2)), 1.5, False), "k must be an integer")],
)
def test_augment_rejects_bad_input(args: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        augment(*args)
    with pytest.raises(ValueError, match="flip must be a bool"):
        invert_augment(np.zeros((2, 2)), 1, "yes")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- quality mask


def test_quality_mask_marks_missing_negative_implausible_and_uncovered_pixels() -> None:
    rain = np.ones((2, 3, 4), dtype=np.float32)
    rain[0, 0, 0] = np.nan
    rain[1, 2, 3] = -1.0
    rain[1, 0, 1] = 500.0
    coverage = np.ones((3, 4), dtype=bool)
    coverage[:, 2] = False
    expected = np.ones_like(rain)
    expected[0, 0, 0] = expected[1, 2, 3] = 0.0
    expected[:, :, 2] = 0.0
    mask = quality_mask(rain, coverage)
    assert mask.dtype == np.float32 and mask.shape == rain.shape
    np.testing.assert_array_equal(mask, expected)
    expected[1, 0, 1] = 0.0
    np.testing.assert_array_equal(quality_mask(rain, coverage.astype(float), max_rain=300.0), expected)
    np.testing.assert_array_equal(quality_mask(rain[:, :, :2]), np.isfinite(rain[:, :, :2]) & (rain[:, :, :2] >= 0))
    per_frame = np.stack([coverage, np.ones_like(coverage)])
    assert quality_mask(rain, per_frame)[1, :, 2].all() and not quality_mask(rain, per_frame)[0, :, 2].any()
    with pytest.raises(ValueError, match="coverage must have shape"):
        quality_mask(rain, coverage.T)
    with pytest.raises(ValueError, match=r"sequence must be \(time, y, x\)"):
        quality_mask(rain[0])
    with pytest.raises(ValueError, match="max_rain must be positive"):
        quality_mask(rain, max_rain=0.0)


def test_twin_coverage_has_the_radars_gaps(seq: np.ndarray) -> None:
    cov = twin_coverage(CFG)
    assert cov.shape == (24, 24) and cov.dtype == bool
    assert not cov[12, 12]  # the site (closer than min_range)
    assert not cov[18, 17]  # azimuth 40 degrees: the blocked sector 30-45
    assert cov[6, 6] and cov.mean() > 0.9
    mask = quality_mask(seq, cov)
    np.testing.assert_array_equal(mask, np.broadcast_to(cov, seq.shape).astype(np.float32))
