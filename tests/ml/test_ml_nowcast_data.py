"""Random-crop datasets and the split by time."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

from dacast.ml import NowcastDataConfig, RainCropDataset, moving_blobs, rain_to_log, split_by_time

CFG = NowcastDataConfig(t_in=3, t_out=2, crop_size=16, samples_per_epoch=8, min_rain_fraction=0.2)


def test_item_shapes_mask_and_log_transform() -> None:
    rain = moving_blobs(12, 32, 40, seed=1)
    rain[:, :4, :] = np.nan
    ds = RainCropDataset(rain, CFG, seed=0)
    assert len(ds) == 8
    item = ds[3]
    assert item["past"].shape == item["past_mask"].shape == (3, 1, 16, 16)
    assert item["future"].shape == item["future_mask"].shape == (2, 1, 16, 16)
    assert torch.isfinite(item["past"]).all() and (item["past"] >= 0).all()
    k, t0, y0, x0 = item["origin"].tolist()
    window = torch.from_numpy(rain[t0 : t0 + 5, y0 : y0 + 16, x0 : x0 + 16])
    valid = ~torch.isnan(window)
    torch.testing.assert_close(torch.cat([item["past_mask"], item["future_mask"]])[:, 0], valid.float())
    expected = rain_to_log(torch.nan_to_num(window, nan=0.0))
    torch.testing.assert_close(torch.cat([item["past"], item["future"]])[:, 0], expected)
    with pytest.raises(IndexError):
        ds[8]


def test_samples_are_deterministic_per_seed_and_index() -> None:
    rain = moving_blobs(20, 40, 40, seed=2)
    a, b = RainCropDataset(rain, CFG, seed=5), RainCropDataset(rain, CFG, seed=5)
    c = RainCropDataset(rain, CFG, seed=6)
    assert torch.equal(a[2]["past"], b[2]["past"])
    assert torch.equal(a.sample(1000)["origin"], b.sample(1000)["origin"])
    assert any(not torch.equal(a[i]["origin"], c[i]["origin"]) for i in range(4))


def test_dry_and_missing_crops_are_skipped() -> None:
    rain = np.zeros((10, 64, 64), dtype=np.float32)
    rain[:, 40:, 40:] = 2.0  # rain only in one corner
    rain[:, :20, :] = np.nan  # no data at the top
    cfg = NowcastDataConfig(
        t_in=2, t_out=2, crop_size=16, min_valid_fraction=0.95, min_rain_fraction=0.5, max_tries=200
    )
    ds = RainCropDataset(rain, cfg, seed=0)
    for i in range(6):
        item = ds[i]
        mask = torch.cat([item["past_mask"], item["future_mask"]])
        assert mask.mean() >= 0.95
        assert (item["future"] > 0).float().mean() >= 0.5


def test_extrapolation_callable_and_multiple_arrays() -> None:
    calls = []

    def persistence(past: torch.Tensor, n_leads: int) -> torch.Tensor:
        calls.append(tuple(past.shape))
        assert not torch.isnan(past).any()
        return past[-1].expand(n_leads, -1, -1)

    arrays = [moving_blobs(8, 24, 24, seed=3), moving_blobs(9, 30, 20, seed=4)]
    cfg = NowcastDataConfig(t_in=3, t_out=2, crop_size=16, samples_per_epoch=20, min_rain_fraction=0.0)
    ds = RainCropDataset(arrays, cfg, extrapolation_fn=persistence, seed=1)
    item = ds[0]
    assert item["extrapolation"].shape == (2, 1, 16, 16)
    torch.testing.assert_close(item["extrapolation"][0], item["past"][-1])
    assert calls[0] == (3, 16, 16)
    assert {int(ds[i]["origin"][0]) for i in range(20)} == {0, 1}


def test_dataarray_input_and_errors() -> None:
    rain = moving_blobs(10, 20, 20, seed=0)
    da = xr.DataArray(rain.transpose(1, 2, 0), dims=("y", "x", "time"))
    ds = RainCropDataset(da, CFG)
    np.testing.assert_allclose(ds.arrays[0], rain)
    with pytest.raises(ValueError, match="smaller than crop_size"):
        RainCropDataset(rain[:, :8], CFG)
    with pytest.raises(ValueError, match="frames"):
        RainCropDataset(rain[:4], CFG)


def test_split_by_time_holds_back_the_end() -> None:
    rain = np.arange(100, dtype=np.float32)[:, None, None] * np.ones((1, 4, 4), dtype=np.float32)
    (train,), (val,) = split_by_time(rain, val_fraction=0.2, gap=5)
    assert train.shape[0] == 75 and val.shape[0] == 20
    assert set(train[:, 0, 0]).isdisjoint(val[:, 0, 0])
    assert val[0, 0, 0] - train[-1, 0, 0] == 6
    times = pd.date_range("2024-07-01", periods=100, freq="5min")
    da = xr.DataArray(rain, dims=("time", "y", "x"), coords={"time": times})
    (tr_da,), (va_da,) = split_by_time(da, val_fraction=0.2)
    assert tr_da.time.max() < va_da.time.min()
    with pytest.raises(ValueError):
        split_by_time(rain[:3], val_fraction=0.5, gap=5)
