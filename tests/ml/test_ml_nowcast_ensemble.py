"""The ensemble (noise-driven) multi-resolution nowcaster: noise input, fair-CRPS training, members on full frames."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from dacast.ml import (
    MultiResConfig,
    MultiResNowcaster,
    NowcastLossConfig,
    NowcastTrainConfig,
    ProgressiveSchedule,
    fair_crps_loss,
    load_nowcaster,
    predict,
    predict_ensemble,
    split_by_time,
    train_nowcast,
)
from dacast.verify import crps_ensemble

pytestmark = pytest.mark.usefixtures("one_thread")


def _model(**kw: Any) -> MultiResConfig:
    base: dict[str, Any] = {"t_in": 2, "t_out": 2, "hidden_channels": (4, 8), "n_outputs": 2, "noise_channels": 2}
    return MultiResConfig(**(base | kw))


def _config(**kw: Any) -> NowcastTrainConfig:
    base: dict[str, Any] = {
        "model": _model(),
        "loss": NowcastLossConfig(nonlocal_scales=(1, 2)),
        "crop_size": 32,
        "batch_size": 2,
        "max_steps": 4,
        "val_every": 2,
        "val_batches": 1,
        "lr": 3e-3,
        "device": "cpu",
        "patience": 0,
        "ensemble_members": 3,
    }
    return NowcastTrainConfig(**(base | kw))


def _split(seq: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    return split_by_time(seq, val_fraction=0.25, gap=6)


def test_noise_drives_the_members_and_is_checked() -> None:
    model = MultiResNowcaster(_model()).eval()
    past = torch.rand(1, 2, 1, 16, 24)
    assert model.is_ensemble and not MultiResNowcaster(_model(noise_channels=0)).is_ensemble
    gen = torch.Generator().manual_seed(0)
    noise = model.sample_noise(3, 16, 24, generator=gen)
    assert noise.shape == (3, 2, 4, 6)  # 1/4 resolution with two levels
    with torch.no_grad():
        out = model(past.expand(3, -1, -1, -1, -1), noise=noise)
        again = model(past.expand(3, -1, -1, -1, -1), noise=noise.clone())
    assert [o.shape for o in out] == [(3, 2, 1, 16, 24), (3, 2, 1, 8, 12)]
    torch.testing.assert_close(out[0], again[0])
    assert (out[0][0] - out[0][1]).abs().max() > 1e-4  # different noise, different member
    with pytest.raises(ValueError, match="noise must be given"):
        model(past)
    with pytest.raises(ValueError, match="noise must have shape"):
        model(past, noise=noise[:1, :, :2])
    with pytest.raises(ValueError, match="noise must be None"):
        MultiResNowcaster(_model(noise_channels=0))(past, noise=noise[:1])
    with pytest.raises(ValueError, match="noise_channels"):
        _model(noise_channels=-1)


def test_fair_crps_loss_is_the_fair_crps_and_weights_and_masks() -> None:
    gen = torch.Generator().manual_seed(0)
    members, target = torch.rand(4, 2, 3, 5, generator=gen), torch.rand(2, 3, 5, generator=gen)
    loss = fair_crps_loss(members, target)
    assert float(loss) == pytest.approx(float(crps_ensemble(members, target, fair=True)), rel=1e-6)
    mask = torch.zeros(2, 3, 5)
    mask[0] = 1
    weight = torch.full((2, 3, 5), 3.0)
    masked = fair_crps_loss(members, target, weight, mask)
    assert float(masked) == pytest.approx(3 * float(crps_ensemble(members[:, 0], target[0], fair=True)), rel=1e-6)
    assert float(fair_crps_loss(target.expand(2, -1, -1, -1), target)) == 0.0
    with pytest.raises(ValueError, match="M >= 2"):
        fair_crps_loss(members[:1], target)


def test_ensemble_training_uses_the_crps_and_spreads_the_members(blob_sequence: np.ndarray) -> None:
    cfg = _config(max_steps=30, val_every=10, schedule=None)
    assert cfg.members == 3 and dataclasses.replace(cfg, model=_model(noise_channels=0)).members == 1
    result = train_nowcast(cfg, *_split(blob_sequence), progress=False)
    first, last = result.history[0], result.history[-1]
    assert "train_level0_crps" in last and "train_level0_huber" not in last and "val_level1_crps" in last
    assert last["val_loss"] < first["val_loss"]
    past = blob_sequence[10:12]
    ens = predict_ensemble(result.model, past, members=4, seed=5, device="cpu")
    assert ens.shape == (4, 2, 48, 48) and (ens >= 0).all()
    assert float(ens.std(0).mean()) > 0  # the members differ
    torch.testing.assert_close(ens[1], predict(result.model, past, device="cpu", noise_seed=6))
    central = predict(result.model, past, device="cpu")  # noise 0
    assert central.shape == (2, 48, 48) and not torch.equal(central, ens[0])
    with pytest.raises(ValueError, match="noise_seed"):
        predict(result.model, past, device="cpu", noise_seed=1, tile=32, overlap=8)
    with pytest.raises(ValueError, match="needs a MultiResNowcaster"):
        predict_ensemble(MultiResNowcaster(_model(noise_channels=0)), past, members=2)


def test_ensemble_training_resumes_exactly(blob_sequence: np.ndarray, tmp_path: Path) -> None:
    cfg = _config(schedule=ProgressiveSchedule(steps_per_stage=(2, 2), fade_steps=1))
    train, val = _split(blob_sequence)
    full = train_nowcast(dataclasses.replace(cfg, checkpoint_dir=tmp_path / "full"), train, val, progress=False)
    part = dataclasses.replace(cfg, checkpoint_dir=tmp_path / "part")
    train_nowcast(dataclasses.replace(part, max_steps=2), train, val, progress=False)
    resumed = train_nowcast(part, train, val, progress=False)
    assert [h["val_loss"] for h in resumed.history] == [h["val_loss"] for h in full.history]
    for key, value in full.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key
    loaded = load_nowcaster(tmp_path / "full")
    assert isinstance(loaded, MultiResNowcaster) and loaded.config.noise_channels == 2


def test_ensemble_members_below_two_are_refused() -> None:
    with pytest.raises(ValueError, match="ensemble_members"):
        _config(ensemble_members=1)
