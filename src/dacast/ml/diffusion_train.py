"""Training a forecast-error prior (`ForecastErrorPrior`) on forecast/truth pairs of filter runs.

Given forecast means ``m``, spreads ``s`` and true states ``x`` ``(samples, n)`` from
a training period, `train_error_prior` fits the normalisation (state mean and std;
the error scale ``c`` = RMS of ``x - m``) and trains the conditional denoiser of
``e = (x - m) / c`` given ``(m, log s)`` with EDM's denoising loss, for a fixed
number of steps (AdamW, one-cycle learning rate). A held-out fraction (the last
samples: the latest times) gives a validation loss at a fixed set of noise draws.
Deterministic for a seed on the CPU.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import Tensor

from dacast.ml.diffusion import DenoiserSpec, NoiseSchedule, PeriodicDenoiserNet, denoising_loss
from dacast.ml.diffusion_filter import ErrorPriorSpec, ForecastErrorPrior
from dacast.ml.digest import tensors_sha256


@dataclass(frozen=True, kw_only=True)
class DiffusionTrainConfig:
    """How the prior is trained.

    Attributes:
        steps: optimiser steps.
        batch_size: samples per step.
        learning_rate: peak of the one-cycle schedule.
        weight_decay: AdamW's.
        val_fraction: the last fraction of the samples held out for validation.
        seed: batches and noise.
        channels, layers, kernel: the denoiser (see `DenoiserSpec`).
        spread_channel: condition on the forecast spread too (see `ErrorPriorSpec`).
        schedule: training noise levels.
    """

    steps: int = 3000
    batch_size: int = 256
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    val_fraction: float = 0.1
    seed: int = 0
    channels: int = 64
    layers: int = 6
    kernel: int = 5
    spread_channel: bool = False
    schedule: NoiseSchedule = field(default_factory=lambda: NoiseSchedule(sigma_max=80.0))

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch_size must be >= 1")
        if not 0 < self.val_fraction < 0.5:
            raise ValueError(f"val_fraction must lie in (0, 0.5), got {self.val_fraction}")
        if not self.learning_rate > 0 or self.weight_decay < 0:
            raise ValueError("learning_rate must be positive and weight_decay non-negative")


@dataclass(frozen=True)
class PriorTrainResult:
    """A trained prior and how it was made (for its JSON card)."""

    prior: ForecastErrorPrior
    record: dict[str, Any]


def train_denoiser(
    net: PeriodicDenoiserNet,
    x0: Tensor,
    cond: Tensor | None,
    *,
    n_train: int,
    config: DiffusionTrainConfig,
    progress: bool = False,
    label: str = "training prior",
) -> dict[str, float]:
    """Train ``net`` in place on clean states ``x0`` ``(N, state_channels, *grid)`` (the first ``n_train``).

    AdamW with a one-cycle learning rate for ``config.steps`` steps of ``config.batch_size`` random
    samples, EDM's denoising loss; ``cond`` ``(N, C, *grid)`` or ``None``. Returns the mean loss of the
    first and last 100 steps, the validation loss of the held-out samples (fixed noise draws) and the seconds.
    """
    opt = torch.optim.AdamW(net.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.learning_rate, total_steps=config.steps)
    g = torch.Generator().manual_seed(config.seed)
    device = x0.device

    def pick(t: Tensor | None, idx: Tensor | slice) -> Tensor | None:
        return None if t is None else t[idx]

    start, losses = time.perf_counter(), []
    columns = (TextColumn(f"[bold]{label}[/]"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"))
    with Progress(*columns, TimeElapsedColumn(), disable=not progress) as bar:
        task = bar.add_task("", total=config.steps)
        net.train()
        for step in range(config.steps):
            idx = torch.randint(0, n_train, (config.batch_size,), generator=g).to(device)
            loss = denoising_loss(net, x0[idx], pick(cond, idx), config.schedule, g)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            if (step + 1) % 100 == 0:
                bar.update(task, completed=step + 1, description=f"loss {sum(losses[-100:]) / 100:.3f}")
    net.eval().requires_grad_(False)
    with torch.no_grad():
        held = slice(n_train, None)
        val = float(denoising_loss(net, x0[held], pick(cond, held), config.schedule,
                                   torch.Generator().manual_seed(config.seed + 1)))  # fmt: skip
    return {
        "loss_first_100": sum(losses[:100]) / len(losses[:100]),
        "loss_last_100": sum(losses[-100:]) / len(losses[-100:]),
        "validation_loss": val,
        "seconds": time.perf_counter() - start,
    }


def train_error_prior(
    mean: Tensor,
    spread: Tensor,
    truth: Tensor,
    *,
    model: dict[str, Any],
    networks: tuple[str, ...],
    config: DiffusionTrainConfig,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> PriorTrainResult:
    """Fit the normalisation and train the prior on ``(samples, n)`` forecast means, spreads and truths (state units).

    Args:
        mean, spread, truth: the training pairs, each ``(samples, n)``.
        model: settings of the model that made the forecasts (kept in the prior's spec).
        networks: names of the observation networks of the runs.
        config: steps, batch, learning rate, network size.
        device: where to train.
        progress: a Rich progress bar over the steps.
    """
    if not (mean.shape == spread.shape == truth.shape and mean.ndim == 2):
        raise ValueError(f"mean, spread and truth must share one (samples, n) shape, got {tuple(mean.shape)}, "
                         f"{tuple(spread.shape)}, {tuple(truth.shape)}")  # fmt: skip
    n_val = max(1, int(config.val_fraction * mean.shape[0]))
    n_train = mean.shape[0] - n_val
    if n_train < config.batch_size:
        raise ValueError(f"{n_train} training samples are fewer than batch_size {config.batch_size}")
    err = truth - mean
    spec = ErrorPriorSpec(
        n_state=int(mean.shape[1]),
        model=dict(model),
        networks=tuple(networks),
        state_mean=float(mean[:n_train].mean()),
        state_std=float(mean[:n_train].std()),
        spread_scale=float(err[:n_train].pow(2).mean().sqrt()),
        denoiser=asdict(DenoiserSpec(cond_channels=1 + config.spread_channel, channels=config.channels,
                                     layers=config.layers, kernel=config.kernel)),
        spread_channel=config.spread_channel,
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):  # the initial weights are a function of the seed too
        torch.manual_seed(config.seed)
        prior = ForecastErrorPrior(spec).to(device)
    cond = prior.features(mean, spread).float().to(device)
    e = (err / spec.spread_scale).float()[:, None].to(device)
    fit = train_denoiser(prior.net, e, cond, n_train=n_train, config=config, progress=progress)
    prior.eval().requires_grad_(False)
    record = {
        "train": {**asdict(config), "schedule": asdict(config.schedule)},
        "samples": {"train": n_train, "validation": n_val},
        **fit,
        "training_data_sha256": tensors_sha256(mean, spread, truth),
    }
    return PriorTrainResult(prior=prior, record=record)


__all__ = ["DiffusionTrainConfig", "PriorTrainResult", "train_denoiser", "train_error_prior"]
