"""Loss terms: zero for identical fields, positive otherwise; the non-local loss prefers sharpness."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from dacast.ml import (
    NowcastLossConfig,
    discriminator_adversarial_loss,
    generator_adversarial_loss,
    generator_loss,
    intensity_weight,
    nonlocal_loss,
    weighted_huber_loss,
)


def _cells(b: int = 2, t: int = 3, n: int = 48, seed: int = 0) -> torch.Tensor:
    """Sharp rain cells in log-rain space, ``(b, t, n, n)``."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(n, dtype=torch.float32), torch.arange(n, dtype=torch.float32), indexing="ij")
    out = torch.zeros(b, t, n, n)
    for _ in range(4):
        cy, cx = n * torch.rand(2, generator=g)
        r = 2 + 4 * torch.rand((), generator=g)
        for k in range(t):
            out[:, k] += 3 * torch.exp(-((yy - cy - k) ** 2 + (xx - cx) ** 2) / (2 * r**2))
    return out + 0.2 * (torch.rand(out.shape, generator=g) > 0.5)


def _blur(x: torch.Tensor, k: int = 7) -> torch.Tensor:
    b, t, h, w = x.shape
    kernel = torch.ones(1, 1, k, k) / k**2
    y = F.conv2d(F.pad(x.reshape(b * t, 1, h, w), (k // 2,) * 4, mode="replicate"), kernel)
    return y.reshape(b, t, h, w)


CFG = NowcastLossConfig(nonlocal_scales=(1, 2))


def test_intensity_weight() -> None:
    w = intensity_weight(torch.tensor([0.0, 4.0, 100.0, float("nan")]), max_weight=30.0)
    torch.testing.assert_close(w, torch.tensor([1.0, 5.0, 30.0, 1.0]))


def test_huber_zero_iff_identical() -> None:
    x = _cells()
    w = intensity_weight(torch.expm1(x))
    assert weighted_huber_loss(x, x, w).item() == 0.0
    assert weighted_huber_loss(x + 0.1, x, w).item() > 0.0
    mask = torch.ones_like(x)
    mask[..., :10] = 0
    changed = x.clone()
    changed[..., :10] += 5.0
    assert weighted_huber_loss(changed, x, w, mask).item() == 0.0
    assert weighted_huber_loss(changed, x, w).item() > 0.0


@pytest.mark.parametrize(
    "cfg",
    [CFG, NowcastLossConfig(nonlocal_product=False, nonlocal_time_mean=False, nonlocal_scales=(1,))],
    ids=["full", "per-step-only"],
)
def test_nonlocal_zero_iff_identical(cfg: NowcastLossConfig) -> None:
    x = _cells()
    assert nonlocal_loss(x, x, config=cfg).item() == 0.0
    assert nonlocal_loss(1.2 * x, x, config=cfg).item() > 0.0
    assert nonlocal_loss(_blur(x), x, config=cfg).item() > 0.0
    assert nonlocal_loss(x[:, :, None], x[:, :, None], config=cfg).item() == 0.0  # (B, T, 1, H, W)


def test_nonlocal_masked_variant_ignores_invalid_pixels() -> None:
    x = _cells()
    mask = torch.ones_like(x, dtype=torch.bool)
    mask[..., :12, :] = False
    garbage = torch.where(mask, x, torch.full_like(x, 7.0))
    assert nonlocal_loss(garbage, x, mask, config=CFG).item() == 0.0
    assert nonlocal_loss(garbage, x, config=CFG).item() > 0.0
    assert nonlocal_loss(_blur(x), x, mask, config=CFG).item() > 0.0


def test_nonlocal_prefers_sharp_over_blurred() -> None:
    """A displaced sharp forecast beats a blurred one of the same mean — unlike the MSE."""
    truth = _cells()
    sharp = torch.roll(truth, shifts=(5, 4), dims=(-2, -1))
    blurred = _blur(truth)
    torch.testing.assert_close(blurred.mean(), truth.mean(), rtol=1e-2, atol=0)
    assert F.mse_loss(blurred, truth) < F.mse_loss(sharp, truth)
    nl_sharp = nonlocal_loss(sharp, truth, config=CFG)
    nl_blur = nonlocal_loss(blurred, truth, config=CFG)
    assert nl_sharp < 0.2 * nl_blur


def test_nonlocal_scale_invariant_and_differentiable() -> None:
    truth = _cells()
    pred = _blur(truth)
    a = nonlocal_loss(pred, truth, config=CFG)
    b = nonlocal_loss(10 * pred, 10 * truth, config=CFG)
    torch.testing.assert_close(a, b, rtol=1e-3, atol=0)
    for start in (torch.zeros_like(truth), pred, truth + 0.01):
        p = start.clone().requires_grad_()
        loss = nonlocal_loss(p, truth, config=CFG)
        loss.backward()
        assert torch.isfinite(loss) and p.grad is not None and torch.isfinite(p.grad).all()


def test_nonlocal_rejects_too_small_fields() -> None:
    x = torch.rand(1, 2, 6, 6)
    with pytest.raises(ValueError, match="too small"):
        nonlocal_loss(x, x, config=NowcastLossConfig())


def test_adversarial_bce_with_smoothed_label() -> None:
    best = torch.full((4,), math.log(0.8 / 0.2))  # sigmoid = 0.8
    entropy = -(0.8 * math.log(0.8) + 0.2 * math.log(0.2))
    assert generator_adversarial_loss(best).item() == pytest.approx(entropy, rel=1e-5)
    assert generator_adversarial_loss(best + 1).item() > entropy
    assert generator_adversarial_loss(best - 1).item() > entropy
    d = discriminator_adversarial_loss(best, torch.full((4,), -8.0))
    assert d.item() == pytest.approx(entropy, rel=1e-3)
    assert discriminator_adversarial_loss(torch.zeros(4), torch.zeros(4)).item() > d.item()


def test_generator_loss_switches() -> None:
    x = _cells()[:, :, None]
    total, parts = generator_loss(x, x, config=CFG)
    assert total.item() == 0.0 and set(parts) == {"huber", "nonlocal", "total"}
    off = NowcastLossConfig(huber_weight=0.0, nonlocal_weight=0.0)
    assert set(generator_loss(x + 1, x, config=off)[1]) == {"total"}
    with pytest.raises(ValueError, match="spatial discriminator"):
        generator_loss(x, x, config=NowcastLossConfig(adversarial_weight=1.0))
