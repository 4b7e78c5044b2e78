"""Settings and result of the nowcaster training loop (`dacast.ml.train_nowcast`).

`NowcastTrainConfig` trains a `ConvLSTMNowcaster` (``model`` a `ConvLSTMConfig`) or the
multi-resolution `dacast.ml.MultiResNowcaster` (``model`` a `MultiResConfig`), coarse to fine
by a `ProgressiveSchedule`; `build_model` makes the network of either.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeAlias

from dacast.ml.convlstm import ConvLSTMConfig, ConvLSTMNowcaster
from dacast.ml.discriminators import DiscriminatorConfig
from dacast.ml.multires import MultiResConfig, MultiResNowcaster, ProgressiveSchedule
from dacast.ml.nowcast_data import NowcastDataConfig
from dacast.ml.nowcast_losses import NowcastLossConfig

__all__ = ["Device", "NowcastTrainConfig", "Nowcaster", "TrainResult", "build_model", "model_kind"]

Device = Literal["auto", "cpu", "cuda"]
#: The networks `train_nowcast` trains and `dacast.ml.load_nowcaster` loads.
Nowcaster: TypeAlias = ConvLSTMNowcaster | MultiResNowcaster


def model_kind(config: ConvLSTMConfig) -> Literal["convlstm", "multires"]:
    """The checkpoints' ``model_kind`` of a network with settings ``config``: ``"multires"`` for a
    `MultiResConfig`, else ``"convlstm"``."""
    return "multires" if isinstance(config, MultiResConfig) else "convlstm"


@dataclass(frozen=True, kw_only=True)
class NowcastTrainConfig:
    """Settings of `train_nowcast`.

    Attributes:
        model: network settings (``t_in``/``t_out`` also set the sample windows); a `MultiResConfig`
            trains a `MultiResNowcaster`, any other `ConvLSTMConfig` a `ConvLSTMNowcaster`.
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
        schedule: coarse-to-fine schedule of a `MultiResConfig` model, one stage per output
            (``schedule.n_stages == model.n_outputs``); None: all outputs from step 0. Only with a
            `MultiResConfig`.
        resolution_weights: loss weight of each output resolution, finest first (``model.n_outputs``
            values ``>= 0``; 0 switches a resolution's loss off); None: all 1. Only with a `MultiResConfig`.
        ensemble_members: members per sample of an ensemble network (``model.noise_channels > 0``;
            ``>= 2``), each with its own noise; its pixelwise loss is then the fair CRPS over them
            (`dacast.ml.fair_crps_loss`, weighted by ``loss.huber_weight``) instead of the Huber loss.
            Each step costs about this many times a deterministic one. Unused by other networks.
    """

    model: ConvLSTMConfig | MultiResConfig = field(default_factory=ConvLSTMConfig)
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
    schedule: ProgressiveSchedule | None = None
    resolution_weights: tuple[float, ...] | None = None
    ensemble_members: int = 2

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.max_steps < 1 or self.val_every < 1 or self.val_batches < 1:
            raise ValueError("batch_size, max_steps, val_every and val_batches must be >= 1")
        if self.patience < 0 or self.disc_steps < 1 or self.lr <= 0 or self.lr_discriminator <= 0:
            raise ValueError("need patience >= 0, disc_steps >= 1 and positive learning rates")
        if self.ensemble_members < 2:
            raise ValueError(f"ensemble_members must be >= 2, got {self.ensemble_members}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {self.device!r}")
        d = self.data_config
        if (d.t_in, d.t_out) != (self.model.t_in, self.model.t_out):
            raise ValueError(f"data windows ({d.t_in}, {d.t_out}) differ from the model's")
        if d.crop_size % self.model.spatial_multiple:
            raise ValueError(f"crop_size {d.crop_size} is not a multiple of {self.model.spatial_multiple}")
        self._check_multires()

    def _check_multires(self) -> None:
        """`ValueError` unless ``schedule`` and ``resolution_weights`` fit ``model``."""
        if not isinstance(self.model, MultiResConfig):
            if self.schedule is not None or self.resolution_weights is not None:
                raise ValueError("schedule and resolution_weights need model to be a MultiResConfig")
            return
        n = self.model.n_outputs
        if self.schedule is not None and self.schedule.n_stages != n:
            raise ValueError(
                f"schedule has {self.schedule.n_stages} stages but the model has {n} outputs (one stage per output)"
            )
        w = self.resolution_weights
        if w is None:
            return
        if len(w) != n:
            raise ValueError(f"resolution_weights needs one weight per output ({n}), got {len(w)}")
        if not all(math.isfinite(x) and x >= 0 for x in w) or max(w) == 0:
            raise ValueError(f"resolution_weights must be finite, >= 0 and not all 0, got {w}")
        if self.schedule is not None and w[-1] == 0:
            raise ValueError("with a schedule, the coarsest resolution weight must be > 0 (stage 0 trains only it)")

    @property
    def n_outputs(self) -> int:
        """Output resolutions of the model (1 for a `ConvLSTMNowcaster`)."""
        return self.model.n_outputs if isinstance(self.model, MultiResConfig) else 1

    @property
    def members(self) -> int:
        """Members per sample in a training step: ``ensemble_members`` for an ensemble network, else 1."""
        noisy = isinstance(self.model, MultiResConfig) and self.model.noise_channels > 0
        return self.ensemble_members if noisy else 1

    @property
    def weights(self) -> tuple[float, ...]:
        """Loss weight of each output resolution, finest first (``resolution_weights`` or all 1)."""
        return self.resolution_weights if self.resolution_weights is not None else (1.0,) * self.n_outputs

    def stage_at(self, step: int) -> tuple[int, float]:
        """``(stage, alpha)`` of the 0-based training ``step``: ``schedule.at(step)``; without a schedule
        ``(n_outputs - 1, 1.0)`` (every output; ``(0, 1.0)`` for a `ConvLSTMNowcaster`)."""
        if self.schedule is None:
            return self.n_outputs - 1, 1.0
        return self.schedule.at(step)

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
            (multi-resolution models also: stage, alpha and the terms of each resolution ``k``,
            ``train_level{k}_*`` and ``val_level{k}_*``).
        step: generator steps done.
        best_step: step of the best validation loss (multi-resolution: within the last validated stage).
        best_val_loss: lowest validation loss (multi-resolution: within the last validated stage).
        stopped_early: whether early stopping ended the run.
        checkpoint_dir: where the checkpoints are (None if not written).
        device: device the model was trained on.
    """

    model: Nowcaster
    history: tuple[dict[str, float], ...]
    step: int
    best_step: int
    best_val_loss: float
    stopped_early: bool
    checkpoint_dir: Path | None
    device: str


def build_model(config: ConvLSTMConfig) -> Nowcaster:
    """A `MultiResNowcaster` for a `MultiResConfig`, else a `ConvLSTMNowcaster`."""
    return MultiResNowcaster(config) if isinstance(config, MultiResConfig) else ConvLSTMNowcaster(config)
