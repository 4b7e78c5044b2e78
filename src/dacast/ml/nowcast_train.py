"""Training loop of the ConvLSTM nowcasters: Adam, optional adversarial training, validation,
early stopping, checkpoints and exact resumption.

The generator is a `ConvLSTMNowcaster` (``model`` a `ConvLSTMConfig`) or the multi-resolution
`dacast.ml.MultiResNowcaster` (``model`` a `MultiResConfig`), trained coarse to fine by a
`ProgressiveSchedule` (see `train_nowcast` for its losses, validation and discriminators).

Checkpoints (in ``checkpoint_dir``, written at every validation):

* ``last.pt``: model, discriminators, both optimisers, the step, the sampling
  generator's state, history and early-stopping counters — everything needed
  to continue as if never interrupted;
* ``best.pt``: the model with the lowest validation loss so far (what
  `dacast.ml.load_nowcaster` loads from a directory);
* ``metrics.json``: the settings and the validation history.

Both ``.pt`` files hold ``model_config`` (``dataclasses.asdict`` of the model's
settings) and ``model_kind`` (``"convlstm"`` or ``"multires"``: the class to
build; checkpoints without it are ConvLSTM ones).

Batches and the progressive stage are pure functions of the step (see
`train_nowcast`), so a run resumed from ``last.pt`` reproduces the
uninterrupted run with the same seed on the same device.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import time
from collections.abc import Mapping, Sequence

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import Tensor
from torch.utils.data import Dataset

from dacast._device import resolve_device
from dacast.ml.discriminators import SpatialDiscriminator, TemporalDiscriminator
from dacast.ml.multires import MultiResConfig, multires_targets, pool_log_rain
from dacast.ml.nowcast_data import ExtrapolationFn, RainArray
from dacast.ml.nowcast_losses import discriminator_loss, generator_loss
from dacast.ml.nowcast_steps import (
    Sample,
    as_dataset,
    batch_of_step,
    member_batch,
    multires_loss,
    save_atomic,
    to_device,
    validate,
)
from dacast.ml.nowcast_train_config import Nowcaster, NowcastTrainConfig, TrainResult, build_model, model_kind

__all__ = ["NowcastTrainConfig", "Nowcaster", "TrainResult", "model_kind", "resolve_device", "train_nowcast"]


def train_nowcast(
    config: NowcastTrainConfig,
    train_data: Dataset[Sample] | RainArray | Sequence[RainArray],
    val_data: Dataset[Sample] | RainArray | Sequence[RainArray],
    *,
    extrapolation_fn: ExtrapolationFn | None = None,
    progress: bool = True,
    resume: bool = True,
    initial_weights: Mapping[str, Tensor] | None = None,
) -> TrainResult:
    """Train a `ConvLSTMNowcaster` or `MultiResNowcaster` (and, with ``loss.adversarial_weight > 0``,
    the discriminators).

    Each step: the batch of this step (see `_batch`); if adversarial, ``disc_steps``
    discriminator updates on the detached forecast (real label ``loss.real_label``), then one
    generator update on `dacast.ml.generator_loss`. Every ``val_every`` steps: validation loss
    (adversarial terms left out), early-stopping bookkeeping and checkpoints.

    A `MultiResNowcaster` (``config.model`` a `MultiResConfig`) runs at ``(stage, alpha) =
    config.stage_at(step)`` (`ProgressiveSchedule.at`; a pure function of the step, so resumption stays
    exact) and emits its active outputs, finest ``k0 = n_outputs - 1 - stage`` first. The truth is
    pooled to every resolution in rain space (`multires_targets`), and the generator loss is
    ``Σ_k w_k · generator_loss_k`` over the active outputs (``w = config.weights``): Huber and
    non-local at each resolution (the non-local term is left out where a field is too small for its
    Laplacians, under ``2·(q_max/2) + 2`` pixels at every ``nonlocal_scales`` factor: 10 by default),
    adversarial only at ``k0``. The discriminators judge the finest active output against the truth
    at that resolution, with the past context pooled alike (`pool_log_rain`); they are fully
    convolutional with a global mean, so the same ones judge every resolution. Validation uses the
    ``(stage, alpha)`` of the step just trained, and ``val_loss`` is the unweighted loss of output
    ``k0`` (the full-resolution one in the last stage); losses of different stages judge different
    resolutions, so the best model and early stopping compare validations of the current stage only
    (the comparison restarts when the stage changes), and early stopping waits for the last stage.
    History records also hold ``stage``, ``alpha`` and each resolution's terms. An ensemble network
    (``noise_channels > 0``) runs ``config.members`` members of every sample, each with its own noise
    (`member_batch`, a pure function of the step), and its pixelwise loss is the fair CRPS over them.

    Args:
        config: training settings.
        train_data: a dataset of sample dicts (keys as in `RainCropDataset`) or ``(time, y, x)``
            rain arrays in mm/h, cut with ``config.data_config`` and seed ``config.seed``.
        val_data: the same for validation (arrays cut with seed ``config.seed + 1``); keep its times
            apart from training (`dacast.ml.split_by_time`).
        extrapolation_fn: conventional nowcast for raw arrays when ``config.model.use_extrapolation``.
        progress: show a Rich progress bar.
        resume: continue from ``checkpoint_dir/last.pt`` when it exists.
        initial_weights: a state dict of the generator to start a new run from (fine-tuning a pre-trained
            network; the optimisers and discriminators start afresh); a resumed run continues from
            ``last.pt`` instead.

    Returns:
        A `TrainResult`.
    """
    if config.model.use_extrapolation and extrapolation_fn is None and not isinstance(train_data, Dataset):
        raise ValueError("model.use_extrapolation needs extrapolation_fn (or datasets with 'extrapolation')")
    device = resolve_device(config.device)
    train_ds = as_dataset(train_data, config, extrapolation_fn, config.seed)
    val_ds = as_dataset(val_data, config, extrapolation_fn, config.seed + 1)
    adversarial = config.loss.adversarial_weight > 0

    multires = isinstance(config.model, MultiResConfig)
    kind = model_kind(config.model)
    model: Nowcaster = build_model(config.model)
    if initial_weights is not None:
        model.load_state_dict(initial_weights)
    model = model.to(device)
    opt_g = torch.optim.Adam(model.parameters(), lr=config.lr, betas=config.betas)
    spatial = SpatialDiscriminator(config.discriminator).to(device)
    temporal = TemporalDiscriminator(dataclasses.replace(config.discriminator, seed=config.discriminator.seed + 1))
    temporal = temporal.to(device)
    opt_d = torch.optim.Adam(
        [*spatial.parameters(), *temporal.parameters()], lr=config.lr_discriminator, betas=config.betas
    )
    frame_gen = torch.Generator().manual_seed(config.seed)

    step, best_step, best_val, bad, stopped = 0, 0, math.inf, 0, False
    best_stage = 0  # the stage whose validations the best model and early stopping compare
    final_stage = config.n_outputs - 1  # early stopping waits for it
    history: list[dict[str, float]] = []
    best_state = copy.deepcopy(model.state_dict())
    ckdir = config.checkpoint_dir
    if ckdir is not None:
        ckdir.mkdir(parents=True, exist_ok=True)
        last = ckdir / "last.pt"
        if resume and last.exists():
            ck = torch.load(last, map_location=device, weights_only=True)
            if ck.get("model_kind", "convlstm") != kind or ck["model_config"] != dataclasses.asdict(config.model):
                raise ValueError(f"{last} holds a different model configuration; use another checkpoint_dir")
            model.load_state_dict(ck["model"])
            opt_g.load_state_dict(ck["optimizer"])
            spatial.load_state_dict(ck["spatial"])
            temporal.load_state_dict(ck["temporal"])
            opt_d.load_state_dict(ck["optimizer_discriminator"])
            frame_gen.set_state(ck["frame_generator"].cpu())
            best_state = ck["best_model"]
            step, best_step, best_val = ck["step"], ck["best_step"], ck["best_val_loss"]
            bad, stopped, history = ck["bad_validations"], ck["stopped_early"], list(ck["history"])
            best_stage = ck.get("best_stage", 0)

    def checkpoint() -> None:
        if ckdir is None:
            return
        meta = {"model_config": dataclasses.asdict(config.model), "model_kind": kind, "step": step}
        save_atomic(
            {
                **meta,
                "model": model.state_dict(),
                "optimizer": opt_g.state_dict(),
                "spatial": spatial.state_dict(),
                "temporal": temporal.state_dict(),
                "optimizer_discriminator": opt_d.state_dict(),
                "frame_generator": frame_gen.get_state(),
                "best_model": best_state,
                "best_step": best_step,
                "best_val_loss": best_val,
                "bad_validations": bad,
                "stopped_early": stopped,
                "history": history,
                "best_stage": best_stage,
            },
            ckdir / "last.pt",
        )
        if best_step == step:
            save_atomic({**meta, "model": best_state, "val_loss": best_val, "stage": best_stage}, ckdir / "best.pt")
        summary = {
            "settings": config.to_dict(),
            "device": str(device),
            "step": step,
            "best_step": best_step,
            "best_val_loss": best_val,
            "stopped_early": stopped,
            "history": history,
        }
        (ckdir / "metrics.json").write_text(json.dumps(summary, indent=2, default=str))

    model.train()
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}  # per term: resolutions join the sums when their stage begins
    t_start = time.perf_counter()
    columns = (TextColumn("[bold]nowcast"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"))
    with Progress(*columns, TimeElapsedColumn(), disable=not progress, transient=False) as bar:
        task = bar.add_task("", total=config.max_steps, completed=step)
        while step < config.max_steps and not stopped:
            b = to_device(batch_of_step(train_ds, step, config.batch_size, config.seed), device)
            b, noise = member_batch(model, b, config.members, config.seed * 1_000_003 + step)
            past, future, mask = b["past"], b["future"], b["future_mask"]
            stage, alpha = config.stage_at(step)
            if multires:
                # Judged by the discriminators: the finest active output k0, its truth and the pooled context.
                preds = model(past, b.get("extrapolation"), stage=stage, alpha=alpha, noise=noise)
                targets = multires_targets(future, config.n_outputs, mask)
                k0 = config.n_outputs - 1 - stage
                pred, (real, real_mask), context = preds[0], targets[k0], pool_log_rain(past, 2**k0)
            else:
                pred = model(past, b.get("extrapolation"))
                real, real_mask, context = future, mask, past
            parts: dict[str, float] = {}
            frame_idx = None
            if adversarial:
                frame_idx = spatial.select_frames(future.shape[1], generator=frame_gen)
                for _ in range(config.disc_steps):
                    d_loss, d_parts = discriminator_loss(
                        pred.detach(), real, real_mask, config=config.loss, context=context,
                        spatial=spatial, temporal=temporal, frame_idx=frame_idx,
                    )  # fmt: skip
                    opt_d.zero_grad(set_to_none=True)
                    d_loss.backward()
                    if config.grad_clip is not None:
                        torch.nn.utils.clip_grad_norm_(
                            [*spatial.parameters(), *temporal.parameters()], config.grad_clip
                        )
                    opt_d.step()
                    parts.update(d_parts)
            if multires:
                loss, g_parts = multires_loss(
                    preds, targets, config.weights, config.loss, context=context,
                    spatial=spatial if adversarial else None, temporal=temporal if adversarial else None,
                    frame_idx=frame_idx, members=config.members,
                )  # fmt: skip
            else:
                loss, g_parts = generator_loss(
                    pred, future, mask, config=config.loss, context=past,
                    spatial=spatial if adversarial else None, temporal=temporal if adversarial else None,
                    frame_idx=frame_idx,
                )  # fmt: skip
            opt_g.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            opt_g.step()
            step += 1
            parts.update(g_parts)
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v
                counts[k] = counts.get(k, 0) + 1
            bar.update(task, advance=1, description=f"loss {g_parts['total']:.4f}")

            if step % config.val_every == 0 or step == config.max_steps:
                rec: dict[str, float] = {"step": float(step)}
                if multires:
                    rec.update({"stage": float(stage), "alpha": alpha})
                rec.update({("train_loss" if k == "total" else f"train_{k}"): v / counts[k] for k, v in sums.items()})
                rec.update(validate(model, val_ds, config, device, stage, alpha))
                rec["wall_s"] = time.perf_counter() - t_start
                history.append(rec)
                sums, counts = {}, {}
                if stage != best_stage:  # a new resolution is judged: its losses are compared afresh
                    best_val, bad, best_stage = math.inf, 0, stage
                if rec["val_loss"] < best_val - config.min_delta:
                    best_val, best_step, bad = rec["val_loss"], step, 0
                    best_state = copy.deepcopy(model.state_dict())
                else:
                    bad += 1
                    stopped = config.patience > 0 and bad >= config.patience and stage == final_stage
                bar.update(task, description=f"loss {g_parts['total']:.4f} val {rec['val_loss']:.4f}")
                checkpoint()

    if config.restore_best and history:
        model.load_state_dict(best_state)
    model.eval()
    return TrainResult(
        model=model,
        history=tuple(history),
        step=step,
        best_step=best_step,
        best_val_loss=best_val,
        stopped_early=stopped,
        checkpoint_dir=ckdir,
        device=str(device),
    )
