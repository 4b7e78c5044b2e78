"""Losses for ConvLSTM nowcasting: weighted Huber, adversarial BCE and the non-local loss.

All fields are ``(B, T, H, W)`` or ``(B, T, 1, H, W)`` tensors in log-rain space
(``z = log(1 + R)``, R in mm/h; see `dacast.ml.rain_to_log`) unless stated.
Masks have the same shape, 1 (or True) where the observation is valid.

**Pixelwise loss.** ``Huber_δ(z_pred, z_obs) · w`` with the intensity weight
``w = min(1 + R_obs / (1 mm h⁻¹), w_max)`` (``R_obs`` the observed rain,
``w_max = intensity_weight_max``), averaged over valid pixels: heavy rain
counts up to ``w_max`` times more than no rain.

**Adversarial loss.** Binary cross-entropy on discriminator logits with the
smoothed real label 0.8 (mission §S3): the discriminator is pushed towards
``D(real) = 0.8`` and ``D(fake) = 0``, the generator towards ``D(fake) = 0.8``.
Its minimum is therefore the entropy ``H(0.8) ≈ 0.500``, not 0.

**Non-local loss** (mission §S3, GSMaP design). For every time step, for the
time-mean field, and for every resolution in ``nonlocal_scales`` (average
pooling by that factor), statistics ``X`` of prediction and truth are compared
as ``((X_pred − X_truth) / (X̄_truth + ε))²`` and averaged over all terms, where
``X̄_truth`` is the truth's statistic averaged over the time steps (for the
time-mean field: the truth's statistic of that field). The statistics are:

* moments ``(mean |x|^p)^(1/p)``, ``p ∈ moment_powers`` (1, 2, 4, 6, 8, 10);
* sharpness ``(mean |∇^q x − mean ∇^q x|^p)^(1/p)``, ``p ∈ sharpness_powers``
  (2, 4), ``q ∈ laplacian_orders`` (2, 4, 6, 8);
* the same sharpness statistic of the product ``x · ∇^q x`` (``nonlocal_product``).

Discrete choice: ``∇^q := L^{q/2}`` with ``L`` the 5-point Laplacian
``[[0, 1, 0], [1, −4, 1], [0, 1, 0]]`` in grid units, applied without padding
("valid"), so each application trims one pixel on each side (``x`` is trimmed
alike in the product) and the mask is eroded by the stencil. A resolution too
small for ``L^{q_max/2}`` plus one pixel is skipped.

Numerics: everything is computed in float32 on fields divided by the truth's
per-sample maximum (detached); every statistic is homogeneous in ``x``, so
this leaves the ratios unchanged while keeping ``x^10`` finite. p-norms are
evaluated as ``a · (mean (|v|/a)^p)^(1/p)`` with ``a = max |v|`` (detached),
which is the same function with bounded intermediate values. ``ε`` (``nonlocal_eps``) is relative to that
maximum (1 %), so nearly dry targets give large terms: sample crops with rain (`dacast.ml.RainCropDataset`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from dacast.ml.convlstm import log_to_rain
from dacast.ml.discriminators import SpatialDiscriminator, TemporalDiscriminator

__all__ = [
    "NowcastLossConfig",
    "discriminator_adversarial_loss",
    "discriminator_loss",
    "generator_adversarial_loss",
    "generator_loss",
    "intensity_weight",
    "nonlocal_fits",
    "nonlocal_loss",
    "weighted_huber_loss",
    "weighted_mean",
]

_TINY = 1e-30


@dataclass(frozen=True, kw_only=True)
class NowcastLossConfig:
    """Weights and settings of the nowcasting losses; a weight of 0 switches a term off.

    Attributes:
        huber_weight: weight of the intensity-weighted Huber loss.
        huber_delta: Huber threshold δ in log-rain units.
        intensity_weight_max: cap ``w_max`` of the intensity weight ``1 + R_obs`` (R in mm/h).
        adversarial_weight: α, weight of the generator's adversarial BCE (0: no discriminators).
        spatial_weight: share of the spatial discriminator within the adversarial term.
        temporal_weight: share of the temporal discriminator within the adversarial term.
        real_label: smoothed target label of real samples (mission: 0.8).
        nonlocal_weight: weight of the non-local loss.
        moment_powers: p of the moment statistics.
        sharpness_powers: p of the sharpness statistics.
        laplacian_orders: even orders q of ``∇^q = L^{q/2}``.
        nonlocal_product: also compare statistics of ``x · ∇^q x``.
        nonlocal_time_mean: also compare statistics of the time-mean field.
        nonlocal_scales: average-pooling factors (resolutions) at which the statistics are compared.
        nonlocal_eps: ε of the denominator, relative to the truth's maximum.
    """

    huber_weight: float = 1.0
    huber_delta: float = 1.0
    intensity_weight_max: float = 30.0
    adversarial_weight: float = 0.0
    spatial_weight: float = 1.0
    temporal_weight: float = 1.0
    real_label: float = 0.8
    nonlocal_weight: float = 0.1
    moment_powers: tuple[float, ...] = (1.0, 2.0, 4.0, 6.0, 8.0, 10.0)
    sharpness_powers: tuple[float, ...] = (2.0, 4.0)
    laplacian_orders: tuple[int, ...] = (2, 4, 6, 8)
    nonlocal_product: bool = True
    nonlocal_time_mean: bool = True
    nonlocal_scales: tuple[int, ...] = (1, 2, 4)
    nonlocal_eps: float = 1e-2

    def __post_init__(self) -> None:
        for name in ("huber_weight", "adversarial_weight", "nonlocal_weight", "spatial_weight", "temporal_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 < self.real_label <= 1.0:
            raise ValueError(f"real_label must be in (0, 1], got {self.real_label}")
        if any(q < 2 or q % 2 for q in self.laplacian_orders):
            raise ValueError(f"laplacian_orders must be even and >= 2, got {self.laplacian_orders}")
        if any(p <= 0 for p in (*self.moment_powers, *self.sharpness_powers)):
            raise ValueError("moment_powers and sharpness_powers must be > 0")
        if not self.nonlocal_scales or min(self.nonlocal_scales) < 1:
            raise ValueError(f"nonlocal_scales must be positive ints, got {self.nonlocal_scales}")
        if self.nonlocal_eps <= 0 or self.huber_delta <= 0 or self.intensity_weight_max < 1:
            raise ValueError("nonlocal_eps and huber_delta must be > 0, intensity_weight_max >= 1")


def _squeeze(x: Tensor) -> Tensor:
    """``(B, T, 1, H, W)`` -> ``(B, T, H, W)``; 4-D input is returned unchanged."""
    if x.ndim == 5:
        if x.shape[2] != 1:
            raise ValueError(f"expected one channel, got shape {tuple(x.shape)}")
        return x[:, :, 0]
    if x.ndim != 4:
        raise ValueError(f"expected (B, T, H, W) or (B, T, 1, H, W), got shape {tuple(x.shape)}")
    return x


# --------------------------------------------------------------------------- pixelwise


def intensity_weight(rain: Tensor, *, max_weight: float = 30.0) -> Tensor:
    """Pixel weight ``min(1 + R, max_weight)`` for observed rain ``R`` (mm/h, any shape; NaN -> 1)."""
    return (1.0 + torch.nan_to_num(rain, nan=0.0).clamp_min(0.0)).clamp_max(max_weight)


def weighted_huber_loss(
    pred: Tensor, target: Tensor, weight: Tensor | None = None, mask: Tensor | None = None, *, delta: float = 1.0
) -> Tensor:
    """Mean of ``Huber_δ(pred, target) · weight`` over valid pixels (`weighted_mean`).

    Args:
        pred: prediction, any shape (log-rain); target: truth, same shape (log-rain).
        weight: pixel weights, broadcastable (e.g. `intensity_weight`); mask: valid-data mask; None: 1, all valid.
        delta: Huber threshold in the units of ``pred``.

    Returns: scalar loss, 0 iff ``pred == target`` on valid pixels with positive weight.
    """
    return weighted_mean(F.huber_loss(pred, target, reduction="none", delta=delta), weight, mask)


def weighted_mean(values: Tensor, weight: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
    """Mean of ``values · weight`` (any shape; weight and mask broadcastable, None: 1) over valid pixels."""
    v = values if weight is None else values * weight
    if mask is None:
        return v.mean()
    m = mask.to(v.dtype).expand_as(v)
    return (v * m).sum() / m.sum().clamp_min(1.0)


# --------------------------------------------------------------------------- adversarial


def generator_adversarial_loss(fake_logits: Tensor, *, real_label: float = 0.8) -> Tensor:
    """BCE pushing ``sigmoid(fake_logits)`` (any shape) towards ``real_label``; minimum ``H(real_label)``."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.full_like(fake_logits, real_label))


