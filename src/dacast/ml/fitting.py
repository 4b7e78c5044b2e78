"""The epoch loop the surrogate trainers share: shuffled mini-batches, a validation loss per epoch, early stopping.

`fit_epochs` runs Adam-style optimisation over ``n_train`` examples (the caller's ``batch_loss``
turns a batch of indices into a loss), evaluates ``val_loss`` after each epoch, keeps the weights
of the best validation loss (relative improvement ``min_delta``) and stops after ``patience``
epochs without one; at the end the best weights are back in the model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import Tensor, nn


@dataclass
class FitHistory:
    """Losses per epoch, and the epoch (0-based; -1: the starting weights) and value of the best validation loss."""

    best_val: float
    best_epoch: int
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)


class EpochSettings(Protocol):
    """What `fit_epochs` reads of a trainer's config (`dacast.ml.surrogate_train.SurrogateTrainConfig` has it)."""

    lr: float
    weight_decay: float
    batch_size: int
    epochs: int
    patience: int
    min_delta: float


def fit_epochs(
    model: nn.Module,
    *,
    batch_loss: Callable[[Tensor], Tensor],
    val_loss: Callable[[], float],
    settings: EpochSettings,
    n_train: int,
    generator: torch.Generator,
    history: FitHistory,
    progress: bool = False,
) -> FitHistory:
    """Train ``model`` in place; returns ``history`` filled in.

    Args:
        model: the network (put in train mode for the batches, eval mode for validation).
        batch_loss: scalar loss of the examples at the given indices ``(b,)`` (on the model's device).
        val_loss: the validation loss (called in eval mode, without gradients).
        settings: Adam's ``lr`` and ``weight_decay`` (cosine annealing to ``lr / 10`` over ``epochs``,
            stepped per epoch), ``batch_size``, the maximum ``epochs``, and early stopping after
            ``patience`` epochs without a relative improvement of ``min_delta``.
        n_train: number of training examples.
        generator: orders the examples (CPU generator: reproducible on any device).
        history: the starting best (``best_val``, ``best_epoch``); appended to.
        progress: a Rich progress bar over epochs.
    """
    device = next(model.parameters()).device
    batch_size, epochs = settings.batch_size, settings.epochs
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=settings.lr / 10)
    best_state = None
    waited = 0
    columns = (TextColumn("[bold]training[/]"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"))
    with Progress(*columns, TimeElapsedColumn(), disable=not progress) as bar:
        task = bar.add_task("", total=epochs)
        for epoch in range(epochs):
            model.train()
            order = torch.randperm(n_train, generator=generator).to(device)
            total = 0.0
            for s in range(0, n_train, batch_size):
                b = order[s : s + batch_size]
                loss = batch_loss(b)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * b.numel()
            scheduler.step()
            model.eval()
            with torch.no_grad():
                val = float(val_loss())
            history.train_loss.append(total / n_train)
            history.val_loss.append(val)
            bar.update(task, advance=1, description=f"val {val:.3g}")
            if val < history.best_val * (1 - settings.min_delta):
                history.best_val, history.best_epoch, waited = val, epoch, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                waited += 1
                if waited >= settings.patience:
                    break
    if best_state is not None:
        model.load_state_dict(best_state)
    return history


__all__ = ["EpochSettings", "FitHistory", "fit_epochs"]
