"""Training the multi-resolution nowcaster: progressive stages, per-resolution losses, adversarial path on
the finest active output, exact resumption mid-schedule, checkpoints that load and predict, config checks."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from dacast.ml import (
    ConvLSTMConfig,
    ConvLSTMNowcaster,
    MultiResConfig,
    MultiResNowcaster,
    NowcastLossConfig,
    NowcastTrainConfig,
    ProgressiveSchedule,
    load_nowcaster,
    moving_blobs,
    nonlocal_loss,
    pool_log_rain,
    predict,
    rain_to_log,
    split_by_time,
    train_nowcast,
)
from dacast.ml import nowcast_train as nt
from dacast.ml.nowcast_losses import nonlocal_fits

pytestmark = pytest.mark.usefixtures("one_thread")

CROP = 32  # outputs 32, 16 and 8 pixels: the 8-pixel one is too small for the non-local loss


def _split(seq: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    return split_by_time(seq, val_fraction=0.25, gap=6)


def _model(**kw: Any) -> MultiResConfig:
    base: dict[str, Any] = {"t_in": 2, "t_out": 2, "hidden_channels": (4, 8), "n_outputs": 3, "seed": 0}
    return MultiResConfig(**(base | kw))


def _config(**kw: Any) -> NowcastTrainConfig:
    base: dict[str, Any] = {
        "model": _model(),
        "loss": NowcastLossConfig(nonlocal_scales=(1, 2)),
        "crop_size": CROP,
        "batch_size": 2,
        "max_steps": 6,
        "val_every": 1,
        "val_batches": 1,
        "lr": 3e-3,
        "device": "cpu",
        "seed": 0,
        "patience": 0,
    }
    return NowcastTrainConfig(**(base | kw))


def _active(stage: int, n_outputs: int = 3) -> list[int]:
    return list(range(n_outputs - 1 - stage, n_outputs))


# --------------------------------------------------------------------------- stages and losses


def test_stages_switch_at_scheduled_steps_with_per_resolution_losses(blob_sequence: np.ndarray) -> None:
    weights = (1.0, 0.5, 2.0)
    cfg = _config(schedule=ProgressiveSchedule(steps_per_stage=(2, 2, 2), fade_steps=1), resolution_weights=weights)
    result = train_nowcast(cfg, *_split(blob_sequence), progress=False)
    hist = result.history
    # One record per step; each holds the (stage, alpha) of the step just trained.
    assert [h["step"] for h in hist] == [1, 2, 3, 4, 5, 6]
    assert [h["stage"] for h in hist] == [0, 0, 1, 1, 2, 2]
    assert [h["alpha"] for h in hist] == [1.0, 1.0, 0.0, 1.0, 0.0, 1.0]
    for h in hist:
        active = _active(int(h["stage"]))
        for k in range(3):
            assert (f"train_level{k}_huber" in h) == (k in active), (h["step"], k)
            assert (f"val_level{k}_huber" in h) == (k in active), (h["step"], k)
        # The 8-pixel output is too small for the non-local loss; the 16- and 32-pixel ones are not.
        assert "train_level2_nonlocal" not in h and "val_level2_nonlocal" not in h
        assert all(f"train_level{k}_nonlocal" in h for k in active if k < 2)
        # The train loss is the weighted sum of the active resolutions' losses (one step per record).
        expected = sum(weights[k] * h[f"train_level{k}_total"] for k in active)
        assert h["train_loss"] == pytest.approx(expected, rel=1e-5)
        # The validation loss is the unweighted loss of the finest active output.
        k0 = active[0]
        assert h["val_loss"] == h[f"val_level{k0}_total"]
        assert h["val_huber"] == h[f"val_level{k0}_huber"]
        assert all(math.isfinite(v) for v in h.values())
    assert isinstance(result.model, MultiResNowcaster)


def test_without_schedule_all_outputs_train_and_the_loss_decreases(blob_sequence: np.ndarray) -> None:
    cfg = _config(batch_size=4, max_steps=24, val_every=6, val_batches=2, lr=1e-2)
    result = train_nowcast(cfg, *_split(blob_sequence), progress=False)
    assert [h["stage"] for h in result.history] == [2, 2, 2, 2]
    losses = [h["val_loss"] for h in result.history]
    assert all("val_level0_total" in h and "val_level2_total" in h for h in result.history)
    assert min(losses[1:]) < 0.9 * losses[0], losses
    coarse = [h["val_level2_total"] for h in result.history]
    assert min(coarse[1:]) < 0.9 * coarse[0], coarse


def test_best_model_and_early_stopping_compare_within_the_stage(blob_sequence: np.ndarray, tmp_path: Path) -> None:
    # min_delta so large that no validation improves on a finite best: only a restarted comparison (new stage)
    # gives a new best, and patience 1 would stop at once were early stopping not held back to the last stage.
    cfg = _config(
        schedule=ProgressiveSchedule(steps_per_stage=(2, 2, 4)),
        max_steps=10,
        patience=1,
        min_delta=1e9,
        checkpoint_dir=tmp_path,
    )
    result = train_nowcast(cfg, *_split(blob_sequence), progress=False)
    assert result.stopped_early and result.step == 6
    assert result.best_step == 5 and result.best_val_loss == result.history[4]["val_loss"]
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert best["stage"] == 2 and best["step"] == 5 and best["model_kind"] == "multires"
    loaded = load_nowcaster(tmp_path)
    for key, value in result.model.state_dict().items():  # restore_best: the model of step 5
        assert torch.equal(loaded.state_dict()[key], value), key


# --------------------------------------------------------------------------- adversarial


def test_discriminators_judge_the_finest_active_output(
    blob_sequence: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[tuple[int, ...], ...]] = []
    original = nt.discriminator_loss

    def spy(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None, **kw: Any) -> Any:
        seen.append((tuple(pred.shape), tuple(target.shape), tuple(mask.shape), tuple(kw["context"].shape)))
        return original(pred, target, mask, **kw)

    monkeypatch.setattr(nt, "discriminator_loss", spy)
    loss = NowcastLossConfig(nonlocal_scales=(1, 2), adversarial_weight=0.1)
    cfg = _config(loss=loss, schedule=ProgressiveSchedule(steps_per_stage=(1, 1, 1)), max_steps=3, disc_steps=2)
    result = train_nowcast(cfg, *_split(blob_sequence), progress=False)
    sizes = [CROP // 4] * 2 + [CROP // 2] * 2 + [CROP] * 2  # two discriminator updates per step
    assert seen == [((2, 2, 1, s, s), (2, 2, 1, s, s), (2, 2, 1, s, s), (2, 2, 1, s, s)) for s in sizes]
    for h in result.history:
        k0 = _active(int(h["stage"]))[0]
        # Only the finest active output gets adversarial terms; validation leaves them out.
        assert {key for key in h if "adv" in key} == {f"train_level{k0}_adv_spatial", f"train_level{k0}_adv_temporal"}
        for key in ("train_disc_spatial", "train_disc_temporal", f"train_level{k0}_adv_spatial"):
            assert math.isfinite(h[key]), key


# --------------------------------------------------------------------------- resumption


def _final_states(ckdir: Path) -> dict[str, Any]:
    ck = torch.load(ckdir / "last.pt", weights_only=True)
    return {k: ck[k] for k in ("model", "spatial", "temporal", "best_model")}


@pytest.mark.parametrize(
    ("stop", "first_stages"),
    [(2, [(1.0, 0.0)]), (4, [(1.0, 0.0), (2.0, 0.0)])],
    ids=["before-last-stage", "in-last-stage-fade"],
)
def test_resume_mid_schedule_equals_uninterrupted_run(
    stop: int, first_stages: list[tuple[float, float]], blob_sequence: np.ndarray, tmp_path: Path
) -> None:
    # Stages 0 | 1 1 | 2 2 2 2 (steps 0-6), fade-ins over 2 steps. Stopped after step 2, the resumed run fades
    # stage 1 in and enters stage 2; stopped after 4, its next validation (step 6) is of the same stage, and with
    # min_delta that large only a restored stage keeps the best model of step 4.
    loss = NowcastLossConfig(nonlocal_scales=(1, 2), adversarial_weight=0.1)
    schedule = ProgressiveSchedule(steps_per_stage=(1, 2, 4), fade_steps=2)
    cfg = _config(loss=loss, schedule=schedule, max_steps=7, val_every=2, min_delta=1e9)
    train, val = _split(blob_sequence)
    full = train_nowcast(dataclasses.replace(cfg, checkpoint_dir=tmp_path / "full"), train, val, progress=False)
    assert [(h["stage"], h["alpha"]) for h in full.history] == [(1.0, 0.0), (2.0, 0.0), (2.0, 1.0), (2.0, 1.0)]
    part = dataclasses.replace(cfg, checkpoint_dir=tmp_path / "part")
    first = train_nowcast(dataclasses.replace(part, max_steps=stop), train, val, progress=False)
    assert first.step == stop and [(h["stage"], h["alpha"]) for h in first.history] == first_stages
    resumed = train_nowcast(part, train, val, progress=False)
    assert resumed.step == 7
    for key in ("stage", "alpha", "val_loss", "train_loss", "train_disc_total"):
        assert [h[key] for h in resumed.history] == [h[key] for h in full.history], key
    assert resumed.best_step == full.best_step == 4
    a, b = _final_states(tmp_path / "full"), _final_states(tmp_path / "part")
    for name in a:
        for key in a[name]:
            assert torch.equal(a[name][key], b[name][key]), (name, key)


# --------------------------------------------------------------------------- loading and prediction


def test_load_and_predict_multires_checkpoint(blob_sequence: np.ndarray, tmp_path: Path) -> None:
    cfg = _config(max_steps=2, val_every=2, checkpoint_dir=tmp_path)
    result = train_nowcast(cfg, *_split(blob_sequence), progress=False)
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    assert last["model_kind"] == "multires" and last["model_config"] == dataclasses.asdict(cfg.model)
    model = load_nowcaster(tmp_path)
    assert isinstance(model, MultiResNowcaster) and model.config == cfg.model
    for key, value in result.model.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    past = moving_blobs(2, 37, 45, seed=0)
    past[0, :5, :5] = np.nan
    out = predict(model, past, device="cpu")
    assert out.shape == (2, 37, 45) and torch.isfinite(out).all() and (out >= 0).all()
    # The finest output of the network on the input edge-padded to 40 x 48, cropped.
    z = rain_to_log(F.pad(torch.from_numpy(np.nan_to_num(past))[None], (0, 3, 0, 3), mode="replicate"))
    with torch.no_grad():
        direct = model(z[:, :, None])
    torch.testing.assert_close(out, torch.expm1(direct[0][0, :, 0, :37, :45]))
    coarse = predict(model, past, device="cpu", resolution=1)
    assert coarse.shape == (2, 19, 23)
    torch.testing.assert_close(coarse, torch.expm1(direct[1][0, :, 0, :19, :23]))
    with pytest.raises(ValueError, match="resolution"):
        predict(model, past, device="cpu", resolution=3)


def _pass_through_model() -> MultiResNowcaster:
    """A network whose output k is softplus of the extrapolation pooled to resolution k (the head's skip input)."""
    model = MultiResNowcaster(_model(use_extrapolation=True))
    with torch.no_grad():
        for head in model.heads:
            head.weight.zero_()
            head.bias.zero_()
            head.weight[0, -1, 1, 1] = 1.0  # centre tap on the extrapolation channel
    return model


@pytest.mark.parametrize("resolution", [0, 1, 2])
def test_predict_resolution_pads_and_tiles_exactly(resolution: int) -> None:
    model = _pass_through_model()
    past = torch.from_numpy(moving_blobs(2, 37, 45, seed=1))
    ext = torch.from_numpy(moving_blobs(2, 37, 45, seed=2))
    f = 2**resolution
    rows, cols = -(-37 // f), -(-45 // f)
    pad = F.pad(ext[None], (0, cols * f - 45, 0, rows * f - 37), mode="replicate")[0]
    expected = torch.expm1(F.softplus(pool_log_rain(rain_to_log(pad), f)))
    whole = predict(model, past, ext, device="cpu", resolution=resolution)
    tiled = predict(model, past, ext, device="cpu", resolution=resolution, tile=16, overlap=4, tile_batch=5)
    assert whole.shape == tiled.shape == (2, rows, cols)
    torch.testing.assert_close(whole, expected)
    torch.testing.assert_close(tiled, expected)
    if resolution == 2:
        with pytest.raises(ValueError, match="overlap"):
            predict(model, past, ext, device="cpu", resolution=resolution, tile=16, overlap=2)


def test_convlstm_checkpoints_old_and_new_still_load(
    tiny_model_config: ConvLSTMConfig, blob_sequence: np.ndarray, tmp_path: Path
) -> None:
    net = ConvLSTMNowcaster(tiny_model_config)
    old = tmp_path / "old.pt"  # written before model_kind existed
    torch.save({"model_config": dataclasses.asdict(tiny_model_config), "model": net.state_dict(), "step": 3}, old)
    loaded = load_nowcaster(old)
    assert type(loaded) is ConvLSTMNowcaster and loaded.config == tiny_model_config
    for key, value in net.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    torch.save(
        {"model_config": dataclasses.asdict(tiny_model_config), "model": net.state_dict(), "model_kind": "x"}, old
    )
    with pytest.raises(ValueError, match="model_kind"):
        load_nowcaster(old)
    # New ConvLSTM checkpoints say what they are; a multi-resolution run cannot resume from them.
    cfg = _config(model=dataclasses.replace(tiny_model_config, t_in=2, t_out=2), max_steps=1, checkpoint_dir=tmp_path)
    train_nowcast(cfg, *_split(blob_sequence), progress=False)
    assert torch.load(tmp_path / "last.pt", weights_only=True)["model_kind"] == "convlstm"
    assert type(load_nowcaster(tmp_path)) is ConvLSTMNowcaster
    with pytest.raises(ValueError, match="different model"):
        train_nowcast(_config(checkpoint_dir=tmp_path), *_split(blob_sequence), progress=False)


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"model": ConvLSTMConfig(t_in=2, t_out=2), "schedule": ProgressiveSchedule(steps_per_stage=(1,))}, "MultiRes"),
        ({"model": ConvLSTMConfig(t_in=2, t_out=2), "resolution_weights": (1.0,)}, "MultiRes"),
        ({"schedule": ProgressiveSchedule(steps_per_stage=(1, 1))}, "stages"),
        ({"resolution_weights": (1.0, 1.0)}, "one weight per output"),
        ({"resolution_weights": (1.0, -1.0, 1.0)}, ">= 0"),
        ({"resolution_weights": (1.0, math.nan, 1.0)}, "finite"),
        ({"resolution_weights": (0.0, 0.0, 0.0)}, "not all 0"),
        (
            {"schedule": ProgressiveSchedule(steps_per_stage=(1, 1, 1)), "resolution_weights": (1.0, 1.0, 0.0)},
            "coarsest",
        ),
        ({"crop_size": 30}, "multiple"),
    ],
)
def test_bad_config_combinations_raise(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _config(**kwargs)


def test_good_config_combinations() -> None:
    cfg = _config(schedule=ProgressiveSchedule(steps_per_stage=(1, 1, 1)), resolution_weights=(0.0, 1.0, 1.0))
    assert cfg.weights == (0.0, 1.0, 1.0) and cfg.stage_at(1) == (1, 1.0) and cfg.stage_at(99) == (2, 1.0)
    assert _config().weights == (1.0, 1.0, 1.0) and _config().stage_at(0) == (2, 1.0)
    plain = _config(model=ConvLSTMConfig(t_in=2, t_out=2))
    assert plain.n_outputs == 1 and plain.stage_at(5) == (0, 1.0)


@pytest.mark.parametrize("size", [8, 9, 10, 11, 20, 21])
def test_nonlocal_skip_rule_matches_nonlocal_loss(size: int) -> None:
    loss = NowcastLossConfig(nonlocal_scales=(1, 2))
    x = torch.rand(1, 2, size, size, generator=torch.Generator().manual_seed(size))
    try:
        nonlocal_loss(x, x.flip(-1), config=loss)
        works = True
    except ValueError:
        works = False
    assert nonlocal_fits(size, size, loss) == works == (size >= 10)


def test_initial_weights_start_a_new_run_but_not_a_resumed_one(blob_sequence: np.ndarray, tmp_path: Path) -> None:
    train, val = _split(blob_sequence)
    start = MultiResNowcaster(_model(seed=7)).state_dict()
    cfg = _config(max_steps=1, val_every=1, lr=1e-9, restore_best=False, checkpoint_dir=tmp_path / "run")
    seeded = MultiResNowcaster(cfg.model).state_dict()  # seed 0: what the run would start from by itself
    result = train_nowcast(cfg, train, val, progress=False, initial_weights=start)
    after = result.model.state_dict()
    assert all(torch.allclose(after[k], v, atol=1e-6) for k, v in start.items())  # one step of lr 1e-9 from them
    assert not all(torch.allclose(after[k], v, atol=1e-6) for k, v in seeded.items())
    # a second call resumes from last.pt: the weights it learnt, not the initial ones again
    other = {k: v + 1.0 for k, v in start.items()}
    resumed = train_nowcast(dataclasses.replace(cfg, max_steps=2), train, val, progress=False, initial_weights=other)
    assert resumed.step == 2
    assert all(torch.allclose(resumed.model.state_dict()[k], v, atol=1e-6) for k, v in start.items())