def discriminator_adversarial_loss(real_logits: Tensor, fake_logits: Tensor, *, real_label: float = 0.8) -> Tensor:
    """Discriminator BCE: real logits towards ``real_label`` (label smoothing), fake logits towards 0."""
    real = F.binary_cross_entropy_with_logits(real_logits, torch.full_like(real_logits, real_label))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real + fake


# --------------------------------------------------------------------------- non-local


def _flush(x: Tensor) -> Tensor:
    """Zero values below 1e-30 in magnitude: float32 subnormals slow CPUs down by orders of magnitude."""
    return x * (x.abs() >= 1e-30)


def _laplacian(x: Tensor, m: Tensor) -> tuple[Tensor, Tensor]:
    """Valid 5-point Laplacian of ``x`` ``(N, 1, H, W)`` and the eroded mask ``(N, 1, H-2, W-2)``."""
    lap = x[..., :-2, 1:-1] + x[..., 2:, 1:-1] + x[..., 1:-1, :-2] + x[..., 1:-1, 2:] - 4.0 * x[..., 1:-1, 1:-1]
    valid = m[..., :-2, 1:-1] * m[..., 2:, 1:-1] * m[..., 1:-1, :-2] * m[..., 1:-1, 2:] * m[..., 1:-1, 1:-1]
    return _flush(lap), valid


