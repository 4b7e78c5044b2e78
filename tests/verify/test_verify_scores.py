"""score_nowcast: per-lead Dataset consistent with the single scores; MAE."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from dacast.verify import contingency, csi, fss, mae, score_nowcast


def fields() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    obs = rng.gamma(0.6, 3.0, (4, 30, 40))
    fc = np.roll(obs, 2, axis=-1) * 1.1
    fc[:, :3, :5] = np.nan
    obs[:, -2:, :] = np.nan
    return fc, obs


def test_mae() -> None:
    f = np.array([[1.0, 2.0], [np.nan, 4.0]])
    o = np.array([[2.0, 2.0], [1.0, 1.0]])
    assert mae(f, o).item() == pytest.approx(4.0 / 3.0)
    assert mae(f, o, mask=np.array([[True, True], [True, False]])).item() == pytest.approx(0.5)
    assert np.isnan(mae(np.full((2, 2), np.nan), o).item())


def test_score_nowcast_dataset() -> None:
    fc, obs = fields()
    ds = score_nowcast(fc, obs, thresholds=(1.0, 5.0), scales_km=(5.0, 10.0), pixel_km=2.5)
    assert isinstance(ds, xr.Dataset)
    assert ds["csi"].dims == ("lead_time", "threshold")
    assert ds["fss"].dims == ("lead_time", "threshold", "scale")
    assert ds["lead_time"].values.tolist() == [5.0, 10.0, 15.0, 20.0]
    assert ds["scale_pixels"].values.tolist() == [2, 4]
    assert ds["lead_time"].attrs["units"] == "min" and ds["mae"].attrs["units"] == "mm h-1"
    both = np.isfinite(fc) & np.isfinite(obs)
    assert ds["n_valid"].values.tolist() == both.sum((1, 2)).tolist()
    fc_both, obs_both = np.where(both, fc, np.nan), np.where(both, obs, np.nan)
    for i, thr in enumerate((1.0, 5.0)):
        table = contingency(fc, obs, thr)
        np.testing.assert_allclose(ds["csi"].values[:, i], csi(table).numpy())
        np.testing.assert_allclose(ds["hits"].values[:, i], table.hits.numpy())
        for j, px in enumerate((2, 4)):
            np.testing.assert_allclose(ds["fss"].values[:, i, j], fss(fc_both, obs_both, thr, px).numpy())
    np.testing.assert_allclose(ds["mae"].values, mae(fc, obs).numpy())
    pod, far, bias = ds["pod"].values, ds["far"].values, ds["frequency_bias"].values
    h, m, f = ds["hits"].values, ds["misses"].values, ds["false_alarms"].values
    np.testing.assert_allclose(pod, h / (h + m))
    np.testing.assert_allclose(far, f / (h + f))
    np.testing.assert_allclose(bias, (h + f) / (h + m))


def test_score_nowcast_mask_leads_and_tensors() -> None:
    fc, obs = fields()
    mask = np.zeros((30, 40), bool)
    mask[10:, 10:] = True
    ds = score_nowcast(torch.from_numpy(fc), torch.from_numpy(obs), lead_minutes=[10, 20, 30, 40], mask=mask)
    assert ds["lead_time"].values.tolist() == [10, 20, 30, 40]
    assert (ds["n_valid"].values == (mask & np.isfinite(obs[0])).sum()).all()
    perfect = score_nowcast(obs, obs)
    assert np.allclose(perfect["csi"].values, 1.0) and np.allclose(perfect["fss"].values, 1.0)
    assert np.allclose(perfect["mae"].values, 0.0)
    with pytest.raises(ValueError, match="lead_minutes"):
        score_nowcast(fc, obs, lead_minutes=[5, 10])
    with pytest.raises(ValueError, match="lead, H, W"):
        score_nowcast(fc[0], obs[0])
