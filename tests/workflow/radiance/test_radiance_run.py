"""Radiance experiments through the cycle engine: VarBC, the value of radiances, divergence, outputs, resume."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
import xarray as xr

from dacast.thermo import saturation_specific_humidity
from dacast.workflow.radiance.assimilation import reset_humidity, run_experiment
from dacast.workflow.radiance.observing import initial_ensemble, make_truth, observe_truth, physical_factory
from dacast.workflow.radiance.run import run_radiance
from dacast.workflow.schema import ConfigError


def _twin(config, seed=1):
    model = config.model.build()
    data = observe_truth(model, config, make_truth(model, config, seed, config.cycles), seed)
    return model, data, initial_ensemble(model, config, seed)


def test_varbc_learns_the_bias_and_radiances_beat_radiosondes(make_tiny):
    config = make_tiny(cycles=50, spinup_cycles=10)
    model, data, ens = _twin(config)
    phys = physical_factory(model, config)
    conv = run_experiment(model, config, data, ens, monitor=phys)
    with_bc = run_experiment(model, config, data, ens, radiance_operator=phys, bias_correction=True)
    s = config.spinup_cycles
    assert with_bc["rmse_t_a"][s:].mean() < 0.95 * conv["rmse_t_a"][s:].mean()
    raw, used = with_bc["omb_raw"][s:], with_bc["omb"][s:]
    assert np.abs(used.mean((0, 1))).max() < 0.25 < np.abs(raw.mean((0, 1))).max()  # channel 6 is ~1 K biased
    true_offset = data.true_bias[s:].mean((0, 1)).numpy()
    assert np.allclose(raw.mean((0, 1)), true_offset, atol=0.3)  # what O-B shows is the bias
    assert int(conv["diverged_cycle"]) == -1 and np.isnan(conv["bias_coefficients"]).all()
    assert np.isfinite(with_bc["bias_coefficients"][-1]).all()


def test_a_failing_operator_is_a_recorded_divergence(make_tiny):
    config = make_tiny(cycles=6)
    model, data, ens = _twin(config)

    class Broken:
        def __init__(self, view):
            self.inner = physical_factory(model, config)(view)
            self.n_state, self.locations, self.error_std = model.n_state, self.inner.locations, self.inner.error_std

        def __call__(self, x):
            return torch.full((*x.shape[:-1], self.error_std.numel()), float("nan"), dtype=x.dtype)

    out = run_experiment(model, config, data, ens, radiance_operator=Broken)
    assert int(out["diverged_cycle"]) == 1
    assert str(out["diverged_reason"])
    assert np.isnan(out["rmse_t_a"]).all()


def test_humidity_reset_bounds(make_tiny):
    model = make_tiny().model.build()
    x = model.climatology()[None].repeat(2, 1)
    t, q = model.split(x)
    bad = model.join(t, torch.stack([-q[0], 100 * q[1]]))
    fixed, count = reset_humidity(model, bad)
    _, qf = model.split(fixed)
    assert model.n_points < count < 2 * model.n_points  # every negative value, and the supersaturated ones
    assert torch.allclose(qf[0], model.q_floor * model.q_clim)
    assert bool((qf[1] <= saturation_specific_humidity(t[1], model.pressure[:, None])).all())
    assert bool((qf[1] < 100 * q[1]).any())


def test_run_outputs_resume_and_refusals(make_tiny, tmp_path):
    config = make_tiny(cycles=8, spinup_cycles=2)
    out = tmp_path / "run"
    result = run_radiance(config, out, plots=True)
    for name in ("radiance_run.nc", "summary.json", "state.json", "rmse_by_level.png", "departures.png"):
        assert (out / name).is_file(), name
    assert (out / "ml" / "metadata.json").is_file() and not (out / "INCOMPLETE").exists()
    ds = xr.open_dataset(out / "radiance_run.nc")
    assert ds.attrs["Conventions"] == "CF-1.10"
    assert ds["rmse_t_a"].dims == ("experiment", "seed", "cycle", "level") and ds["rmse_t_a"].attrs["units"] == "K"
    assert list(ds["experiment_name"].values) == ["conv", "physical", "ml"]
    ds.close()
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["experiments"]) == {"conv", "physical", "ml"}
    assert {"physical<ml_t", "ml<conv_t"} <= set(summary["ordering"])
    again = run_radiance(config, out, resume=True, plots=False)
    assert again.summary["experiments"] == json.loads(json.dumps(result.summary["experiments"]))
    with pytest.raises(ConfigError, match="pass --resume"):
        run_radiance(config, out)
    with pytest.raises(ConfigError, match="other settings"):
        run_radiance(dataclasses.replace(config, members=6), out, resume=True)


def test_a_nan_radiance_is_bad_input_not_a_divergence(make_tiny):
    from dacast.workflow.radiance.assimilation import BadObservation

    config = make_tiny(cycles=4, spinup_cycles=1)
    model, data, ens = _twin(config)
    data.radiances[2, 3, 1] = float("nan")
    phys = physical_factory(model, config)
    with pytest.raises(BadObservation, match=r"cycle 2: the radiance of field of view 3 .*channel 7 is nan"):
        run_experiment(model, config, data, ens, radiance_operator=phys)
