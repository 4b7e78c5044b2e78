"""The radiance twin's observing system: radiosondes, the swath, biased radiances, locations."""

from __future__ import annotations

import torch

from dacast.obs import ObsOperator
from dacast.obs.microwave import brightness_temperature
from dacast.obs.satellite import amsua_true_bias, bias_predictors
from dacast.workflow.radiance.observing import (
    channel_heights,
    conventional_operator,
    initial_ensemble,
    make_truth,
    nearest_levels,
    observe_truth,
    physical_factory,
    radiance_locations,
    swath,
)


def test_conventional_operator_layout(make_tiny):
    config = make_tiny()
    model = config.model.build()
    op = conventional_operator(model, config)
    assert isinstance(op, ObsOperator)
    levels = nearest_levels(model, config.conventional.levels_hpa)
    n_t = 3 * len(levels)
    n_q = op.n_obs - n_t
    assert 0 < n_q < n_t  # humidity only up to 300 hPa
    assert torch.all(op.error_std[: len(levels)] == config.conventional.t_error)
    x = model.climatology()
    t, q = model.split(x)
    y = op(x)
    assert float(y[0]) == float(t[0, 0])  # the first station is column 0, the first level 1000 hPa
    assert op.locations.shape == (op.n_obs, 2)


def test_radiances_are_truth_plus_bias_plus_noise(make_tiny):
    config = make_tiny(cycles=40)
    model = config.model.build()
    truth = make_truth(model, config, 3, config.cycles)
    data = observe_truth(model, config, truth, 3)
    assert data.radiances.shape == (41, config.satellite.fovs, 3)
    assert torch.isnan(data.conventional[1]).all() and torch.isfinite(data.conventional[2]).all()
    resid = []
    for c in range(41):
        view = swath(config, c)
        t, q = model.profiles(truth[c], view.columns)
        tb = brightness_temperature(t, q, model.pressure, view.zenith_deg)
        bias = amsua_true_bias()(bias_predictors(view.scan_deg, t, q, model.pressure))
        assert torch.allclose(data.true_bias[c], bias)
        resid.append(data.radiances[c] - tb - bias)
    noise = torch.cat(resid)
    expected = torch.tensor(config.satellite.error_std, dtype=torch.float64)
    assert torch.allclose(noise.std(0), expected, rtol=0.2)
    assert float(noise.mean(0).abs().max()) < 0.1


def test_same_seed_same_data_and_independent_members(make_tiny):
    config = make_tiny()
    model = config.model.build()
    a = observe_truth(model, config, make_truth(model, config, 5, 4), 5)
    b = observe_truth(model, config, make_truth(model, config, 5, 4), 5)
    assert torch.equal(a.radiances, b.radiances) and torch.equal(a.truth, b.truth)
    ens = initial_ensemble(model, config, 5)
    assert ens.shape == (config.members, model.n_state)
    assert float((ens[0] - ens[1]).abs().max()) > 0.5


def test_radiance_locations_follow_the_weighting_functions(make_tiny):
    config = make_tiny()
    model = config.model.build()
    heights = channel_heights(model, config)
    assert bool(heights[0] < heights[1] < heights[2])  # channel 6 lowest, 8 highest
    view = swath(config, 2)
    loc = radiance_locations(view, heights)
    assert loc.shape == (config.satellite.fovs * 3, 2)
    assert torch.equal(loc[:3, 0], view.columns[0].to(torch.float64).repeat(3))
    op = physical_factory(model, config)(view)
    assert op(initial_ensemble(model, config, 1)).shape == (config.members, config.satellite.fovs * 3)
