"""Trajectory scores: RMSE, spread, time means, valid time and pooled CSI against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import torch

from dacast.verify import ensemble_spread, pooled_csi, rms, rmse, time_mean_rmse, valid_time


def test_rmse_over_axes_and_all() -> None:
    a = torch.tensor([[1.0, 2.0], [3.0, 5.0]], dtype=torch.float64)
    b = torch.zeros_like(a)
    assert torch.allclose(rmse(a, b, dim=-1), torch.tensor([math.sqrt(2.5), math.sqrt(17.0)], dtype=torch.float64))
    assert float(rmse(a, b)) == math.sqrt((1 + 4 + 9 + 25) / 4)
    assert float(rms(a)) == float(rmse(a, b))


def test_ensemble_spread_is_root_mean_variance() -> None:
    ens = torch.tensor([[0.0, 1.0], [2.0, 5.0]], dtype=torch.float64)  # variances (ddof=1): 2, 8
    assert float(ensemble_spread(ens)) == math.sqrt(5.0)
    gridded = torch.stack((ens, 2 * ens), dim=1)  # (members, var, point): variances [[2, 8], [8, 32]]
    assert torch.allclose(ensemble_spread(gridded, dim=-1), torch.tensor([5.0, 20.0], dtype=torch.float64).sqrt())


def test_time_mean_rmse_skips_rows_and_propagates_nan() -> None:
    est = torch.tensor([[10.0], [1.0], [3.0]], dtype=torch.float64)
    truth = torch.zeros_like(est)
    assert time_mean_rmse(est, truth, skip=1) == 2.0
    est[2, 0] = float("nan")
    assert math.isnan(time_mean_rmse(est, truth, skip=1))


def test_valid_time_first_exceedance_and_lower_bound() -> None:
    assert valid_time(np.array([0.1, 0.4, 0.6, 0.2]), 0.5) == 1.0
    assert valid_time(np.array([0.1, 0.2]), 0.5) == 1.0  # never exceeded: n_leads * lead_time
    assert valid_time(np.array([0.1, float("nan")]), 1.0) == 1.0  # NaN counts as exceeding


def test_pooled_csi_sums_counts_before_dividing() -> None:
    tables = [
        {"hits": [1, 0], "misses": [1, 0], "false_alarms": [0, 0]},
        {"hits": [3, 0], "misses": [0, 0], "false_alarms": [1, 0]},
    ]
    csi = pooled_csi(tables)
    assert csi[0] == 4 / 6  # not the mean of 1/2 and 3/4
    assert math.isnan(csi[1])
