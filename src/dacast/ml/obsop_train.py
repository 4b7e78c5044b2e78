"""Training, saving and loading the learned radiance operator's networks (`dacast.ml.obsop`).

`train_radiance_network` fits a `RadianceNetwork` to (features, brightness
temperature) pairs with Adam on the mean-squared error of the standardised
targets: a random ``val_fraction`` of the rows is held out, training stops
when the validation loss has not improved for ``patience`` epochs, and the best
validation weights are kept. Split, batch order and initial weights come from
one `torch.Generator` seeded with ``config.seed`` (reproducible on a device).
In the paper (Liang et al. 2023) the targets are observations paired with
background forecasts, so the network learns the observation bias too; the
checkpoint records what they were as ``kind``.

A checkpoint is a folder with ``weights.pt`` (the ``state_dict`` only, loaded
with ``weights_only=True``) and ``metadata.json`` (architecture, channels,
levels, feature names, normalisation, training settings and data hash), each
written through a temporary file and `os.replace`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from dacast._device import resolve_device
from dacast.atomic import write_atomic
from dacast.ml.digest import tensors_sha256
from dacast.ml.obsop import AMSU_CHANNELS, RadianceNetwork, check_humidity_levels, feature_names

Device = Literal["auto", "cpu", "cuda"]
LrSchedule = Literal["cosine", "plateau", "none"]
#: ``progress(epoch, n_epochs, val_rmse)``: epoch counted from 1, validation RMSE in K.
ProgressFn = Callable[[int, int, float], None]
FORMAT = "dacast.radiance_network"
WEIGHTS, METADATA = "weights.pt", "metadata.json"
#: Metadata keys the caller's ``meta`` must provide to `save_radiance_network`.
REQUIRED_META = ("pressure_hpa", "kind", "config", "data_sha256", "seconds", "val_rmse_per_channel")
_EVAL_CHUNK = 65536


@dataclasses.dataclass(frozen=True, kw_only=True)
class RadianceTrainConfig:
    """Settings of `train_radiance_network`.

    Attributes:
        hidden: ReLU units per hidden layer (paper: 300).
        depth: hidden layers per channel (paper: 4).
        lr: Adam learning rate. The paper used 1e-6 on a month of global observations
            (many steps per epoch); Adam moves each weight by about ``lr`` per step, so on
            the twin's tens of thousands of rows 1e-6 would hardly leave the initialisation.
            1e-3 with a decay (``lr_schedule``) and early stopping is used here.
        epochs: maximum passes over the training rows.
        batch_size: rows per step.
        weight_decay: Adam (L2) weight decay.
        val_fraction: fraction of the rows held out (random) for validation, in (0, 0.5].
        patience: epochs without a relative validation improvement of ``min_delta`` before stopping.
        min_delta: relative improvement of the validation loss that resets the patience counter.
        lr_schedule: ``"cosine"`` (to ``lr * lr_min_factor`` at ``epochs``),
            ``"plateau"`` (halve after ``max(1, patience // 3)`` epochs without improvement) or ``"none"``.
        lr_min_factor: floor of the decayed learning rate, as a fraction of ``lr``, in (0, 1].
        seed: seeds the split, the batch order and the initial weights.
        device: ``"cpu"``, ``"cuda"`` or ``"auto"`` (the returned network is on the CPU).
    """

    hidden: int = 300
    depth: int = 4
    lr: float = 1e-3
    epochs: int = 200
    batch_size: int = 256
    weight_decay: float = 0.0
    val_fraction: float = 0.1
    patience: int = 20
    min_delta: float = 1e-3
    lr_schedule: LrSchedule = "cosine"
    lr_min_factor: float = 0.01
    seed: int = 0
    device: Device = "cpu"

    def __post_init__(self) -> None:
        for name, value in ((k, getattr(self, k)) for k in ("hidden", "depth", "epochs", "batch_size", "patience")):
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr}")
        if not 0 < self.val_fraction <= 0.5:
            raise ValueError(f"val_fraction must lie in (0, 0.5], got {self.val_fraction}")
        if not (self.weight_decay >= 0 and self.min_delta >= 0):
            raise ValueError(f"weight_decay and min_delta must be >= 0, got {self.weight_decay}, {self.min_delta}")
        if not 0 < self.lr_min_factor <= 1:
            raise ValueError(f"lr_min_factor must lie in (0, 1], got {self.lr_min_factor}")
        if self.lr_schedule not in ("cosine", "plateau", "none"):
            raise ValueError(f"lr_schedule must be cosine, plateau or none, got {self.lr_schedule!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")


def training_data_sha256(features: Tensor, targets: Tensor) -> str:
    """SHA-256 (hex) over the shapes and float64 bytes of ``features (n, F)`` and ``targets (n, C)``."""
    return tensors_sha256(features, targets)


def _check_data(features: Tensor, targets: Tensor, channels: tuple[int, ...]) -> None:
    if features.ndim != 2 or targets.ndim != 2 or features.shape[0] != targets.shape[0]:
        raise ValueError(
            "features must be (n, F) and targets (n, C) with the same n, "
            f"got {tuple(features.shape)} and {tuple(targets.shape)}"
        )
    if targets.shape[1] != len(channels):
        raise ValueError(f"targets have {targets.shape[1]} columns for {len(channels)} channels {channels}")
    bad = ~(torch.isfinite(features).all(1) & torch.isfinite(targets).all(1))
    if bool(bad.any()):
        row = int(bad.nonzero()[0, 0])
        raise ValueError(f"row {row} of the training data is not finite (NaN or inf in its features or targets)")
    if features.shape[0] < 2:
        raise ValueError(f"need at least 2 rows to train and validate, got {features.shape[0]}")


def _std(a: Tensor) -> Tensor:  # column standard deviations of (n, k); ones for a single row
    return a.std(0) if a.shape[0] > 1 else torch.ones(a.shape[1], dtype=a.dtype)


def train_radiance_network(
    features: Tensor,
    targets: Tensor,
    config: RadianceTrainConfig,
    *,
    channels: Sequence[int] = AMSU_CHANNELS,
    humidity_levels: int | None = None,
    progress: ProgressFn | None = None,
) -> tuple[RadianceNetwork, dict[str, Any]]:
    """Fit a `RadianceNetwork` to feature/brightness-temperature pairs.

    Args:
        features: shape ``(n, F)`` (see `dacast.ml.radiance_features`), finite.
        targets: brightness temperatures, shape ``(n, C)`` (K), finite, columns in ``channels`` order.
        config: training settings.
        channels: the channel number of each target column.
        humidity_levels: Lq of the features (``radiance_features(..., humidity_levels)``); ``None``: all levels.
        progress: called after every epoch as ``progress(epoch, n_epochs, val_rmse)``.

    Returns:
        ``(network, history)``: the best-validation network on the CPU in eval mode,
        and a dict with ``train_rmse``/``val_rmse`` (K, per epoch; the training one
        averaged over the epoch's batches), ``val_rmse_per_channel`` (K, of the kept
        weights, keyed by channel number as text), ``best_epoch`` (0-based),
        ``epochs_run``, ``seconds``, ``n_train``, ``n_val``, ``device``,
        ``config`` (as a dict) and ``data_sha256``.

    Raises:
        ValueError: bad shapes, or a row with NaN/inf (the first one is named).
    """
    start = time.perf_counter()
    channels = tuple(int(c) for c in channels)
    _check_data(features, targets, channels)
    device = resolve_device(config.device)
    gen = torch.Generator().manual_seed(config.seed)
    n = features.shape[0]
    n_val = min(n - 1, max(1, round(config.val_fraction * n)))
    perm = torch.randperm(n, generator=gen)
    val_idx, train_idx = perm[:n_val], perm[n_val:]
    x64, y64 = features.detach().cpu().double(), targets.detach().cpu().double()
    xt, yt = x64[train_idx], y64[train_idx]
    stats = {"input_mean": xt.mean(0), "input_std": _std(xt), "output_mean": yt.mean(0), "output_std": _std(yt)}
    shape = {"n_inputs": features.shape[1], "channels": channels, "hidden": config.hidden, "depth": config.depth}
    net = RadianceNetwork(**shape, **stats, generator=gen, humidity_levels=humidity_levels).to(device)
    x_tr, x_va = (x64[i].to(device, torch.float32) for i in (train_idx, val_idx))
    y_tr, y_va = (y64[i].to(device, torch.float32) for i in (train_idx, val_idx))
    z_tr = (y_tr - net.output_mean) / net.output_std
    opt = torch.optim.Adam(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    eta_min = config.lr * config.lr_min_factor
    sched: Any = None
    if config.lr_schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs, eta_min=eta_min)
    elif config.lr_schedule == "plateau":
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, factor=0.5, patience=max(1, config.patience // 3), min_lr=eta_min
        )
    n_train = n - n_val
    out_var = net.output_std.pow(2)
    best, best_epoch, best_state, waited = math.inf, 0, None, 0
    train_rmse, val_rmse = [], []
    for epoch in range(config.epochs):
        net.train()
        order = torch.randperm(n_train, generator=gen).to(device)
        sq_k = torch.zeros(len(channels), dtype=torch.float64, device=device)
        for s in range(0, n_train, config.batch_size):
            b = order[s : s + config.batch_size]
            err = net.standardised(x_tr[b]) - z_tr[b]
            loss = err.pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sq_k += (err.detach().pow(2).sum(0) * out_var).double()
        val_loss, per_channel = _evaluate(net, x_va, y_va)
        train_rmse.append(math.sqrt(float(sq_k.sum()) / (n_train * len(channels))))
        val_rmse.append(math.sqrt(float(per_channel.pow(2).mean())))
        if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
            sched.step(val_loss)
        elif sched is not None:
            sched.step()
        if progress is not None:
            progress(epoch + 1, config.epochs, val_rmse[-1])
        if val_loss < best * (1 - config.min_delta):
            best, best_epoch, waited = val_loss, epoch, 0
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        else:
            waited += 1
            if waited >= config.patience:
                break
    if best_state is not None:
        net.load_state_dict(best_state)
    _, per_channel = _evaluate(net, x_va, y_va)
    history: dict[str, Any] = {
        "train_rmse": train_rmse,
        "val_rmse": val_rmse,
        "val_rmse_per_channel": {str(c): float(r) for c, r in zip(channels, per_channel.tolist(), strict=True)},
        "best_epoch": best_epoch,
        "epochs_run": len(val_rmse),
        "seconds": time.perf_counter() - start,
        "n_train": n_train,
        "n_val": n_val,
        "device": str(device),
        "config": dataclasses.asdict(config),
        "data_sha256": training_data_sha256(features, targets),
    }
    return net.cpu().eval(), history


@torch.no_grad()
def _evaluate(net: RadianceNetwork, x: Tensor, y: Tensor) -> tuple[float, Tensor]:
    """(standardised MSE, RMSE per channel (C,) in K) of ``net`` on ``x (n, F)``, ``y (n, C)``, in chunks."""
    was_training = net.training
    net.eval()
    sq = torch.zeros(y.shape[1], dtype=torch.float64, device=y.device)
    for s in range(0, x.shape[0], _EVAL_CHUNK):
        sq += (net(x[s : s + _EVAL_CHUNK]) - y[s : s + _EVAL_CHUNK]).double().pow(2).sum(0)
    net.train(was_training)
    mse_k = sq / x.shape[0]
    return float((mse_k / net.output_std.double().pow(2)).mean()), mse_k.sqrt().cpu()


def save_radiance_network(folder: str | Path, network: RadianceNetwork, meta: dict[str, Any]) -> None:
    """Write ``folder/weights.pt`` (``state_dict`` only) and ``folder/metadata.json``, each atomically.

    Args:
        folder: created if missing; existing files are replaced.
        network: the network to save.
        meta: must hold `REQUIRED_META`: ``pressure_hpa`` (the ``L`` levels, hPa,
            bottom first), ``kind`` (what the targets were, e.g. ``"background-obs"``
            or ``"truth"``), and from `train_radiance_network`'s history ``config``,
            ``data_sha256``, ``seconds``, ``val_rmse_per_channel``; ``{**history,
            "kind": ..., "pressure_hpa": ...}`` does. Other entries are stored too
            (the network's own, such as ``channels``, take precedence).
    """
    folder = Path(folder)
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise ValueError(f"meta lacks {', '.join(missing)} (needs {', '.join(REQUIRED_META)})")
    n_levels = network.n_levels
    n_q = check_humidity_levels(n_levels, network.humidity_levels)
    if network.n_inputs != n_levels + n_q + 3:
        raise ValueError(f"the network reads {network.n_inputs} features, not the L + Lq + 3 of radiance_features")
    pressure = [float(p) for p in torch.as_tensor(meta["pressure_hpa"]).reshape(-1).tolist()]
    if len(pressure) != n_levels:
        raise ValueError(f"meta pressure_hpa has {len(pressure)} levels, the network reads {n_levels}")
    state = {k: v.detach().cpu() for k, v in network.state_dict().items()}
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(folder / WEIGHTS, lambda p: torch.save(state, p))
    doc = {
        **meta,
        "format": FORMAT,
        "version": 1,
        "channels": list(network.channels),
        "n_levels": n_levels,
        "pressure_hpa": pressure,
        "humidity_levels": n_q,
        "feature_names": feature_names(n_levels, n_q),
        "n_inputs": network.n_inputs,
        "hidden": network.hidden,
        "depth": network.depth,
        "normalisation": {
            k: state[k].double().tolist() for k in ("input_mean", "input_std", "output_mean", "output_std")
        },
        "weights_sha256": hashlib.sha256((folder / WEIGHTS).read_bytes()).hexdigest(),
    }
    text = json.dumps(doc, indent=2, default=str) + "\n"
    write_atomic(folder / METADATA, lambda p: p.write_text(text, encoding="utf-8"))


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


def _read_metadata(folder: Path) -> dict[str, Any]:
    meta_path, weights_path = folder / METADATA, folder / WEIGHTS
    for path in (meta_path, weights_path):
        if not path.is_file():
            raise ValueError(f"checkpoint {folder} has no {path.name}")
    try:
        doc = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"checkpoint {folder}: {METADATA} is unreadable ({_one_line(err)})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"checkpoint {folder}: {METADATA} is not a {FORMAT} file")
    keys = ("channels", "n_levels", "pressure_hpa", "feature_names", "n_inputs", "hidden", "depth", "weights_sha256")
    missing = [k for k in keys if k not in doc]
    if missing:
        raise ValueError(f"checkpoint {folder}: {METADATA} lacks {', '.join(missing)}")
    if hashlib.sha256(weights_path.read_bytes()).hexdigest() != doc["weights_sha256"]:
        raise ValueError(f"checkpoint {folder}: {WEIGHTS} does not match {METADATA} (corrupt or replaced)")
    return doc


def load_radiance_network(
    folder: str | Path,
    *,
    pressure: Tensor | Sequence[float] | None = None,
    channels: Sequence[int] | None = None,
) -> tuple[RadianceNetwork, dict[str, Any]]:
    """The network saved by `save_radiance_network`, on the CPU in eval mode, and its metadata.

    Args:
        folder: the checkpoint folder.
        pressure: the model's levels, shape ``(L,)`` (hPa, bottom first); checked when given.
        channels: the channels wanted, in order; checked when given.

    Raises:
        ValueError: one line, on a missing or corrupt file, or a checkpoint for
            other levels, pressures, channels or features.
    """
    folder = Path(folder)
    doc = _read_metadata(folder)
    n_levels = int(doc["n_levels"])
    if pressure is not None:
        p = torch.as_tensor(pressure, dtype=torch.float64).reshape(-1)
        if p.numel() != n_levels:
            raise ValueError(f"checkpoint {folder} was trained for {n_levels} levels, this model has {p.numel()}")
        saved = torch.tensor(doc["pressure_hpa"], dtype=torch.float64)
        differ = ~torch.isclose(saved, p, rtol=1e-6, atol=1e-9)
        if bool(differ.any()):
            k = int(differ.nonzero()[0, 0])
            raise ValueError(
                f"checkpoint {folder} was trained on other pressure levels: level {k} is "
                f"{float(saved[k]):.6g} hPa there, {float(p[k]):.6g} hPa in this model"
            )
    saved_channels = tuple(int(c) for c in doc["channels"])
    if channels is not None and tuple(int(c) for c in channels) != saved_channels:
        raise ValueError(f"checkpoint {folder} was trained for channels {saved_channels}, asked for {tuple(channels)}")
    n_q = int(doc.get("humidity_levels", n_levels))
    if not 0 <= n_q <= n_levels:
        raise ValueError(f"checkpoint {folder}: humidity_levels {n_q} does not fit {n_levels} levels")
    if list(doc["feature_names"]) != feature_names(n_levels, n_q) or int(doc["n_inputs"]) != n_levels + n_q + 3:
        raise ValueError(f"checkpoint {folder} uses another feature set than radiance_features for {n_levels} levels")
    try:
        state = torch.load(folder / WEIGHTS, map_location="cpu", weights_only=True)
        net = RadianceNetwork(
            int(doc["n_inputs"]), saved_channels, int(doc["hidden"]), int(doc["depth"]), humidity_levels=n_q
        )
        net.load_state_dict(state)
    except Exception as err:  # a corrupt pickle or a state_dict of another shape
        raise ValueError(f"checkpoint {folder}: {WEIGHTS} cannot be loaded ({_one_line(err)})") from None
    return net.eval(), doc


__all__ = [
    "REQUIRED_META",
    "RadianceTrainConfig",
    "load_radiance_network",
    "save_radiance_network",
    "train_radiance_network",
    "training_data_sha256",
]
