"""The pieces of one training step of the nowcasters: batches, the multi-resolution loss, validation, saving.

Used by `dacast.ml.train_nowcast`; batches are pure functions of the step, so a resumed run
sees the same data as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset, default_collate

from dacast.atomic import write_atomic
from dacast.ml.convlstm import log_to_rain
from dacast.ml.discriminators import SpatialDiscriminator, TemporalDiscriminator
from dacast.ml.multires import MultiResNowcaster, multires_targets
from dacast.ml.nowcast_data import ExtrapolationFn, RainArray, RainCropDataset
from dacast.ml.nowcast_losses import (
    NowcastLossConfig,
    generator_loss,
    intensity_weight,
    nonlocal_fits,
    weighted_mean,
)
from dacast.ml.nowcast_train_config import Nowcaster, NowcastTrainConfig
from dacast.verify.probabilistic import crps_members

__all__ = [
    "Sample",
    "as_dataset",
    "batch_of_step",
    "fair_crps_loss",
    "member_batch",
    "multires_loss",
    "save_atomic",
    "to_device",
    "validate",
]

Sample = dict[str, Tensor]
Targets = list[tuple[Tensor, Tensor | None]]


def as_dataset(
    data: Dataset[Sample] | RainArray | Sequence[RainArray],
    config: NowcastTrainConfig,
    extrapolation_fn: ExtrapolationFn | None,
    seed: int,
) -> Dataset[Sample]:
    """``data`` itself when it is a dataset, else a `RainCropDataset` of the ``(time, y, x)`` mm/h arrays
    cut with ``config.data_config`` and ``seed``."""
    if isinstance(data, Dataset):
        return data
    return RainCropDataset(data, config.data_config, extrapolation_fn=extrapolation_fn, seed=seed)  # type: ignore[arg-type]


def batch_of_step(dataset: Dataset[Sample], step: int, batch_size: int, seed: int) -> Sample:
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


def to_device(batch: Sample, device: torch.device) -> Sample:
    """Every tensor of ``batch`` on ``device``."""
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def member_batch(model: Nowcaster, batch: Sample, members: int, seed: int) -> tuple[Sample, Tensor | None]:
    """The batch repeated ``members`` times, member-major (entry ``i·B + b`` is member ``i`` of sample ``b``),
    and the latent noise of an ensemble network for it, drawn on the CPU from ``seed`` (a pure function of
    it, so resumed training draws the same noise); ``(batch, None)`` for a deterministic network."""
    if not (isinstance(model, MultiResNowcaster) and model.is_ensemble):
        return batch, None
    rep = {k: v.repeat(members, *([1] * (v.ndim - 1))) for k, v in batch.items()}
    b, _, _, h, w = rep["past"].shape
    gen = torch.Generator().manual_seed(seed)
    return rep, model.sample_noise(b, h, w, generator=gen, device=rep["past"].device)


def fair_crps_loss(members: Tensor, target: Tensor, weight: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
    """Mean of the fair CRPS (Ferro 2014) times ``weight`` over valid pixels, for ensemble training.

    ``fCRPS = 1/M Σ_i |x_i − y| − 1/(2 M (M − 1)) Σ_{i≠j} |x_i − x_j|`` per pixel. Its expectation is
    smallest when the members are drawn from the true predictive distribution, so, unlike a Huber or
    MSE loss on each member (which pulls every member to the mean), it rewards spread where the future
    is uncertain and no more (as in CRPS-trained ensemble weather models, e.g. Lang et al. 2024).

    Args:
        members: ``(M, B, ...)`` forecasts, ``M >= 2`` (log-rain).
        target: ``(B, ...)`` truth (log-rain).
        weight: pixel weights broadcastable to ``target`` (e.g. `dacast.ml.intensity_weight`); None: 1.
        mask: valid-data mask broadcastable to ``target``; None: all valid.

    Returns:
        Scalar loss in log-rain units; 0 when every member equals the truth.
    """
    if members.shape[0] < 2 or members.shape[1:] != target.shape:
        raise ValueError(f"members {tuple(members.shape)} must be (M >= 2, *target.shape), got {tuple(target.shape)}")
    return weighted_mean(crps_members(members, target, fair=True), weight, mask)


def multires_loss(
    preds: list[Tensor],
    targets: Targets,
    weights: Sequence[float],
    loss: NowcastLossConfig,
    *,
    context: Tensor | None = None,
    spatial: SpatialDiscriminator | None = None,
    temporal: TemporalDiscriminator | None = None,
    frame_idx: Tensor | None = None,
    members: int = 1,
) -> tuple[Tensor, dict[str, float]]:
    """``Σ_k w_k · generator_loss_k`` over the active resolutions ``k`` (those with ``w_k > 0``).

    ``generator_loss_k`` is `dacast.ml.generator_loss` of output ``k`` against the truth pooled to its
    resolution: Huber and non-local everywhere, but the non-local term is left out at a resolution too
    coarse for it (`nonlocal_fits`), and the adversarial terms (given the discriminators) only at the
    finest active resolution ``preds[0]``, judged with ``context``.

    Args:
        preds: the active outputs, finest first, each ``(B, T_out, 1, H_k, W_k)`` log-rain.
        targets: ``(target_k, mask_k)`` for every resolution, finest first (`multires_targets`).
        weights: one weight ``>= 0`` per resolution, finest first.
        loss: loss weights and settings.
        context: past frames ``(B, T_in, 1, H_k0, W_k0)`` log-rain at the finest active resolution.
        spatial: spatial discriminator (None: no adversarial terms).
        temporal: temporal discriminator (None: no adversarial terms).
        frame_idx: frames the spatial discriminator judges ``(k,)``.
        members: ``M > 1`` for a `member_batch` (batch ``M·B``, member-major): the pixelwise term is then
            `fair_crps_loss` over the members (weight ``loss.huber_weight``, term ``"crps"``) instead of
            the Huber loss; the non-local and adversarial terms judge every member.

    Returns:
        The weighted scalar total and a dict of floats: each computed resolution's unweighted terms
        ``"level{k}_{term}"`` (as `generator_loss` names them, its total as ``"level{k}_total"``) and
        the weighted ``"total"``.
    """
    offset = len(targets) - len(preds)
    total = preds[0].new_zeros(())
    parts: dict[str, float] = {}
    adversarial = spatial is not None or temporal is not None
    for j, pred in enumerate(preds):
        k = offset + j
        if weights[k] == 0:
            continue
        target, mask = targets[k]
        cfg = loss
        if j > 0 or not adversarial:
            cfg = dataclasses.replace(cfg, adversarial_weight=0.0)
        if cfg.nonlocal_weight > 0 and not nonlocal_fits(*target.shape[-2:], cfg):
            cfg = dataclasses.replace(cfg, nonlocal_weight=0.0)
        if members > 1:
            cfg = dataclasses.replace(cfg, huber_weight=0.0)
        judged = j == 0 and adversarial
        loss_k, parts_k = generator_loss(
            pred, target, mask, config=cfg, context=context if judged else None,
            spatial=spatial if judged else None, temporal=temporal if judged else None, frame_idx=frame_idx,
        )  # fmt: skip
        if members > 1 and loss.huber_weight > 0:
            b = pred.shape[0] // members
            truth, valid = target[:b], None if mask is None else mask[:b]
            w = intensity_weight(log_to_rain(truth), max_weight=loss.intensity_weight_max)
            crps = fair_crps_loss(pred.unflatten(0, (members, b)), truth, w, valid)
            loss_k = loss_k + loss.huber_weight * crps
            parts_k = parts_k | {"crps": float(crps.detach()), "total": float(loss_k.detach())}
        total = total + weights[k] * loss_k
        parts.update({f"level{k}_{name}": v for name, v in parts_k.items()})
    parts["total"] = float(total.detach())
    return total, parts


def validate(
    model: Nowcaster,
    val: Dataset[Sample],
    config: NowcastTrainConfig,
    device: torch.device,
    stage: int = 0,
    alpha: float = 1.0,
) -> dict[str, float]:
    """Mean non-adversarial loss terms over the fixed validation batches (an ensemble network: with
    ``config.members`` members of fixed noise per sample and its CRPS in place of the Huber term).

    A `MultiResNowcaster` runs at ``(stage, alpha)``; its ``val_loss`` (and ``val_huber``,
    ``val_nonlocal``) is the unweighted loss of the finest active output ``k0 = n_outputs - 1 - stage``
    (the full-resolution output once the schedule reaches its last stage), and every active
    resolution's terms are reported as ``val_level{k}_*``.
    """
    loss_cfg = dataclasses.replace(config.loss, adversarial_weight=0.0)
    multires = isinstance(model, MultiResNowcaster)
    k0 = config.n_outputs - 1 - stage
    sums: dict[str, float] = {}
    model.eval()
    n_val = len(val)  # type: ignore[arg-type]
    with torch.no_grad():
        for k in range(config.val_batches):
            idx = [(k * config.batch_size + j) % n_val for j in range(config.batch_size)]
            b = to_device(default_collate([val[i] for i in idx]), device)
            if multires:
                b, noise = member_batch(model, b, config.members, config.seed + 7_919 * k)
                preds = model(b["past"], b.get("extrapolation"), stage=stage, alpha=alpha, noise=noise)
                targets = multires_targets(b["future"], config.n_outputs, b["future_mask"])
                _, levels = multires_loss(preds, targets, (1.0,) * config.n_outputs, loss_cfg, members=config.members)
                head = f"level{k0}_"  # the judged output's terms are also val_loss, val_huber, ...
                parts = {key: v for key, v in levels.items() if key != "total"}
                parts |= {key.removeprefix(head): v for key, v in levels.items() if key.startswith(head)}
            else:
                pred = model(b["past"], b.get("extrapolation"))
                _, parts = generator_loss(pred, b["future"], b["future_mask"], config=loss_cfg)
            for key, v in parts.items():
                sums[key] = sums.get(key, 0.0) + v / config.val_batches
    model.train()
    return {"val_loss" if k == "total" else f"val_{k}": v for k, v in sums.items()}


def save_atomic(obj: dict[str, Any], path: Path) -> None:
    """``torch.save`` through a temporary file, synced to disk before the rename: never a half-written checkpoint."""
    write_atomic(path, lambda tmp: torch.save(obj, tmp))
