"""The cycle: Dataset contents, diagnostics, reproducibility, every filter and model, divergence."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from dacast.da import EnKFConfig, ETKFConfig, FilterConfig, FreeRunConfig
from dacast.workflow import ModelSpec, ObsSpec, TwinConfig, config_to_dict, run_twin, summarise


def test_dataset_layout_and_attrs(l96_tiny: TwinConfig) -> None:
    ds = run_twin(l96_tiny, progress=False)
    n_t, n_x, n_y = 15, 12, 6
    assert dict(ds.sizes) == {"time": n_t, "state": n_x, "obs": n_y}
    for name in ("truth", "forecast_mean", "forecast_spread", "analysis_mean", "analysis_spread"):
        assert ds[name].dims == ("time", "state"), name
        assert ds[name].attrs["units"] == "1"
    for name in ("observations", "innovation"):
        assert ds[name].dims == ("time", "obs")
    for name in ("rmse_forecast", "rmse_analysis", "spread_forecast", "spread_analysis"):
        assert ds[name].dims == ("time",)
        assert np.isfinite(ds[name].values).all()
    np.testing.assert_allclose(ds["time"].values, 0.05 * np.arange(1, n_t + 1))
    assert ds["time"].attrs["units"] == "1"  # model time units are non-dimensional (CF: "1")
    np.testing.assert_array_equal(ds["obs_state_index"].values, [0, 2, 4, 6, 8, 10])
    np.testing.assert_allclose(ds["obs_error_std"].values, 0.5)
    # Settings are a JSON string that gives the config back; every attribute is netCDF-friendly.
    assert json.loads(ds.attrs["settings"]) == json.loads(json.dumps(config_to_dict(l96_tiny)))
    for key, value in ds.attrs.items():
        assert isinstance(value, str | int | float), key
    assert ds.attrs["diverged"] == 0 and ds.attrs["cycles_completed"] == n_t
    assert ds.attrs["filter"] == "letkf" and ds.attrs["model"] == "lorenz96"
    for key in ("dacast_version", "torch_version", "created", "wall_time_s", "device"):
        assert key in ds.attrs


def test_diagnostics_match_their_definitions(l63_tiny: TwinConfig) -> None:
    ds = run_twin(l63_tiny, progress=False)
    err_a = ds["analysis_mean"].values - ds["truth"].values
    np.testing.assert_allclose(ds["rmse_analysis"].values, np.sqrt((err_a**2).mean(1)), rtol=1e-12)
    err_f = ds["forecast_mean"].values - ds["truth"].values
    np.testing.assert_allclose(ds["rmse_forecast"].values, np.sqrt((err_f**2).mean(1)), rtol=1e-12)
    np.testing.assert_allclose(
        ds["spread_analysis"].values, np.sqrt((ds["analysis_spread"].values ** 2).mean(1)), rtol=1e-12
    )
    # Innovation = y - H(forecast mean) for an identity operator.
    np.testing.assert_allclose(
        ds["innovation"].values, ds["observations"].values - ds["forecast_mean"].values, atol=1e-12
    )
    # The analysis pulls the mean towards the observations and shrinks the spread.
    assert ds["rmse_analysis"].mean() < ds["rmse_forecast"].mean()
    assert ds["spread_analysis"].mean() < ds["spread_forecast"].mean()


def test_same_seed_same_result_and_truth_shared_across_filters(l63_tiny: TwinConfig) -> None:
    a = run_twin(l63_tiny, progress=False)
    b = run_twin(l63_tiny, progress=False)
    np.testing.assert_array_equal(a["analysis_mean"].values, b["analysis_mean"].values)
    other = dataclasses.replace(l63_tiny, filter=FreeRunConfig(), members=3)
    c = run_twin(other, progress=False)
    np.testing.assert_array_equal(a["truth"].values, c["truth"].values)
    np.testing.assert_array_equal(a["observations"].values, c["observations"].values)
    d = run_twin(dataclasses.replace(l63_tiny, seed=2), progress=False)
    assert not np.allclose(a["truth"].values, d["truth"].values)


def test_filters_beat_the_free_run(l63_tiny: TwinConfig) -> None:
    config = dataclasses.replace(l63_tiny, cycles=60)
    free = summarise(run_twin(dataclasses.replace(config, filter=FreeRunConfig()), progress=False))
    etkf = summarise(run_twin(config, progress=False))
    assert etkf["rmse_analysis"] < 0.5 * free["rmse_analysis"]
    assert free["rmse_analysis"] == pytest.approx(free["rmse_forecast"])


@pytest.mark.parametrize(
    ("model", "obs", "filt"),
    [
        (ModelSpec(name="lorenz96", n_state=10), ObsSpec(kind="every_kth", k=2, offset=1), EnKFConfig(inflation=1.1)),
        (ModelSpec(name="coupled_lorenz63"), ObsSpec(kind="subset", indices=(0, 1, 2)), ETKFConfig(inflation=1.05)),
        (ModelSpec(name="coupled_lorenz63", variant="x1sq"), ObsSpec(), ETKFConfig(rtps=0.5)),
        (ModelSpec(name="lorenz63"), ObsSpec(error_std=(1.0, 2.0, 0.5)), EnKFConfig()),
    ],
    ids=["l96-enkf", "coupled-etkf", "coupled-x1sq", "l63-enkf-vector-std"],
)
def test_every_model_and_filter_runs(model: ModelSpec, obs: ObsSpec, filt: FilterConfig) -> None:
    config = TwinConfig(model=model, dt=0.01, obs=obs, obs_every=3, filter=filt, members=8, cycles=12, seed=5)
    ds = run_twin(config, progress=False)
    assert ds.attrs["diverged"] == 0
    assert np.isfinite(ds["analysis_mean"].values).all()
    assert ds.sizes["state"] == config.n_state and ds.sizes["obs"] == config.n_obs


def test_float32_and_progress_bar(l96_tiny: TwinConfig) -> None:
    ds = run_twin(dataclasses.replace(l96_tiny, dtype="float32", cycles=5), progress=True)
    assert ds.attrs["dtype"] == "float32"
    assert np.isfinite(ds["rmse_analysis"].values).all()


def test_short_run_halves_the_burn_in_like_dapper(l63_tiny: TwinConfig) -> None:
    ds = run_twin(dataclasses.replace(l63_tiny, burn_in=100.0), progress=False)
    assert ds.attrs["burn_in"] == pytest.approx(0.5 * 20 * 5 * 0.01)
    assert ds.attrs["burn_in_requested"] == 100.0
    assert summarise(ds)["rmse_analysis"] is not None


def test_blow_up_is_flagged_not_raised() -> None:
    """A huge time step makes RK4 overflow: the run stops, flags it and fills NaN."""
    config = TwinConfig(
        model=ModelSpec(name="lorenz96", n_state=10),
        dt=1.5,
        obs=ObsSpec(),
        obs_every=1,
        filter=ETKFConfig(),
        members=4,
        cycles=40,
        seed=0,
    )
    ds = run_twin(config, progress=False)
    assert ds.attrs["diverged"] == 1
    done = ds.attrs["cycles_completed"]
    assert 1 <= done < 40 and ds.attrs["diverged_cycle"] == done
    assert np.isnan(ds["analysis_mean"].values[done:]).all()
    assert np.isnan(ds["rmse_analysis"].values[done:]).all()
    summary = summarise(ds)
    assert summary["diverged"] is True and summary["diverged_cycle"] == done


def test_rmse_above_threshold_is_divergence(l63_tiny: TwinConfig) -> None:
    """A free run with a tiny threshold (and absurdly small obs errors) diverges at once."""
    config = dataclasses.replace(
        l63_tiny, filter=FreeRunConfig(), obs=ObsSpec(error_std=1e-6), initial_std=3.0, divergence_threshold=0.1
    )
    ds = run_twin(config, progress=False)
    assert ds.attrs["diverged"] == 1 and ds.attrs["diverged_cycle"] == 1
    assert "exceeds the threshold" in ds.attrs["diverged_reason"]
    assert np.isfinite(ds["rmse_analysis"].values[0])
    assert np.isnan(ds["rmse_analysis"].values[1:]).all()
    # The truth and the observations are kept for the whole run.
    assert np.isfinite(ds["truth"].values).all()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("fixture", ["l63_tiny", "l96_tiny"])
def test_cuda_matches_cpu(fixture: str, request: pytest.FixtureRequest) -> None:
    config: TwinConfig = request.getfixturevalue(fixture)
    cpu = run_twin(config, progress=False)
    gpu = run_twin(dataclasses.replace(config, device="cuda"), progress=False)
    assert gpu.attrs["device"].startswith("cuda")
    np.testing.assert_array_equal(cpu["truth"].values, gpu["truth"].values)
    np.testing.assert_array_equal(cpu["observations"].values, gpu["observations"].values)
    np.testing.assert_allclose(gpu["analysis_mean"].values, cpu["analysis_mean"].values, atol=1e-8)
    auto = run_twin(dataclasses.replace(config, device="auto", cycles=2), progress=False)
    assert auto.attrs["device"].startswith("cuda")
