"""Live verification: the running CSI and FSS equal `dacast.verify` on the same pairs; issues expire; checkpoints."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import torch
from PIL import Image

from dacast.verify import contingency, csi, fss
from dacast.workflow.realtime.verification import Verifier, skill_png

T0 = datetime(2026, 7, 1, 0, 0, 30, tzinfo=UTC)
SHAPE = (16, 20)
LEADS = [0.0, 1.0, 2.0]
SCALE = 3


def minutes(m: float) -> datetime:
    return T0 + timedelta(minutes=m)


def block(rows: slice, cols: slice, *, nan_rows: slice | None = None) -> np.ndarray:
    """A 0/1 float field ``SHAPE`` with ones in ``rows x cols`` and NaN (not observed) in ``nan_rows``."""
    field = np.zeros(SHAPE)
    field[rows, cols] = 1.0
    if nan_rows is not None:
        field[nan_rows] = np.nan
    return field


def random_binary(rng: np.random.Generator, p: float = 0.3) -> np.ndarray:
    return (rng.random(SHAPE) < p).astype(np.float64)


def direct_scores(forecast: np.ndarray, observed: np.ndarray) -> tuple[float, float]:
    """CSI and FSS of one pair by `dacast.verify` (pixels not observed in ``observed`` left out)."""
    valid = ~np.isnan(observed)
    table = contingency(forecast, observed, 0.5)
    return float(csi(table)), float(fss(forecast, observed, 0.5, SCALE, mask=valid))


def test_one_issue_one_observation_equals_dacast_verify() -> None:
    rng = np.random.default_rng(0)
    frames = np.stack([random_binary(rng) for _ in LEADS])
    at_issue = random_binary(rng)
    at_issue[:, :3] = np.nan
    observed = random_binary(rng)
    observed[-4:] = np.nan
    verifier = Verifier(shape=SHAPE, lead_minutes=LEADS, scale=SCALE)
    verifier.add_issue(T0, frames > 0.5, at_issue)
    assert verifier.observe(minutes(1.0), observed) == 1
    scores = verifier.scores()
    want_csi, want_fss = direct_scores(frames[1], observed)
    assert 0.0 < want_csi < 1.0 and 0.0 < want_fss < 1.0
    assert scores["csi"]["forecast"][1] == pytest.approx(want_csi, rel=1e-12)
    assert scores["fss"]["forecast"][1] == pytest.approx(want_fss, rel=1e-6)
    assert scores["csi"]["forecast"][0] is None and scores["csi"]["forecast"][2] is None
    assert scores["fss"]["forecast"][0] is None and scores["fss"]["forecast"][2] is None
    assert scores["pairs"] == [0, 1, 0] and scores["lead_minutes"] == LEADS
    # persistence: the observation at the issue time, scored where both were observed
    both = np.where(np.isnan(at_issue), np.nan, observed)
    p_csi, p_fss = direct_scores(np.where(np.isnan(observed), np.nan, at_issue), both)
    assert scores["csi"]["persistence"][1] == pytest.approx(p_csi, rel=1e-12)
    assert scores["fss"]["persistence"][1] == pytest.approx(p_fss, rel=1e-6)
    assert p_csi != pytest.approx(want_csi)


def test_unobserved_pixels_are_left_out_of_the_counts() -> None:
    observed = block(slice(2, 6), slice(2, 6), nan_rows=slice(10, 16))
    forecast = block(slice(3, 7), slice(2, 6))
    forecast[11:15, 8:13] = 1.0  # forecast events where nothing was observed: neither hits nor false alarms
    verifier = Verifier(shape=SHAPE, lead_minutes=LEADS, scale=SCALE)
    verifier.add_issue(T0, np.stack([forecast] * 3) > 0.5, None)
    verifier.observe(minutes(2.0), observed)
    totals = verifier.totals
    # rows 3-5 hit (3 x 4), row 2 missed (4), row 6 a false alarm (4)
    assert (totals["forecast_hits"][2], totals["forecast_misses"][2], totals["forecast_false_alarms"][2]) == (12, 4, 4)
    scores = verifier.scores()
    assert scores["csi"]["forecast"][2] == pytest.approx(12 / 20, rel=1e-12)
    assert scores["csi"]["forecast"][2] == pytest.approx(direct_scores(forecast, observed)[0], rel=1e-12)
    assert scores["fss"]["forecast"][2] == pytest.approx(direct_scores(forecast, observed)[1], rel=1e-6)
    # without the hidden rows the pair scores the same
    assert scores["fss"]["forecast"][2] == pytest.approx(direct_scores(block(slice(3, 7), slice(2, 6)), observed)[1])
    # no observation at the issue time: no persistence forecast
    assert scores["csi"]["persistence"] == [None, None, None] and scores["fss"]["persistence"] == [None, None, None]


def test_a_perfect_forecast_scores_one() -> None:
    rng = np.random.default_rng(1)
    observed = [random_binary(rng) for _ in LEADS]
    verifier = Verifier(shape=SHAPE, lead_minutes=LEADS, scale=SCALE)
    verifier.add_issue(T0, np.stack(observed) > 0.5, observed[0])
    for lead, field in zip(LEADS, observed, strict=True):
        verifier.observe(minutes(lead), field)
    scores = verifier.scores()
    assert scores["csi"]["forecast"] == [None, 1.0, 1.0] and scores["fss"]["forecast"] == [None, 1.0, 1.0]
    assert scores["pairs"] == [0, 1, 1]
    assert all(0.0 <= s < 1.0 for s in scores["csi"]["persistence"][1:])


def test_persistence_uses_the_observation_at_the_issue_time() -> None:
    # the rain stays put: persistence is perfect, a forecast that moves it is not
    rain = block(slice(4, 9), slice(4, 9))
    moved = block(slice(4, 9), slice(10, 15))
    verifier = Verifier(shape=SHAPE, lead_minutes=LEADS, scale=SCALE)
    verifier.add_issue(T0, np.stack([rain, moved, moved]) > 0.5, rain)
    verifier.observe(minutes(1.0), rain)
    scores = verifier.scores()
    assert scores["csi"]["persistence"][1] == 1.0 and scores["fss"]["persistence"][1] == 1.0
    assert scores["csi"]["forecast"][1] == 0.0
    assert scores["fss"]["forecast"][1] == pytest.approx(direct_scores(moved, rain)[1], rel=1e-6)


def test_scores_are_pooled_over_issues() -> None:
    rng = np.random.default_rng(2)
    fields = {m: random_binary(rng) for m in (0.0, 1.0, 2.0, 3.0)}
    frames = {m: np.stack([random_binary(rng) for _ in LEADS]) for m in (0.0, 1.0)}
    verifier = Verifier(shape=SHAPE, lead_minutes=LEADS, scale=SCALE)
    verifier.add_issue(minutes(0.0), frames[0.0] > 0.5, fields[0.0])
    verifier.observe(minutes(1.0), fields[1.0])
    verifier.add_issue(minutes(1.0), frames[1.0] > 0.5, fields[1.0])
    assert verifier.observe(minutes(2.0), fields[2.0]) == 2
    assert verifier.observe(minutes(3.0), fields[3.0]) == 1
    pairs = [(frames[0.0][1], fields[1.0]), (frames[1.0][1], fields[2.0])]  # the two lead-1 pairs
    table = contingency(np.stack([f for f, _ in pairs]), np.stack([o for _, o in pairs]), 0.5)
    pooled = float(table.hits.sum() / (table.hits.sum() + table.misses.sum() + table.false_alarms.sum()))
    scores = verifier.scores()
    assert scores["pairs"] == [0, 2, 2]
    assert scores["csi"]["forecast"][1] == pytest.approx(pooled, rel=1e-12)


def test_issues_past_their_last_lead_are_dropped() -> None:
    verifier = Verifier(shape=SHAPE, lead_minutes=LEADS, scale=SCALE)
    frames = np.ones((3, *SHAPE), bool)
    verifier.add_issue(T0, frames, None)
    verifier.add_issue(minutes(1.0), frames, None)
    assert verifier.observe(minutes(2.0), np.ones(SHAPE)) == 2  # the last lead of the first issue: still scored
    assert [i.time for i in verifier.issues] == [T0, minutes(1.0)]
    assert verifier.observe(minutes(2.5), np.ones(SHAPE)) == 0
    assert [i.time for i in verifier.issues] == [minutes(1.0)]
    assert verifier.observe(minutes(10.0), np.ones(SHAPE)) == 0
    assert verifier.issues == []
    assert verifier.scores()["pairs"] == [0, 1, 1]


def test_times_that_match_no_frame_are_not_scored() -> None:
    verifier = Verifier(shape=SHAPE, lead_minutes=LEADS, scale=SCALE)
    verifier.add_issue(T0, np.ones((3, *SHAPE), bool), np.ones(SHAPE))
    assert verifier.observe(T0, np.ones(SHAPE)) == 0  # lead 0: the analysis itself
    assert verifier.observe(minutes(0.5), np.ones(SHAPE)) == 0
    assert verifier.observe(minutes(1.25), np.ones(SHAPE)) == 0
    assert verifier.observe(minutes(-1.0), np.ones(SHAPE)) == 0
    assert len(verifier.issues) == 1
    assert all(not v.any() for v in verifier.totals.values())
    assert verifier.observe(minutes(1.0), np.ones(SHAPE)) == 1


def test_fractional_minute_leads_are_matched_in_whole_seconds() -> None:
    """Leads of 0.1 min (6 s) built by multiplication are not exact floats; they must still be scored."""
    leads = [i * 0.1 for i in range(4)]  # 0.30000000000000004 for i = 3
    verifier = Verifier(shape=SHAPE, lead_minutes=leads, scale=SCALE)
    verifier.add_issue(T0, np.ones((4, *SHAPE), bool), np.ones(SHAPE))
    assert verifier.observe(T0 + timedelta(seconds=18), np.ones(SHAPE)) == 1


def test_a_state_of_other_settings_is_refused() -> None:
    verifier = Verifier(shape=SHAPE, lead_minutes=LEADS, scale=SCALE)
    with pytest.raises(ValueError, match="other settings"):
        Verifier(shape=SHAPE, lead_minutes=[0.0, 5.0], scale=SCALE).load_state_dict(verifier.state_dict())
    with pytest.raises(ValueError, match="shape"):
        verifier.add_issue(T0, np.ones((2, *SHAPE), bool), None)


def test_state_dict_round_trip_through_a_weights_only_checkpoint() -> None:
    rng = np.random.default_rng(3)
    verifier = Verifier(shape=SHAPE, lead_minutes=LEADS, scale=SCALE)
    verifier.add_issue(T0, np.stack([random_binary(rng) for _ in LEADS]) > 0.5, random_binary(rng))
    verifier.observe(minutes(1.0), random_binary(rng))
    verifier.add_issue(minutes(1.0), np.stack([random_binary(rng) for _ in LEADS]) > 0.5, None)
    buffer = io.BytesIO()
    torch.save(verifier.state_dict(), buffer)
    buffer.seek(0)
    restored = Verifier(shape=SHAPE, lead_minutes=LEADS, scale=SCALE)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert restored.scores() == verifier.scores()
    assert [i.time for i in restored.issues] == [T0, minutes(1.0)]
    # the kept issues came back too: the next observation scores both alike
    later = random_binary(rng)
    assert restored.observe(minutes(2.0), later) == verifier.observe(minutes(2.0), later) == 2
    assert restored.scores() == verifier.scores()
    assert restored.scores()["pairs"] == [0, 2, 1]


def test_skill_png_is_a_png() -> None:
    verifier = Verifier(shape=SHAPE, lead_minutes=LEADS, scale=SCALE)
    verifier.add_issue(T0, np.ones((3, *SHAPE), bool), np.ones(SHAPE))
    verifier.observe(minutes(1.0), block(slice(0, 8), slice(0, 20)))
    for scores in (Verifier(shape=SHAPE, lead_minutes=LEADS, scale=SCALE).scores(), verifier.scores()):
        png = skill_png(scores, title="live skill at 30 dBZ")
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        with Image.open(io.BytesIO(png)) as image:
            assert image.format == "PNG" and image.size[0] > image.size[1] > 100
