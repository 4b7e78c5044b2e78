"""Training surrogates: dataset builder, linear-system recovery, checkpoints, reproducibility."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from dacast.ml import SurrogateSpec, SurrogateTrainConfig, load_surrogate, train_surrogate, windows_from_trajectory
from dacast.ml.surrogate_train import windows_against_observations

pytestmark = pytest.mark.usefixtures("one_thread")


def _linear_trajectory(n: int = 600) -> tuple[torch.Tensor, torch.Tensor]:
    """x_{t+1} = A x_t (a slowly decaying rotation) kicked by small noise, shape (n, 2)."""
    th = 0.3
    c, s = math.cos(th), math.sin(th)
    a = 0.98 * torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    x = torch.zeros(n, 2, dtype=torch.float64)
    x[0] = torch.tensor([3.0, 0.0])
    for t in range(1, n):
        x[t] = a @ x[t - 1] + 0.3 * torch.randn(2, generator=gen, dtype=torch.float64)
    return x, a


def test_windows_from_trajectory_shapes_weights_and_nan() -> None:
    traj = torch.arange(30.0, dtype=torch.float64).reshape(10, 3)
    var = torch.ones(10, 3, dtype=torch.float64)
    var[6] = 4.0
    traj[2, 1] = float("nan")
    d = windows_from_trajectory(traj, 2, variance=var, skip=1)
    # rows 1..9 -> 7 pairs; the ones touching row 2 (pairs starting at 1 and 2) dropped
    assert d.history.shape == (5, 2, 3) and d.target.shape == (5, 3)
    torch.testing.assert_close(d.target[0], traj[5])
    torch.testing.assert_close(d.weight.mean(0), torch.ones(3, dtype=torch.float64))
    assert float(d.weight[1, 0]) < float(d.weight[0, 0])  # target row 6 has 4x the variance
    with pytest.raises(ValueError, match="too short"):
        windows_from_trajectory(traj[:2], 2)


def test_training_recovers_a_linear_system(tmp_path: Path) -> None:
    traj, a = _linear_trajectory()
    data = windows_from_trajectory(traj, 1)
    spec = SurrogateSpec(kind="lstm", n_var=2, dt=1.0, window=1, hidden=16)
    cfg = SurrogateTrainConfig(epochs=25, batch_size=32, lr=1e-2, patience=10, seed=0)
    res = train_surrogate(data, spec, cfg, checkpoint=tmp_path / "lin")
    assert res.val_loss[res.best_epoch] < res.val_loss[0]
    x = torch.tensor([[2.0, -1.0], [-1.5, 2.5], [0.5, 0.5]], dtype=torch.float64)
    pred = res.model.step(x, 0.0, 1.0)
    torch.testing.assert_close(pred, x @ a.T, atol=0.15, rtol=0.0)
    meta = json.loads((tmp_path / "lin.json").read_text())
    assert meta["spec"]["kind"] == "lstm" and meta["metrics"]["best_epoch"] == res.best_epoch
    again = load_surrogate(tmp_path / "lin.pt")
    torch.testing.assert_close(again.step(x, 0.0, 1.0), pred)


def test_windows_against_observations_pairs_window_at_t_with_observation_at_t_plus_1() -> None:
    windows = torch.arange(10 * 2 * 3, dtype=torch.float64).reshape(10, 2, 3)
    obs = -torch.arange(10 * 2, dtype=torch.float64).reshape(10, 2)
    windows[4, 0, 0] = float("nan")
    d = windows_against_observations(windows, obs, [0, 2], skip=1)
    assert d.history.shape == (7, 2, 3) and d.target.shape == (7, 3)  # rows 1..8 -> 8 pairs, row 4 dropped
    torch.testing.assert_close(d.history[0], windows[1])
    torch.testing.assert_close(d.target[0], torch.tensor([obs[2, 0], windows[2, -1, 1], obs[2, 1]]))
    torch.testing.assert_close(d.weight[0], torch.tensor([1.5, 0.0, 1.5], dtype=torch.float64))
    with pytest.raises(ValueError, match="observation indices"):
        windows_against_observations(windows, obs, [0])


def test_training_against_noisy_observations_recovers_the_full_model_error() -> None:
    """True x' = A x + b; the base model (the identity) misses A - I and b; targets carry noise 10x the signal."""
    traj, a = _linear_trajectory(4000)
    b = torch.tensor([0.05, -0.05], dtype=torch.float64)
    traj = traj + b / (1 - 0.98)  # shift so the dynamics has an offset; x' - x is small against the noise
    gen = torch.Generator().manual_seed(1)
    obs = traj + 1.0 * torch.randn(traj.shape, generator=gen, dtype=torch.float64)
    d = windows_against_observations(traj[:, None, :], obs, [0, 1])
    spec = SurrogateSpec(kind="lstm", n_var=2, dt=1.0, window=1, hidden=8)
    cfg = SurrogateTrainConfig(epochs=20, batch_size=128, lr=1e-2, patience=5, seed=0)
    res = train_surrogate(d, spec, cfg)
    x = traj[100:400:30]
    pred = res.model.step(x, 0.0, 1.0)
    truth = traj[101:401:30]
    err, persistence = (pred - truth).pow(2).mean().sqrt(), (x - truth).pow(2).mean().sqrt()
    assert float(err) < 0.6 * float(persistence), (float(err), float(persistence))


def test_training_is_reproducible_and_warm_start_keeps_input() -> None:
    traj, _ = _linear_trajectory(200)
    data = windows_from_trajectory(traj, 2)
    spec = SurrogateSpec(kind="lstm", n_var=2, dt=1.0, window=2, hidden=4)
    cfg = SurrogateTrainConfig(epochs=3, batch_size=32, seed=3)
    r1 = train_surrogate(data, spec, cfg, init_seed=1)
    r2 = train_surrogate(data, spec, cfg, init_seed=1)
    assert r1.val_loss == r2.val_loss
    before = {k: v.clone() for k, v in r1.model.state_dict().items()}
    r3 = train_surrogate(data, r1.model, cfg)
    assert all(torch.equal(before[k], v) for k, v in r1.model.state_dict().items())
    assert r3.model is not r1.model


def test_bad_train_config_raises() -> None:
    with pytest.raises(ValueError, match="val_fraction"):
        SurrogateTrainConfig(val_fraction=0.9)
