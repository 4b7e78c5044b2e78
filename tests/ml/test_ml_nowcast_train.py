"""Training: loss goes down, adversarial steps run, early stopping, exact resumption, checkpoints."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dacast.ml import NowcastTrainConfig, load_nowcaster, split_by_time, train_nowcast


def _split(seq: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    return split_by_time(seq, val_fraction=0.25, gap=6)


def test_tiny_training_reduces_loss(tiny_train_config: NowcastTrainConfig, blob_sequence: np.ndarray) -> None:
    train, val = _split(blob_sequence)
    result = train_nowcast(tiny_train_config, train, val, progress=False)
    losses = [h["val_loss"] for h in result.history]
    assert len(losses) == 4 and result.step == 40
    assert all(np.isfinite(losses))
    assert min(losses[1:]) < 0.9 * losses[0]
    assert result.best_val_loss == min(losses)
    assert not result.model.training


def test_adversarial_training_runs(tiny_train_config: NowcastTrainConfig, blob_sequence: np.ndarray) -> None:
    loss = dataclasses.replace(tiny_train_config.loss, adversarial_weight=0.1)
    cfg = dataclasses.replace(tiny_train_config, loss=loss, max_steps=3, val_every=3, disc_steps=2)
    train, val = _split(blob_sequence)
    result = train_nowcast(cfg, train, val, progress=False)
    (rec,) = result.history
    for key in ("train_disc_spatial", "train_disc_temporal", "train_adv_spatial", "train_adv_temporal", "val_loss"):
        assert np.isfinite(rec[key]), key
    assert "val_adv_spatial" not in rec  # validation leaves the adversarial terms out


def _final_states(ckdir: Path) -> dict[str, dict[str, torch.Tensor]]:
    ck = torch.load(ckdir / "last.pt", weights_only=True)
    return {k: ck[k] for k in ("model", "spatial", "temporal")}


def test_resume_equals_uninterrupted_run(
    tiny_train_config: NowcastTrainConfig, blob_sequence: np.ndarray, tmp_path: Path
) -> None:
    loss = dataclasses.replace(tiny_train_config.loss, adversarial_weight=0.1)
    cfg = dataclasses.replace(tiny_train_config, loss=loss, max_steps=6, val_every=2, patience=0)
    train, val = _split(blob_sequence)
    full = train_nowcast(dataclasses.replace(cfg, checkpoint_dir=tmp_path / "full"), train, val, progress=False)
    # "Interrupted" after step 4 (the last checkpoint), then resumed with the full budget.
    part = dataclasses.replace(cfg, checkpoint_dir=tmp_path / "part")
    first = train_nowcast(dataclasses.replace(part, max_steps=4), train, val, progress=False)
    assert first.step == 4
    resumed = train_nowcast(part, train, val, progress=False)
    assert resumed.step == 6
    assert [h["val_loss"] for h in resumed.history] == [h["val_loss"] for h in full.history]
    a, b = _final_states(tmp_path / "full"), _final_states(tmp_path / "part")
    for name in a:
        for key in a[name]:
            assert torch.equal(a[name][key], b[name][key]), (name, key)
    # Resuming a finished run does nothing; resume=False starts again from scratch.
    again = train_nowcast(part, train, val, progress=False)
    assert again.step == 6 and len(again.history) == 3
    fresh = train_nowcast(part, train, val, progress=False, resume=False)
    assert [h["val_loss"] for h in fresh.history] == [h["val_loss"] for h in full.history]
    metrics = json.loads((tmp_path / "part" / "metrics.json").read_text())
    assert metrics["step"] == 6 and len(metrics["history"]) == 3
    assert metrics["settings"]["loss"]["adversarial_weight"] == 0.1


def test_early_stopping_and_loading(
    tiny_train_config: NowcastTrainConfig, blob_sequence: np.ndarray, tmp_path: Path
) -> None:
    cfg = dataclasses.replace(
        tiny_train_config, max_steps=20, val_every=2, patience=2, min_delta=1e9, checkpoint_dir=tmp_path
    )
    train, val = _split(blob_sequence)
    result = train_nowcast(cfg, train, val, progress=False)
    assert result.stopped_early and result.step == 6 and result.best_step == 2
    assert {"last.pt", "best.pt", "metrics.json"} <= {p.name for p in tmp_path.iterdir()}
    loaded = load_nowcaster(tmp_path)
    for key, value in result.model.state_dict().items():  # restore_best: the model of step 2
        assert torch.equal(loaded.state_dict()[key], value)
    with pytest.raises(ValueError, match="different model"):
        other = dataclasses.replace(cfg.model, hidden_channels=(4, 8))
        train_nowcast(dataclasses.replace(cfg, model=other), train, val, progress=False)


def test_config_validation(tiny_train_config: NowcastTrainConfig) -> None:
    with pytest.raises(ValueError, match="multiple"):
        dataclasses.replace(tiny_train_config, crop_size=30)
    with pytest.raises(ValueError, match="device"):
        dataclasses.replace(tiny_train_config, device="tpu")  # type: ignore[arg-type]