def _trim(x: Tensor, n: int) -> Tensor:
    return x[..., n : x.shape[-2] - n, n : x.shape[-1] - n] if n else x


def _masked_mean(v: Tensor, m: Tensor) -> Tensor:
    """Mean over the last two axes of ``v`` where ``m`` is 1; ``(N, 1, H, W)`` -> ``(N, 1, 1, 1)``."""
    return (v * m).sum(dim=(-2, -1), keepdim=True) / m.sum(dim=(-2, -1), keepdim=True).clamp_min(1.0)


def _pnorm(v: Tensor, p: float, m: Tensor) -> Tensor:
    """``(mean_m |v|^p)^(1/p)`` over the last two axes, ``(N, 1, H, W)`` -> ``(N,)``, overflow-safe."""
    a = v.abs() * m
    scale = a.amax(dim=(-2, -1), keepdim=True).detach().clamp_min(_TINY)
    r = a / scale
    # Values whose p-th power would be subnormal in float32 (< 1e-30) add nothing to the mean but slow
    # CPUs down by orders of magnitude: set them to 0.
    r = r * (r > 10.0 ** (-30.0 / p))
    mean = _masked_mean(r**p, m)
    return (scale * (mean + _TINY) ** (1.0 / p)).flatten()


def _field_stats(x: Tensor, m: Tensor, config: NowcastLossConfig) -> Tensor:
    """Non-local statistics of fields ``x`` ``(N, 1, H, W)`` with mask ``m``: ``(N, n_stats)``."""
    stats = [_pnorm(x, p, m) for p in config.moment_powers]
    orders = sorted(set(config.laplacian_orders))
    lap, lm = x, m
    for n_apply in range(1, orders[-1] // 2 + 1):
        lap, lm = _laplacian(lap, lm)
        if 2 * n_apply not in orders:
            continue
        fields = [lap]
        if config.nonlocal_product:
            fields.append(_trim(x, n_apply) * lap)
        for f in fields:
            centred = f - _masked_mean(f, lm)
            stats += [_pnorm(centred, p, lm) for p in config.sharpness_powers]
    return torch.stack(stats, dim=-1)


def _relative_sq(pred_stats: Tensor, true_stats: Tensor, denom: Tensor, eps: float) -> Tensor:
    return ((pred_stats - true_stats) / (denom + eps)) ** 2


def _nonlocal_min_size(config: NowcastLossConfig) -> int:
    """Smallest side (pixels) a field needs at a scale: the Laplacians ``L^{q_max/2}`` plus one pixel."""
    return 2 * (max(config.laplacian_orders) // 2) + 2


def nonlocal_fits(h: int, w: int, config: NowcastLossConfig) -> bool:
    """Whether an ``h × w`` field is large enough at some scale for `nonlocal_loss` (else it raises)."""
    return any(min(h // s, w // s) >= _nonlocal_min_size(config) for s in config.nonlocal_scales)


def nonlocal_loss(
    pred: Tensor, target: Tensor, mask: Tensor | None = None, *, config: NowcastLossConfig | None = None
) -> Tensor:
    """Non-local (statistics-matching) loss of the module docstring; differentiable in ``pred``.

    Args:
        pred: prediction ``(B, T, H, W)`` or ``(B, T, 1, H, W)``, non-negative (log-rain or mm/h).
        target: truth, same shape and space.
        mask: valid-data mask, same shape; None: all valid (the masked variant erodes it under ``∇^q``).
        config: statistics and scales to use.

    Returns:
        Scalar loss, the mean of all relative squared differences; 0 when ``pred == target``.
    """
    cfg = config or NowcastLossConfig()
    x, y = _squeeze(pred).float(), _squeeze(target).float()
    if x.shape != y.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}")
    m = torch.ones_like(y) if mask is None else _squeeze(mask).to(torch.float32).expand_as(y)
    b, t = y.shape[:2]
    scale = (y.abs() * m).amax(dim=(1, 2, 3), keepdim=True).detach().clamp_min(1e-6)
    x, y = _flush(x / scale), _flush(y / scale)
    need = _nonlocal_min_size(cfg)
    terms: list[Tensor] = []
    for s in cfg.nonlocal_scales:
        xs, ys, ms = x, y, m
        if s > 1:
            xs, ys = F.avg_pool2d(x, s), F.avg_pool2d(y, s)
            ms = -F.max_pool2d(-m, s)  # valid only where every fine pixel is valid
        if min(xs.shape[-2:]) < need:
            continue
        hs, ws = xs.shape[-2:]
        # Per time step: (B*T, 1, H, W) -> (B, T, S).
        sp = _field_stats(xs.reshape(b * t, 1, hs, ws), ms.reshape(b * t, 1, hs, ws), cfg).view(b, t, -1)
        st = _field_stats(ys.reshape(b * t, 1, hs, ws), ms.reshape(b * t, 1, hs, ws), cfg).view(b, t, -1)
        terms.append(_relative_sq(sp, st, st.mean(dim=1, keepdim=True), cfg.nonlocal_eps).flatten())
        if cfg.nonlocal_time_mean:
            mt = ms.amin(dim=1, keepdim=True)  # valid at every time step
            sp_m = _field_stats(xs.mean(dim=1, keepdim=True), mt, cfg)
            st_m = _field_stats(ys.mean(dim=1, keepdim=True), mt, cfg)
            terms.append(_relative_sq(sp_m, st_m, st_m, cfg.nonlocal_eps).flatten())
    if not terms:
        raise ValueError(f"fields {tuple(y.shape[-2:])} too small for Laplacian orders {cfg.laplacian_orders}")
    return torch.cat(terms).mean()


# --------------------------------------------------------------------------- combined


def generator_loss(
    pred: Tensor,
    target: Tensor,
    mask: Tensor | None = None,
    *,
    config: NowcastLossConfig,
    context: Tensor | None = None,
    spatial: SpatialDiscriminator | None = None,
    temporal: TemporalDiscriminator | None = None,
    frame_idx: Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """Total generator loss ``w_H·Huber + α·(w_s·BCE_s + w_t·BCE_t) + w_NL·non-local``.

    Args:
        pred: forecast ``(B, T_out, 1, H, W)``, log-rain.
        target: observed future ``(B, T_out, 1, H, W)``, log-rain (its rain rate sets the Huber weights).
        mask: valid-data mask of ``target``, same shape; None: all valid.
        config: loss weights.
        context: past frames ``(B, T_in, 1, H, W)``, log-rain, prepended for the temporal discriminator.
        spatial: spatial discriminator (needed when ``α·w_s > 0``).
        temporal: temporal discriminator (needed when ``α·w_t > 0``).
        frame_idx: frames judged by the spatial discriminator ``(k,)``; None: drawn by it.

    Returns:
        The scalar loss and a dict of its (unweighted) terms as floats.
    """
    total = pred.new_zeros(())
    parts: dict[str, float] = {}
    if config.huber_weight > 0:
        w = intensity_weight(log_to_rain(target), max_weight=config.intensity_weight_max)
        h = weighted_huber_loss(pred, target, w, mask, delta=config.huber_delta)
        total = total + config.huber_weight * h
        parts["huber"] = float(h.detach())
    if config.nonlocal_weight > 0:
        nl = nonlocal_loss(pred, target, mask, config=config)
        total = total + config.nonlocal_weight * nl
        parts["nonlocal"] = float(nl.detach())
    if config.adversarial_weight > 0:
        fake = pred if mask is None else pred * mask
        if config.spatial_weight > 0:
            if spatial is None:
                raise ValueError("spatial discriminator needed when adversarial and spatial weights are > 0")
            g_s = generator_adversarial_loss(spatial(fake, frame_idx=frame_idx), real_label=config.real_label)
            total = total + config.adversarial_weight * config.spatial_weight * g_s
            parts["adv_spatial"] = float(g_s.detach())
        if config.temporal_weight > 0:
            if temporal is None:
                raise ValueError("temporal discriminator needed when adversarial and temporal weights are > 0")
            seq = fake if context is None else torch.cat([context, fake], dim=1)
            g_t = generator_adversarial_loss(temporal(seq), real_label=config.real_label)
            total = total + config.adversarial_weight * config.temporal_weight * g_t
            parts["adv_temporal"] = float(g_t.detach())
    parts["total"] = float(total.detach())
    return total, parts


def discriminator_loss(
    pred: Tensor,
    target: Tensor,
    mask: Tensor | None = None,
    *,
    config: NowcastLossConfig,
    context: Tensor | None = None,
    spatial: SpatialDiscriminator | None = None,
    temporal: TemporalDiscriminator | None = None,
    frame_idx: Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """Summed BCE of the spatial and temporal discriminators (real label ``config.real_label``).

    Args:
        pred: forecast ``(B, T_out, 1, H, W)``, log-rain (detach it for a discriminator step).
        target: observed future, same shape, log-rain.
        mask: valid-data mask; the forecast is masked like the observation, so that missing data
            cannot tell real from fake.
        config: loss weights (``spatial_weight``/``temporal_weight`` select the discriminators).
        context: past frames ``(B, T_in, 1, H, W)`` for the temporal discriminator.
        spatial: spatial discriminator.
        temporal: temporal discriminator.
        frame_idx: frames judged by the spatial discriminator, shared by real and fake.

    Returns:
        The scalar loss and a dict of its terms as floats.
    """
    fake = pred if mask is None else pred * mask
    total = pred.new_zeros(())
    parts: dict[str, float] = {}
    if config.spatial_weight > 0 and spatial is not None:
        if frame_idx is None:
            frame_idx = spatial.select_frames(pred.shape[1])
        d_s = discriminator_adversarial_loss(
            spatial(target, frame_idx=frame_idx), spatial(fake, frame_idx=frame_idx), real_label=config.real_label
        )
        total = total + config.spatial_weight * d_s
        parts["disc_spatial"] = float(d_s.detach())
    if config.temporal_weight > 0 and temporal is not None:
        real_seq = target if context is None else torch.cat([context, target], dim=1)
        fake_seq = fake if context is None else torch.cat([context, fake], dim=1)
        d_t = discriminator_adversarial_loss(temporal(real_seq), temporal(fake_seq), real_label=config.real_label)
        total = total + config.temporal_weight * d_t
        parts["disc_temporal"] = float(d_t.detach())
    parts["disc_total"] = float(total.detach())
    return total, parts
