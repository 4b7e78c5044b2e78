"""Training loop of the ConvLSTM nowcaster: Adam, optional adversarial training, validation,
early stopping, checkpoints and exact resumption.

Checkpoints (in ``checkpoint_dir``, written at every validation):

* ``last.pt``: model, discriminators, both optimisers, the step, the sampling
  generator's state, history and early-stopping counters — everything needed
  to continue as if never interrupted;
* ``best.pt``: the model with the lowest validation loss so far (what
  `dacast.ml.load_nowcaster` loads from a directory);
* ``metrics.json``: the settings and the validation history.

Batches are a pure function of the step (see `train_nowcast`), so a run
resumed from ``last.pt`` reproduces the uninterrupted run with the same seed
on the same device.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import Tensor
from torch.utils.data import Dataset, default_collate

from dacast._device import resolve_device
from dacast.ml.convlstm import ConvLSTMConfig, ConvLSTMNowcaster
from dacast.ml.discriminators import DiscriminatorConfig, SpatialDiscriminator, TemporalDiscriminator
from dacast.ml.nowcast_data import ExtrapolationFn, NowcastDataConfig, RainArray, RainCropDataset
from dacast.ml.nowcast_losses import NowcastLossConfig, discriminator_loss, generator_loss

__all__ = ["NowcastTrainConfig", "TrainResult", "resolve_device", "train_nowcast"]

Device = Literal["auto", "cpu", "cuda"]
Sample = dict[str, Tensor]


@dataclass(frozen=True, kw_only=True)
class NowcastTrainConfig:
    """Settings of `train_nowcast`.

    Attributes:
        model: network settings (``t_in``/``t_out`` also set the sample windows).
        loss: loss weights; ``loss.adversarial_weight > 0`` turns on the discriminators.
        discriminator: settings of both discriminators.
        lr: Adam learning rate of the generator.
        lr_discriminator: Adam learning rate of the discriminators.
        betas: Adam betas of both optimisers.
        batch_size: samples per step.
        max_steps: optimiser steps of the generator in all.
        crop_size: crop side in pixels when raw arrays are given (a multiple of ``model.spatial_multiple``).
        data: sample settings for raw arrays (None: defaults with ``model``'s windows and ``crop_size``).
        seed: seed of sample order, crops and discriminator frame choice.
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.
        checkpoint_dir: where ``last.pt``, ``best.pt`` and ``metrics.json`` go (None: nowhere).
        val_every: validate (and checkpoint) every this many steps and after the last.
        val_batches: validation batches (fixed samples, the same at every validation).
        patience: stop after this many validations without improvement (0: never stop early).
        min_delta: smallest decrease of the validation loss that counts as improvement.
        disc_steps: discriminator updates per generator update (adversarial training only).
        grad_clip: clip the global gradient norm of each model to this (None: no clipping).
        restore_best: return the model with the best validation loss rather than the last one.
    """

    model: ConvLSTMConfig = field(default_factory=ConvLSTMConfig)
    loss: NowcastLossConfig = field(default_factory=NowcastLossConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    lr: float = 1e-3
    lr_discriminator: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    batch_size: int = 4
    max_steps: int = 1000
    crop_size: int = 128
    data: NowcastDataConfig | None = None
    seed: int = 0
    device: Device = "auto"
    checkpoint_dir: Path | None = None
    val_every: int = 100
    val_batches: int = 4
    patience: int = 10
    min_delta: float = 0.0
    disc_steps: int = 1
    grad_clip: float | None = 1.0
    restore_best: bool = True

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.max_steps < 1 or self.val_every < 1 or self.val_batches < 1:
            raise ValueError("batch_size, max_steps, val_every and val_batches must be >= 1")
        if self.patience < 0 or self.disc_steps < 1 or self.lr <= 0 or self.lr_discriminator <= 0:
            raise ValueError("need patience >= 0, disc_steps >= 1 and positive learning rates")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {self.device!r}")
        d = self.data_config
        if (d.t_in, d.t_out) != (self.model.t_in, self.model.t_out):
            raise ValueError(f"data windows ({d.t_in}, {d.t_out}) differ from the model's")
        if d.crop_size % self.model.spatial_multiple:
            raise ValueError(f"crop_size {d.crop_size} is not a multiple of {self.model.spatial_multiple}")

    @property
    def data_config(self) -> NowcastDataConfig:
        """Sample settings used for raw arrays."""
        if self.data is not None:
            return self.data
        return NowcastDataConfig(t_in=self.model.t_in, t_out=self.model.t_out, crop_size=self.crop_size)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of all settings."""
        d = dataclasses.asdict(self)
        d["checkpoint_dir"] = None if self.checkpoint_dir is None else str(self.checkpoint_dir)
        return d


@dataclass(frozen=True, kw_only=True)
class TrainResult:
    """What `train_nowcast` returns.

    Attributes:
        model: the trained network (best validation weights if ``restore_best``), in eval mode.
        history: one dict per validation: step, train_loss (mean since the last validation), val_loss, ...
        step: generator steps done.
        best_step: step of the best validation loss.
        best_val_loss: lowest validation loss.
        stopped_early: whether early stopping ended the run.
        checkpoint_dir: where the checkpoints are (None if not written).
        device: device the model was trained on.
    """

    model: ConvLSTMNowcaster
    history: tuple[dict[str, float], ...]
    step: int
    best_step: int
    best_val_loss: float
    stopped_early: bool
    checkpoint_dir: Path | None
    device: str


def _as_dataset(
    data: Dataset[Sample] | RainArray | Sequence[RainArray],
    config: NowcastTrainConfig,
    extrapolation_fn: ExtrapolationFn | None,
    seed: int,
) -> Dataset[Sample]:
    if isinstance(data, Dataset):
        return data
    return RainCropDataset(data, config.data_config, extrapolation_fn=extrapolation_fn, seed=seed)  # type: ignore[arg-type]


def _batch(dataset: Dataset[Sample], step: int, batch_size: int, seed: int) -> Sample:
    """The batch of ``step``: a pure function of (dataset, step, batch_size, seed).

    A `RainCropDataset` is sampled without repetition (indices ``step·B … step·B + B − 1``);
    any other map-style dataset through a fresh seeded permutation per epoch.
    """
    start = step * batch_size
    if isinstance(dataset, RainCropDataset):
        return default_collate([dataset.sample(start + j) for j in range(batch_size)])
    n = len(dataset)  # type: ignore[arg-type]
    items = []
    for i in range(start, start + batch_size):
        epoch, pos = divmod(i, n)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        items.append(dataset[int(perm[pos])])
    return default_collate(items)


def _to(batch: Sample, device: torch.device) -> Sample:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _validate(
    model: ConvLSTMNowcaster, val: Dataset[Sample], config: NowcastTrainConfig, device: torch.device
) -> dict[str, float]:
    """Mean non-adversarial loss terms over the fixed validation batches."""
    loss_cfg = dataclasses.replace(config.loss, adversarial_weight=0.0)
    sums: dict[str, float] = {}
    model.eval()
    n_val = len(val)  # type: ignore[arg-type]
    with torch.no_grad():
        for k in range(config.val_batches):
            idx = [(k * config.batch_size + j) % n_val for j in range(config.batch_size)]
            b = _to(default_collate([val[i] for i in idx]), device)
            pred = model(b["past"], b.get("extrapolation"))
            _, parts = generator_loss(pred, b["future"], b["future_mask"], config=loss_cfg)
            for key, v in parts.items():
                sums[key] = sums.get(key, 0.0) + v / config.val_batches
    model.train()
    return {"val_loss" if k == "total" else f"val_{k}": v for k, v in sums.items()}


def _save(obj: dict[str, Any], path: Path) -> None:
    """``torch.save`` through a temporary file, synced to disk before the rename: never a half-written checkpoint."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def train_nowcast(
    config: NowcastTrainConfig,
    train_data: Dataset[Sample] | RainArray | Sequence[RainArray],
    val_data: Dataset[Sample] | RainArray | Sequence[RainArray],
    *,
    extrapolation_fn: ExtrapolationFn | None = None,
    progress: bool = True,
    resume: bool = True,
) -> TrainResult:
    """Train a `ConvLSTMNowcaster` (and, with ``loss.adversarial_weight > 0``, its discriminators).

    Each step: the batch of this step (see `_batch`); if adversarial, ``disc_steps``
    discriminator updates on the detached forecast (real label ``loss.real_label``), then one
    generator update on `dacast.ml.generator_loss`. Every ``val_every`` steps: validation loss
    (adversarial terms left out), early-stopping bookkeeping and checkpoints.

    Args:
        config: training settings.
        train_data: a dataset of sample dicts (keys as in `RainCropDataset`) or ``(time, y, x)``
            rain arrays in mm/h, cut with ``config.data_config`` and seed ``config.seed``.
        val_data: the same for validation (arrays cut with seed ``config.seed + 1``); keep its times
            apart from training (`dacast.ml.split_by_time`).
        extrapolation_fn: conventional nowcast for raw arrays when ``config.model.use_extrapolation``.
        progress: show a Rich progress bar.
        resume: continue from ``checkpoint_dir/last.pt`` when it exists.

    Returns:
        A `TrainResult`.
    """
    if config.model.use_extrapolation and extrapolation_fn is None and not isinstance(train_data, Dataset):
        raise ValueError("model.use_extrapolation needs extrapolation_fn (or datasets with 'extrapolation')")
    device = resolve_device(config.device)
    train_ds = _as_dataset(train_data, config, extrapolation_fn, config.seed)
    val_ds = _as_dataset(val_data, config, extrapolation_fn, config.seed + 1)
    adversarial = config.loss.adversarial_weight > 0

    model = ConvLSTMNowcaster(config.model).to(device)
    opt_g = torch.optim.Adam(model.parameters(), lr=config.lr, betas=config.betas)
    spatial = SpatialDiscriminator(config.discriminator).to(device)
    temporal = TemporalDiscriminator(dataclasses.replace(config.discriminator, seed=config.discriminator.seed + 1))
    temporal = temporal.to(device)
    opt_d = torch.optim.Adam(
        [*spatial.parameters(), *temporal.parameters()], lr=config.lr_discriminator, betas=config.betas
    )
    frame_gen = torch.Generator().manual_seed(config.seed)

    step, best_step, best_val, bad, stopped = 0, 0, math.inf, 0, False
    history: list[dict[str, float]] = []
    best_state = copy.deepcopy(model.state_dict())
    ckdir = config.checkpoint_dir
    if ckdir is not None:
        ckdir.mkdir(parents=True, exist_ok=True)
        last = ckdir / "last.pt"
        if resume and last.exists():
            ck = torch.load(last, map_location=device, weights_only=True)
            if ck["model_config"] != dataclasses.asdict(config.model):
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

    def checkpoint() -> None:
        if ckdir is None:
            return
        meta = {"model_config": dataclasses.asdict(config.model), "step": step}
        _save(
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
            },
            ckdir / "last.pt",
        )
        if best_step == step:
            _save({**meta, "model": best_state, "val_loss": best_val}, ckdir / "best.pt")
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
    n_sum = 0
    t_start = time.perf_counter()
    columns = (TextColumn("[bold]nowcast"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"))
    with Progress(*columns, TimeElapsedColumn(), disable=not progress, transient=False) as bar:
        task = bar.add_task("", total=config.max_steps, completed=step)
        while step < config.max_steps and not stopped:
            b = _to(_batch(train_ds, step, config.batch_size, config.seed), device)
            past, future, mask = b["past"], b["future"], b["future_mask"]
            pred = model(past, b.get("extrapolation"))
            parts: dict[str, float] = {}
            frame_idx = None
            if adversarial:
                frame_idx = spatial.select_frames(future.shape[1], generator=frame_gen)
                for _ in range(config.disc_steps):
                    d_loss, d_parts = discriminator_loss(
                        pred.detach(), future, mask, config=config.loss, context=past,
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
            n_sum += 1
            bar.update(task, advance=1, description=f"loss {g_parts['total']:.4f}")

            if step % config.val_every == 0 or step == config.max_steps:
                rec: dict[str, float] = {"step": float(step)}
                rec.update({("train_loss" if k == "total" else f"train_{k}"): v / n_sum for k, v in sums.items()})
                rec.update(_validate(model, val_ds, config, device))
                rec["wall_s"] = time.perf_counter() - t_start
                history.append(rec)
                sums, n_sum = {}, 0
                if rec["val_loss"] < best_val - config.min_delta:
                    best_val, best_step, bad = rec["val_loss"], step, 0
                    best_state = copy.deepcopy(model.state_dict())
                else:
                    bad += 1
                    stopped = config.patience > 0 and bad >= config.patience
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
