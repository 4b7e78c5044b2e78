"""Results on disk: netCDF round trip, summary.json, PNG plots, run_experiment."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from dacast.da import ETKFConfig
from dacast.workflow import (
    TwinConfig,
    get_preset,
    make_plots,
    run_experiment,
    run_twin,
    summarise,
    with_overrides,
    write_results,
)

SUMMARY_KEYS = {
    "rmse_analysis",
    "rmse_forecast",
    "spread_analysis",
    "spread_forecast",
    "diverged",
    "diverged_cycle",
    "wall_time_s",
    "settings",
    "burn_in",
    "cycles_completed",
}
PNG = b"\x89PNG\r\n\x1a\n"


def test_netcdf_round_trip_and_summary(tmp_path: Path, l96_tiny: TwinConfig) -> None:
    ds = run_twin(l96_tiny, progress=False)
    results, summary_path, summary = write_results(ds, tmp_path / "out")
    assert results.name == "results.nc" and summary_path.name == "summary.json"
    with xr.open_dataset(results) as back:
        back.load()
    xr.testing.assert_identical(back, ds)
    on_disk = json.loads(summary_path.read_text())
    assert SUMMARY_KEYS <= set(on_disk)
    assert on_disk == summary == json.loads(json.dumps(summarise(back)))
    assert on_disk["diverged"] is False
    assert on_disk["settings"]["filter"]["kind"] == "letkf"
    after = ds["time"].values > ds.attrs["burn_in"]
    assert on_disk["rmse_analysis"] == pytest.approx(float(ds["rmse_analysis"].values[after].mean()))


def test_diverged_run_writes_nulls(tmp_path: Path, l63_tiny: TwinConfig) -> None:
    config = dataclasses.replace(l63_tiny, dt=2.0, filter=ETKFConfig(), burn_in=0.0)
    ds = run_twin(config, progress=False)
    assert ds.attrs["diverged"] == 1
    _, summary_path, _ = write_results(ds, tmp_path)
    summary = json.loads(summary_path.read_text())  # valid JSON: no NaN
    assert summary["diverged"] is True
    assert make_plots(ds, tmp_path)  # plots survive NaN


@pytest.mark.parametrize("fixture", ["l63_tiny", "l96_tiny"])
def test_plots_are_png(tmp_path: Path, fixture: str, request: pytest.FixtureRequest) -> None:
    ds = run_twin(request.getfixturevalue(fixture), progress=False)
    paths = make_plots(ds, tmp_path)
    names = {p.name for p in paths}
    assert "rmse.png" in names
    assert ("hovmoller.png" if fixture == "l96_tiny" else "attractor.png") in names
    for path in paths:
        assert path.read_bytes()[:8] == PNG and path.stat().st_size > 5000


def test_run_experiment_with_preset(tmp_path: Path) -> None:
    preset = get_preset("lorenz96-etkf")
    config = with_overrides(preset.config, cycles=10, members=5)
    result = run_experiment(config, tmp_path / "run", preset=preset, progress=False)
    summary = json.loads(result.paths.summary.read_text())
    assert summary["preset"] == "lorenz96-etkf"
    assert summary["expected_rmse_analysis"] == 0.20
    assert "sakov2008.py" in summary["source"]
    assert summary["settings"]["members"] == 5
    assert {p.name for p in result.paths.plots} == {"rmse.png", "hovmoller.png"}
    with xr.open_dataset(result.paths.results) as back:
        assert back.attrs["preset"] == "lorenz96-etkf"
        assert np.isfinite(back["rmse_analysis"].values).all()
