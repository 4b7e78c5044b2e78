"""Contingency tables and categorical scores against tables counted by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dacast.verify import Contingency, contingency, csi, far, frequency_bias, pod

# threshold 1: events are value > 1 (pysteps det_cat_fct); the 1.0 entries are not events
FORECAST = np.array([[0.0, 2.0, 3.0], [0.5, 1.0, 6.0]])
OBSERVED = np.array([[1.5, 2.0, 0.0], [0.0, 1.0, 7.0]])
# hits: (0,1), (1,2); misses: (0,0); false alarms: (0,2); correct negatives: (1,0), (1,1)


def test_hand_counted_table() -> None:
    t = contingency(FORECAST, OBSERVED, 1.0)
    assert (t.hits.item(), t.misses.item(), t.false_alarms.item(), t.correct_negatives.item()) == (2, 1, 1, 2)
    assert t.total.item() == 6
    assert csi(t).item() == pytest.approx(2 / 4)
    assert pod(t).item() == pytest.approx(2 / 3)
    assert far(t).item() == pytest.approx(1 / 3)
    assert frequency_bias(t).item() == pytest.approx(1.0)


def test_threshold_is_strict() -> None:
    t = contingency(np.array([[1.0]]), np.array([[1.0]]), 1.0)
    assert t.correct_negatives.item() == 1 and t.hits.item() == 0
    t = contingency(np.array([[1.0 + 1e-9]]), np.array([[1.0]]), 1.0)
    assert t.false_alarms.item() == 1


def test_nan_and_mask_are_left_out() -> None:
    f = FORECAST.copy()
    f[0, 0] = np.nan  # the miss disappears
    t = contingency(f, OBSERVED, 1.0)
    assert (t.hits.item(), t.misses.item(), t.false_alarms.item(), t.correct_negatives.item()) == (2, 0, 1, 2)
    mask = np.ones((2, 3), bool)
    mask[0, 2] = False  # the false alarm disappears
    t = contingency(FORECAST, OBSERVED, 1.0, mask=mask)
    assert (t.hits.item(), t.misses.item(), t.false_alarms.item(), t.correct_negatives.item()) == (2, 1, 0, 2)


def test_leading_axes_are_kept_and_tables_add() -> None:
    f = torch.from_numpy(np.stack([FORECAST, OBSERVED]))
    o = torch.from_numpy(np.stack([OBSERVED, OBSERVED]))
    t = contingency(f, o, 1.0)
    assert t.hits.shape == (2,)
    assert t.hits.tolist() == [2, 3] and t.correct_negatives.tolist() == [2, 3]
    total = contingency(FORECAST, OBSERVED, 1.0) + contingency(OBSERVED, OBSERVED, 1.0)
    assert csi(total).item() == pytest.approx(5 / 7)


def test_undefined_scores_are_nan() -> None:
    t = contingency(np.zeros((2, 2)), np.zeros((2, 2)), 1.0)
    assert math.isnan(csi(t).item()) and math.isnan(pod(t).item()) and math.isnan(far(t).item())
    assert math.isnan(frequency_bias(t).item())
    z = torch.zeros(())
    assert pod(Contingency(hits=z, misses=z + 1, false_alarms=z, correct_negatives=z)).item() == 0.0


def test_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        contingency(np.zeros((2, 2)), np.zeros((2, 3)), 1.0)
