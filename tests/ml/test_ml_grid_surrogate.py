"""The gridded surrogate: protocol, residual form, triggering, training, reload, refusal of misfit checkpoints."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from dacast.ml.grid_surrogate import (
    GridSurrogate,
    GridSurrogateSpec,
    NonFiniteForecast,
    SurrogateMismatch,
    build_grid_surrogate,
    load_grid_surrogate,
    save_grid_surrogate,
    state_dict_sha256,
)
from dacast.ml.grid_surrogate_train import GridPairs, GridTrainConfig, increment_loss, train_grid_surrogate
from dacast.models import Model, WurschCraig, WurschCraigConfig

N = 16


@pytest.fixture(scope="module")
def physics() -> WurschCraig:
    return WurschCraig(WurschCraigConfig(ny=N, nx=N, background_u=5.0, background_v=2.5, noise_rate=4e-9))


@pytest.fixture(scope="module")
def states(physics: WurschCraig) -> torch.Tensor:
    """Three members after ten minutes of spin-up, ``(3, 4, 16, 16)`` float32."""
    x = physics.initial_state(3, seed=4)
    return physics.forecast(x, 600.0, seed=4, start_step=-60)


def spec(physics: WurschCraig, **kw) -> GridSurrogateSpec:
    return GridSurrogateSpec.for_model(physics.config, 30.0, channels=8, layers=3, **kw)


@pytest.fixture(scope="module")
def pairs(physics: WurschCraig, states: torch.Tensor) -> GridPairs:
    """20 cycles of the three members: anchors (state + kicks) and the physics' states a cycle later."""
    net = GridSurrogate(spec(physics))
    x, ins, outs = states, [], []
    for c in range(20):
        ins.append(net.anchor(x, seed=9, start_step=3 * c))
        x = physics.forecast(x, 30.0, seed=9, start_step=3 * c)
        outs.append(x)
    return GridPairs(torch.cat(ins), torch.cat(outs))


def test_spec_rejects_bad_settings(physics: WurschCraig) -> None:
    with pytest.raises(ValueError, match="multiple of the model step"):
        GridSurrogateSpec.for_model(physics.config, 25.0)
    with pytest.raises(ValueError, match="layers"):
        GridSurrogateSpec.for_model(physics.config, 30.0, layers=1)
    with pytest.raises(ValueError, match="variables"):
        GridSurrogateSpec.for_model(physics.config, 30.0, variables=("u", "v", "h"))
    with pytest.raises(ValueError, match="grid"):
        GridSurrogateSpec.for_model(physics.config, 30.0, base=replace(physics.config, ny=32, nx=32))


def test_perturb_is_the_forecasts_triggering(physics: WurschCraig, states: torch.Tensor) -> None:
    """One step: kicks added by `perturb` then a deterministic step equal the triggered forecast bitwise."""
    kicked = physics.perturb(states, seed=5, start_step=7, n_steps=1, member_offset=2)
    assert torch.equal(kicked[:, 2:], states[:, 2:]) and not torch.equal(kicked[:, :2], states[:, :2])
    stepped = physics.step(kicked.reshape(3, -1), 0.0, physics.config.dt).reshape(states.shape)
    assert torch.equal(stepped, physics.forecast(states, 10.0, seed=5, start_step=7, member_offset=2))


def test_fresh_surrogate_is_persistence_plus_kicks(physics: WurschCraig, states: torch.Tensor) -> None:
    net = build_grid_surrogate(spec(physics))
    assert isinstance(net, Model) and net.n_state == 4 * N * N
    assert torch.equal(net.forecast(states, 60.0, seed=None), states)
    kicked = physics.perturb(states, seed=3, start_step=30, n_steps=6, member_offset=1)
    assert torch.allclose(net.forecast(states, 60.0, seed=3, start_step=30, member_offset=1), kicked, atol=1e-6)
    flat = net.step(states.reshape(3, -1), 0.0, 30.0)
    assert flat.shape == (3, 4 * N * N)
    with pytest.raises(ValueError, match="steps 30 s"):
        net.step(states.reshape(3, -1), 0.0, 10.0)
    with pytest.raises(ValueError, match="cannot forecast 45 s"):
        net.forecast(states, 45.0, seed=None)


def test_hybrid_starts_as_the_physics_it_corrects(physics: WurschCraig, states: torch.Tensor) -> None:
    wrong = replace(physics.config, alpha=4e-4)
    net = build_grid_surrogate(spec(physics, base=wrong))
    expected = WurschCraig(wrong).forecast(states, 30.0, seed=2, start_step=12)
    assert torch.allclose(net.forecast(states, 30.0, seed=2, start_step=12), expected, atol=1e-6)


def test_members_are_independent_of_chunking(physics: WurschCraig, states: torch.Tensor, pairs: GridPairs) -> None:
    net = train_grid_surrogate(pairs, spec(physics), GridTrainConfig(epochs=1, batch_size=8)).model
    whole = net.forecast(states, 60.0, seed=8, start_step=3)
    one = net.forecast(states, 60.0, seed=8, start_step=3, chunk_members=1)
    assert torch.allclose(whole, one, atol=1e-5)
    assert torch.allclose(net.forecast(states[1:2], 60.0, seed=8, start_step=3, member_offset=1), whole[1:2], atol=1e-5)
    assert bool((whole[:, 3] >= 0).all())


