"""Training surrogates on analysis trajectories.

`windows_from_trajectory` turns an analysis trajectory ``(T, n_var)`` into
(history, next state) pairs, optionally weighted by the inverse analysis
variance (confident analyses count more); `windows_against_observations`
pairs the window analysed at ``t`` with the observation at ``t + 1`` instead
(an unbiased but noisy target for the model error). `train_surrogate` fits a
`dacast.ml.SurrogateNet` with Adam on the weighted mean-squared error of the
normalised residual (target minus the network's anchor: the last state, or
the base model's forecast of it), keeps the last ``val_fraction`` of the pairs (a
contiguous block at the end, so neighbours in time do not leak) for
validation, stops early, restores the best weights, and writes a checkpoint
(``<name>.pt`` + ``<name>.json`` with settings and metrics).

Batches are drawn from a `torch.Generator` seeded with ``config.seed``, and
the network's initial weights come from `dacast.ml.build_surrogate`'s seed,
so a run is reproducible on a given device.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from dacast._device import resolve_device
from dacast.ml.fitting import FitHistory, fit_epochs
from dacast.ml.surrogate import SurrogateNet, SurrogateSpec, build_surrogate

Device = Literal["auto", "cpu", "cuda"]


@dataclass(frozen=True)
class SurrogateData:
    """Training pairs.

    Attributes:
        history: shape ``(N, window, n_var)``.
        target: next state, shape ``(N, n_var)``.
        weight: loss weight per pair and variable, shape ``(N, n_var)``, mean 1.
    """

    history: Tensor
    target: Tensor
    weight: Tensor

    def __len__(self) -> int:
        return int(self.history.shape[0])


def windows_from_trajectory(
    trajectory: Tensor,
    window: int,
    *,
    variance: Tensor | None = None,
    skip: int = 0,
    floor: float = 1e-3,
) -> SurrogateData:
    """(history, next state) pairs from a trajectory sampled every surrogate step.

    Args:
        trajectory: shape ``(T, n_var)``; pairs that touch a non-finite row are dropped.
        window: number of past states per pair.
        variance: analysis variance, shape ``(T, n_var)``; the weight of a pair is
            ``1 / (variance[target] + floor)``, normalised to mean 1 per variable.
            ``None``: every weight is 1.
        skip: leading rows to leave out (spin-up).
        floor: added to the variance (state units squared) so no weight is infinite.

    Returns:
        `SurrogateData` with ``N = T - skip - window`` pairs (fewer if rows are non-finite).
    """
    traj = trajectory[skip:]
    t_len = traj.shape[0]
    if t_len <= window:
        raise ValueError(f"a trajectory of {t_len} usable rows is too short for window {window}")
    idx = torch.arange(t_len - window)[:, None] + torch.arange(window + 1)  # (N, window + 1)
    seq = traj[idx]  # (N, window + 1, n_var)
    ok = torch.isfinite(seq).all(-1).all(-1)
    if variance is not None:
        var = variance[skip:][idx[:, -1]]
        ok &= torch.isfinite(var).all(-1)
        weight = 1.0 / (var.clamp_min(0) + floor)
    else:
        weight = torch.ones(seq.shape[0], seq.shape[-1], dtype=seq.dtype)
    seq, weight = seq[ok], weight[ok]
    if seq.shape[0] == 0:
        raise ValueError("no finite training pairs in the trajectory")
    weight = weight / weight.mean(0)
    return SurrogateData(seq[:, :-1].contiguous(), seq[:, -1].contiguous(), weight)


def windows_against_observations(
    windows: Tensor,
    observations: Tensor,
    obs_indices: list[int] | Tensor,
    *,
    skip: int = 0,
) -> SurrogateData:
    """(analysed window at ``t``, observation at ``t + 1``) pairs: training against observations.

    The regression target ``y(t+1) - M(x(t))`` is the model error plus
    observation noise that is independent of the inputs (the window analysed at
    ``t`` never saw ``y(t+1)``), so its least-squares fit is the full model
    error, not the damped fraction ``K`` an analysis increment carries
    (Farchi et al. 2021; Brajard et al. 2021). The windows must be the
    analyses *at time t* of a delay-embedded state (what the filter hands the
    surrogate as initial condition); a later smoother's windows have seen
    ``y(t+1)`` and would teach the network its noise.

    Args:
        windows: analysis mean of the window of past states at each time, shape
            ``(T, window, n_var)`` (oldest first); row ``c`` valid with observation row ``c``.
        observations: shape ``(T, n_obs)``.
        obs_indices: the observed variable of each observation column, ``n_obs`` entries in ``[0, n_var)``.
        skip: leading rows to leave out (spin-up).

    Returns:
        `SurrogateData` with ``N <= T - skip - 1`` pairs (rows with non-finite values dropped):
        ``target`` holds the observations in the observed variables and the
        analysis elsewhere; ``weight`` is 0 on unobserved variables (mean 1).
    """
    if windows.ndim != 3 or windows.shape[0] != observations.shape[0]:
        raise ValueError(
            f"windows must be (T, window, n_var) with T = {observations.shape[0]} rows, got {tuple(windows.shape)}"
        )
    idx = torch.as_tensor(obs_indices, dtype=torch.long)
    if idx.numel() != observations.shape[-1]:
        raise ValueError(f"{idx.numel()} observation indices for {observations.shape[-1]} observation columns")
    hist = windows[skip:-1]
    target = windows[skip + 1 :, -1].clone()
    target[:, idx] = observations[skip + 1 :].to(windows.dtype)
    ok = torch.isfinite(hist).all(-1).all(-1) & torch.isfinite(target).all(-1)
    if not bool(ok.any()):
        raise ValueError("no finite training pairs")
    weight = torch.zeros(windows.shape[-1], dtype=windows.dtype)
    weight[idx] = windows.shape[-1] / idx.unique().numel()
    hist, target = hist[ok], target[ok]
    return SurrogateData(hist.contiguous(), target.contiguous(), weight.expand(target.shape).clone())


@dataclass(frozen=True, kw_only=True)
class SurrogateTrainConfig:
    """Settings of `train_surrogate`.

    Attributes:
        epochs: maximum passes over the training pairs.
        batch_size: pairs per step.
        lr: Adam learning rate (decays by 10 over the run with a cosine schedule).
        weight_decay: Adam weight decay.
        val_fraction: the last fraction of the pairs, held out for validation, in (0, 0.5].
        patience: epochs without a relative validation improvement of ``min_delta`` before stopping.
        min_delta: relative improvement that resets the patience counter.
        seed: seeds batch order.
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
    """

    epochs: int = 60
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.0
    val_fraction: float = 0.2
    patience: int = 8
    min_delta: float = 1e-3
    seed: int = 0
    device: Device = "cpu"

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.patience < 1:
            raise ValueError("epochs, batch_size and patience must be >= 1")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0 < self.val_fraction <= 0.5:
            raise ValueError(f"val_fraction must lie in (0, 0.5], got {self.val_fraction}")
        if self.weight_decay < 0 or self.min_delta < 0:
            raise ValueError("weight_decay and min_delta must be >= 0")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")


@dataclass(frozen=True)
class SurrogateTrainResult:
    """Outcome of `train_surrogate`.

    Attributes:
        model: the trained network (best validation weights), on the CPU, in eval mode.
        train_loss: mean training loss per epoch.
        val_loss: validation loss per epoch (normalised increment MSE).
        best_epoch: 0-based epoch of the weights kept.
        wall_time_s: seconds spent.
        checkpoint: path of the ``.pt`` file, if written.
    """

    model: SurrogateNet
    train_loss: list[float]
    val_loss: list[float]
    best_epoch: int
    wall_time_s: float
    checkpoint: Path | None = None
    metrics: dict[str, Any] = field(default_factory=dict)


def _loss(model: SurrogateNet, hist: Tensor, residual: Tensor, weight: Tensor) -> Tensor:
    pred = model.normalized_increment(hist)
    return (weight * (pred - residual / model.delta_std).pow(2)).mean()


def train_surrogate(
    data: SurrogateData,
    spec: SurrogateSpec | SurrogateNet,
    config: SurrogateTrainConfig,
    *,
    init_seed: int = 0,
    checkpoint: str | Path | None = None,
    settings: dict[str, Any] | None = None,
    progress: bool = False,
) -> SurrogateTrainResult:
    """Fit a surrogate to ``data``.

    Args:
        data: training pairs (see `windows_from_trajectory`).
        spec: an architecture (fresh network with seed ``init_seed``) or a network
            to continue from (warm start; its normalisation is kept).
        config: training settings.
        init_seed: seed of a fresh network's weights.
        checkpoint: path without suffix; writes ``.pt`` (weights, architecture,
            normalisation) and ``.json`` (settings and metrics).
        settings: extra settings recorded in the JSON.
        progress: show a Rich progress bar over epochs.

    Returns:
        `SurrogateTrainResult`.
    """
    start = time.perf_counter()
    device = resolve_device(config.device)
    n = len(data)
    n_val = max(1, int(round(config.val_fraction * n)))
    if n - n_val < 1:
        raise ValueError(f"{n} training pairs are too few for a validation split")
    if isinstance(spec, SurrogateNet):
        model = copy.deepcopy(spec)
    else:
        model = build_surrogate(spec, seed=init_seed)
        model.fit_normalization(data.history[: n - n_val], data.target[: n - n_val])
    # what the network must learn: target minus the anchor (last state or base-model forecast), in float64
    with torch.no_grad():
        residual = data.target.double() - model.anchor(data.history[:, -1].double())
    model = model.to(device=device, dtype=torch.float32)
    tr = [t[: n - n_val].to(device=device, dtype=torch.float32) for t in (data.history, residual, data.weight)]
    va = [t[n - n_val :].to(device=device, dtype=torch.float32) for t in (data.history, residual, data.weight)]
    gen = torch.Generator().manual_seed(config.seed)
    n_train = n - n_val
    hist = fit_epochs(
        model,
        batch_loss=lambda b: _loss(model, tr[0][b], tr[1][b], tr[2][b]),
        val_loss=lambda: float(_loss(model, *va)),
        settings=config,
        n_train=n_train,
        generator=gen,
        history=FitHistory(best_val=math.inf, best_epoch=0),
        progress=progress,
    )
    train_hist, val_hist, best, best_epoch = hist.train_loss, hist.val_loss, hist.best_val, hist.best_epoch
    model = model.cpu().eval()
    wall = time.perf_counter() - start
    metrics = {
        "train_loss": train_hist,
        "val_loss": val_hist,
        "best_epoch": best_epoch,
        "best_val_loss": best,
        "final_train_loss": train_hist[best_epoch],
        "n_train": n_train,
        "n_val": n_val,
        "wall_time_s": wall,
        "device": str(device),
    }
    path = None
    if checkpoint is not None:
        path = save_surrogate(
            model, checkpoint, settings={"train": asdict(config), **(settings or {})}, metrics=metrics
        )
    return SurrogateTrainResult(model, train_hist, val_hist, best_epoch, wall, path, metrics)


def save_surrogate(
    model: SurrogateNet,
    path: str | Path,
    *,
    settings: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
) -> Path:
    """Write ``path.pt`` (architecture + weights + normalisation) and ``path.json`` (settings, metrics)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pt = path.with_suffix(".pt")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save({"spec": model.to_dict(), "state_dict": state}, pt)
    doc = {"spec": model.to_dict(), "settings": settings or {}, "metrics": metrics or {}}
    path.with_suffix(".json").write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")
    return pt


def load_surrogate(path: str | Path) -> SurrogateNet:
    """The network saved by `save_surrogate` (``.pt`` suffix optional), on the CPU in eval mode."""
    pt = Path(path).with_suffix(".pt")
    if not pt.is_file():
        raise FileNotFoundError(f"no surrogate checkpoint at {pt}")
    blob = torch.load(pt, map_location="cpu", weights_only=True)
    model = build_surrogate(SurrogateSpec(**blob["spec"]))
    model.load_state_dict(blob["state_dict"])
    return model.eval()


__all__ = [
    "SurrogateData",
    "SurrogateTrainConfig",
    "SurrogateTrainResult",
    "load_surrogate",
    "save_surrogate",
    "train_surrogate",
    "windows_against_observations",
    "windows_from_trajectory",
]
