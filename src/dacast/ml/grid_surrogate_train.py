"""Training of the gridded surrogate (`dacast.ml.grid_surrogate`) on pairs of states one cycle apart.

The pairs come from whatever a centre has (truth runs in a twin, an archive of
analyses, or the analyses of an earlier surrogate cycle): ``inputs`` are the states
at the start of a cycle *with that cycle's triggering kicks added*
(`GridSurrogate.kicks`), ``targets`` the states a cycle later. The loss is the mean
squared error of the normalised increment, weighted per variable; the last
``val_fraction`` of the pairs (the latest in time) is held out, the best validation
weights are kept, and every random draw (initial weights, batch order) comes from the
seeds in `GridTrainConfig`, so a training is reproducible.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

from dacast._device import resolve_device
from dacast.ml.digest import tensors_sha256
from dacast.ml.fitting import FitHistory, fit_epochs
from dacast.ml.grid_surrogate import GridSurrogate, GridSurrogateSpec, build_grid_surrogate
from dacast.ml.surrogate_train import SurrogateTrainConfig


@dataclass(frozen=True)
class GridPairs:
    """Training pairs of the gridded surrogate.

    Attributes:
        inputs: states at the start of a cycle plus that cycle's kicks, ``(N, 4, ny, nx)``.
        targets: states one cycle later, ``(N, 4, ny, nx)``.
    """

    inputs: Tensor
    targets: Tensor

    def __post_init__(self) -> None:
        if self.inputs.shape != self.targets.shape or self.inputs.ndim != 4 or self.inputs.shape[1] != 4:
            raise ValueError(
                f"inputs and targets must both be (N, 4, ny, nx), got {tuple(self.inputs.shape)} "
                f"and {tuple(self.targets.shape)}"
            )
        if not (bool(torch.isfinite(self.inputs).all()) and bool(torch.isfinite(self.targets).all())):
            raise ValueError("training pairs hold NaN or inf")

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    def sha256(self) -> str:
        """SHA-256 of both arrays (`tensors_sha256`): identifies the training data in the checkpoint's JSON."""
        return tensors_sha256(self.inputs, self.targets)


@dataclass(frozen=True, kw_only=True)
class GridTrainConfig(SurrogateTrainConfig):
    """Settings of `train_grid_surrogate`: those of the Lorenz surrogates' `SurrogateTrainConfig`, other
    defaults for 2-D fields, and a loss weight per variable.

    Attributes:
        variable_weights: loss weight of ``u, v, h, r`` (each >= 0, not all 0).
        (the others: see `SurrogateTrainConfig`; ``seed`` also seeds the initial weights.)
    """

    epochs: int = 20
    batch_size: int = 16
    patience: int = 4
    variable_weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 2.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        w = self.variable_weights
        if len(w) != 4 or not all(v >= 0 and math.isfinite(v) for v in w) or not sum(w) > 0:
            raise ValueError(f"variable_weights must be 4 finite numbers >= 0, not all 0, got {list(w)}")


@dataclass(frozen=True)
class GridTrainResult:
    """What `train_grid_surrogate` returns: the network (best validation weights, CPU, eval) and its history."""

    model: GridSurrogate
    train_loss: list[float]
    val_loss: list[float]
    best_epoch: int
    wall_time_s: float
    metrics: dict[str, Any] = field(default_factory=dict)


def increment_loss(model: GridSurrogate, inputs: Tensor, targets: Tensor, weights: Tensor) -> Tensor:
    """Weighted MSE of the normalised increment (the bounded network output vs ``(target - input) / delta_std``).

    Args:
        model: the surrogate.
        inputs, targets: ``(B, 4, ny, nx)``.
        weights: per-variable weights ``(4,)``.

    Returns:
        A scalar tensor.
    """
    truth = (targets - inputs) / model.delta_std[:, None, None]
    err = (model.normalized_increment(inputs) - truth).pow(2).mean((0, 2, 3))
    return (weights * err).sum() / weights.sum()


def _evaluate(model: GridSurrogate, data: list[Tensor], weights: Tensor, batch: int) -> float:
    model.eval()
    total, n = 0.0, data[0].shape[0]
    with torch.no_grad():
        for s in range(0, n, batch):
            b = slice(s, s + batch)
            total += float(increment_loss(model, data[0][b], data[1][b], weights)) * data[0][b].shape[0]
    return total / n


def train_grid_surrogate(
    pairs: GridPairs,
    spec: GridSurrogateSpec | GridSurrogate,
    config: GridTrainConfig,
    *,
    progress: bool = False,
) -> GridTrainResult:
    """Fit a gridded surrogate to ``pairs``.

    Args:
        pairs: training pairs, in time order (the latest ``val_fraction`` is validation).
        spec: an architecture (fresh network, normalisation fitted on the training part), or a
            network to continue from (warm start: its normalisation is kept).
        config: training settings.
        progress: a Rich progress bar over epochs.

    Returns:
        `GridTrainResult`; ``metrics`` holds the losses, sample counts, wall time, device and data hash.
    """
    start = time.perf_counter()
    device = resolve_device(config.device)
    n = len(pairs)
    n_val = max(1, round(config.val_fraction * n))
    n_train = n - n_val
    if n_train < 1:
        raise ValueError(f"{n} training pairs are too few for a validation split")
    if isinstance(spec, GridSurrogate):
        model = copy.deepcopy(spec)
    else:
        model = build_grid_surrogate(spec, seed=config.seed)
        model.fit_normalization(pairs.inputs[:n_train], pairs.targets[:n_train])
    model = model.to(device=device, dtype=torch.float32)
    tr = [t[:n_train].to(device=device, dtype=torch.float32) for t in (pairs.inputs, pairs.targets)]
    va = [t[n_train:].to(device=device, dtype=torch.float32) for t in (pairs.inputs, pairs.targets)]
    weights = torch.tensor(config.variable_weights, dtype=torch.float32, device=device)
    initial_val = _evaluate(model, va, weights, config.batch_size)
    hist = fit_epochs(
        model,
        batch_loss=lambda b: increment_loss(model, tr[0][b], tr[1][b], weights),
        val_loss=lambda: _evaluate(model, va, weights, config.batch_size),
        settings=config,
        n_train=n_train,
        generator=torch.Generator().manual_seed(config.seed + 1),
        history=FitHistory(best_val=initial_val, best_epoch=-1),
        progress=progress,
    )
    train_hist, val_hist, best, best_epoch = hist.train_loss, hist.val_loss, hist.best_val, hist.best_epoch
    model = model.cpu().eval()
    wall = time.perf_counter() - start
    metrics = {
        "train_loss": train_hist,
        "val_loss": val_hist,
        "initial_val_loss": initial_val,
        "best_val_loss": best,
        "best_epoch": best_epoch,
        "n_train": n_train,
        "n_val": n_val,
        "wall_time_s": wall,
        "device": str(device),
        "training_data_sha256": pairs.sha256(),
        "train": asdict(config),
    }
    return GridTrainResult(model, train_hist, val_hist, best_epoch, wall, metrics)


__all__ = ["GridPairs", "GridTrainConfig", "GridTrainResult", "increment_loss", "train_grid_surrogate"]