def test_one_training_step_lowers_the_loss(physics: WurschCraig, pairs: GridPairs) -> None:
    torch.manual_seed(0)
    net = build_grid_surrogate(spec(physics), seed=1)
    net.fit_normalization(pairs.inputs, pairs.targets)
    for p in net.parameters():  # away from the zero start, so that every weight gets a gradient
        p.data.add_(0.01 * torch.randn_like(p))
    w = torch.ones(4)
    with torch.no_grad():
        before = float(increment_loss(net, pairs.inputs, pairs.targets, w))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss = increment_loss(net, pairs.inputs, pairs.targets, w)
    loss.backward()
    opt.step()
    with torch.no_grad():
        assert float(increment_loss(net, pairs.inputs, pairs.targets, w)) < before


def test_training_is_reproducible_and_learns(physics: WurschCraig, pairs: GridPairs) -> None:
    cfg = GridTrainConfig(epochs=3, batch_size=8, seed=4)
    a = train_grid_surrogate(pairs, spec(physics), cfg)
    b = train_grid_surrogate(pairs, spec(physics), cfg)
    assert state_dict_sha256(a.model) == state_dict_sha256(b.model)
    assert a.metrics["best_val_loss"] < a.metrics["initial_val_loss"]
    assert a.metrics["training_data_sha256"] == pairs.sha256()


def test_reload_reproduces_outputs_and_refuses_misfits(tmp_path, physics: WurschCraig, states, pairs) -> None:
    net = train_grid_surrogate(pairs, spec(physics), GridTrainConfig(epochs=1, batch_size=8)).model
    pt = save_grid_surrogate(net, tmp_path / "s", metadata={"note": "test"})
    again = load_grid_surrogate(pt, expected=net.spec)
    assert torch.equal(again.forecast(states, 30.0, seed=1), net.forecast(states, 30.0, seed=1))
    doc = json.loads((tmp_path / "s.json").read_text())
    assert doc["weights_sha256"] == state_dict_sha256(net) and doc["note"] == "test"
    with pytest.raises(SurrogateMismatch, match="model.ny 16 \\(need 32\\)"):
        load_grid_surrogate(pt, expected=replace(net.spec, model={**net.spec.model, "ny": 32, "nx": 32}))
    with pytest.raises(SurrogateMismatch, match="cycle_seconds"):
        load_grid_surrogate(pt, expected=replace(net.spec, cycle_seconds=60.0))
    with pytest.raises(SurrogateMismatch, match="model.H0 90.0 \\(need 89.0\\)"):  # trained around another base state
        load_grid_surrogate(pt, expected=replace(net.spec, model={**net.spec.model, "H0": 89.0}))
    with pytest.raises(SurrogateMismatch, match="physics"):
        load_grid_surrogate(pt, expected=spec(physics, base=replace(physics.config, alpha=4e-4)))
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    with pytest.raises(SurrogateMismatch, match="not a gridded surrogate"):
        load_grid_surrogate(tmp_path / "foreign.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(SurrogateMismatch, match="not a readable"):
        load_grid_surrogate(tmp_path / "junk.pt")
    net.delta_std.fill_(float("nan"))
    save_grid_surrogate(net, tmp_path / "bad")
    with pytest.raises(SurrogateMismatch, match="invalid normalisation"):
        load_grid_surrogate(tmp_path / "bad")


def test_non_finite_output_is_reported(physics: WurschCraig, states: torch.Tensor) -> None:
    net = build_grid_surrogate(spec(physics))
    with torch.no_grad():
        net.linear.bias.fill_(float("nan"))
    with pytest.raises(NonFiniteForecast, match=r"members \[4, 5, 6\], cycle step 1 of 2"):
        net.forecast(states, 60.0, seed=None, member_offset=4)


def test_pairs_are_checked() -> None:
    with pytest.raises(ValueError, match=r"\(N, 4, ny, nx\)"):
        GridPairs(torch.zeros(2, 4, 8, 8), torch.zeros(2, 3, 8, 8))
    bad = torch.zeros(2, 4, 8, 8)
    bad[0, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="NaN or inf"):
        GridPairs(bad, torch.zeros(2, 4, 8, 8))


def test_bfloat16_convolutions_keep_a_float32_normalisation(physics: WurschCraig, states, pairs) -> None:
    net = train_grid_surrogate(pairs, spec(physics), GridTrainConfig(epochs=1, batch_size=8)).model
    full = net.forecast(states, 30.0, seed=None)
    half = net.compute_in(torch.bfloat16).forecast(states, 30.0, seed=None)
    assert half.dtype == torch.float32 and net.state_mean.dtype == torch.float32
    increment = (full - states).abs().amax((0, 2, 3))
    assert bool(((half - full).abs().amax((0, 2, 3)) <= 0.05 * increment + 1e-12).all())


def test_train_config_shares_the_surrogate_checks_and_refuses_zero_weights() -> None:
    with pytest.raises(ValueError, match="val_fraction"):
        GridTrainConfig(val_fraction=0.9)
    with pytest.raises(ValueError, match="not all 0"):
        GridTrainConfig(variable_weights=(0.0, 0.0, 0.0, 0.0))
