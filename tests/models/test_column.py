"""The column-ring twin: layout, climatology, bounded chaotic dynamics, coupling, grid."""

import math

import pytest
import torch

from dacast.models import Model, advance
from dacast.models.column import ColumnAtmosphere, afgl_profiles, base_state
from dacast.thermo import saturation_specific_humidity


@pytest.fixture(scope="module")
def model() -> ColumnAtmosphere:
    return ColumnAtmosphere(n_columns=16, n_levels=12)


@pytest.fixture(scope="module")
def run(model):
    x = model.initial_state(torch.Generator().manual_seed(0), spin_up=5.0)
    states = [x]
    for _ in range(300):
        x = advance(model, x, 5, 0.01)
        states.append(x)
    return torch.stack(states)


def test_meets_protocol_and_layout(model):
    assert isinstance(model, Model)
    assert model.n_state == 2 * 12 * 16
    x = model.climatology()
    t, q = model.split(x)
    assert t.shape == q.shape == (12, 16)
    assert torch.equal(model.join(t, q), x)
    tp, qp = model.profiles(torch.stack([x, x]), torch.tensor([3, 3, 0]))
    assert tp.shape == (2, 3, 12)
    assert torch.equal(tp[0, 0], t[:, 3])


def test_levels_and_latitudes(model):
    p = model.pressure
    assert float(p[0]) == pytest.approx(1000.0) and float(p[-1]) == pytest.approx(10.0)
    assert bool((p[1:] < p[:-1]).all())
    lat = model.latitude
    assert float(lat[0]) == pytest.approx(0.0, abs=1e-9)
    assert float(lat[4]) == pytest.approx(90.0) and float(lat[12]) == pytest.approx(-90.0)


def test_base_state_follows_afgl_profiles():
    profiles = afgl_profiles()
    assert set(profiles) >= {"tropical", "midlatitude_summer", "subarctic_winter"}
    p = torch.tensor([1000.0, 500.0]).numpy()
    t, q = base_state(torch.tensor([0.0, 45.0, -80.0]).numpy(), p)
    assert 295 < t[0, 0] < 302  # tropical surface (AFGL: 299.7 K at 1013 hPa)
    assert t[0, 2] < 260  # sub-arctic winter surface
    assert q[0, 0] > q[0, 1] > q[0, 2] > 0
    assert (q[1] < q[0]).all()


def test_dynamics_bounded_and_variable(model, run):
    t, q = model.split(run)
    assert bool(torch.isfinite(run).all())
    anomaly = t - model.t_clim
    std = anomaly[50:].std(0).mean()
    assert 1.5 < float(std) < 3.5  # the configured 2.5 K per attractor standard deviation
    assert float(anomaly.abs().max()) < 20.0
    p = model.pressure[:, None]
    assert bool((q <= saturation_specific_humidity(t, p) * (1 + 1e-9)).all())
    assert bool((q >= model.q_floor * model.q_clim * (1 - 1e-9)).all())


def test_neighbouring_levels_and_humidity_are_coupled(model, run):
    t, q = model.split(run[50:])
    ta = t - t.mean(0)
    qa = torch.log(q) - torch.log(q).mean(0)

    def corr(a, b):
        a, b = a - a.mean(0), b - b.mean(0)
        return float(((a * b).mean(0) / (a.std(0) * b.std(0))).mean())

    assert corr(ta[:, :-1], ta[:, 1:]) > 0.7  # vertical coupling
    assert 0.3 < corr(ta, qa) < 0.95  # moist where warm, not a copy of T


def test_small_errors_grow(model):
    x = model.initial_state(torch.Generator().manual_seed(1), spin_up=5.0)
    y = x.clone()
    t, q = model.split(y)
    y = model.join(t + 1e-4, q)
    e0 = float((x - y).norm())
    xa, ya = advance(model, x, 150, 0.01), advance(model, y, 150, 0.01)
    tx, _ = model.split(xa)
    ty, _ = model.split(ya)
    growth = math.log(float((tx - ty).norm()) / e0) / 1.5
    assert growth > 0.3  # per time unit: doubling within about 2 time units (10 days)


def test_batch_equals_loop(model):
    x = model.initial_state(torch.Generator().manual_seed(2), spin_up=1.0, members=3)
    assert x.shape == (3, model.n_state)
    batched = model.step(x, 0.0, 0.01)
    for i in range(3):
        assert torch.allclose(batched[i], model.step(x[i], 0.0, 0.01), atol=1e-12)


def test_grid_coordinates(model):
    grid = model.grid(vertical_scale=3.0)
    assert grid.n_points == model.n_points
    assert grid.period == (16.0, None)
    assert float(grid.coords[17, 0]) == 1.0  # point = level * N + column
    assert float(grid.coords[17, 1]) == pytest.approx(3.0 * math.log(1000.0 / float(model.pressure[1])))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_columns": 3}, "n_columns"),
        ({"n_levels": 1}, "n_levels"),
        ({"p_top": 2000.0}, "p_top"),
        ({"t_std": 0.0}, "t_std"),
    ],
)
def test_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ColumnAtmosphere(**kwargs)


def test_wrong_state_length(model):
    with pytest.raises(ValueError, match="state length"):
        model.split(torch.zeros(5))
