"""Discriminator shapes and a backward pass through generator and both discriminators."""

from __future__ import annotations

import torch

from dacast.ml import (
    ConvLSTMConfig,
    ConvLSTMNowcaster,
    DiscriminatorConfig,
    NowcastLossConfig,
    SpatialDiscriminator,
    TemporalDiscriminator,
    discriminator_loss,
    generator_loss,
    rain_to_log,
)

D_CFG = DiscriminatorConfig(channels=(4, 8), n_frames=2)


def test_discriminator_shapes() -> None:
    seq = torch.rand(3, 5, 1, 16, 16)
    spatial = SpatialDiscriminator(D_CFG)
    temporal = TemporalDiscriminator(D_CFG)
    g = torch.Generator().manual_seed(0)
    assert spatial(seq, generator=g).shape == (3, 2)
    assert spatial(seq, frame_idx=torch.tensor([0, 1, 4])).shape == (3, 3)
    assert temporal(seq).shape == (3,)
    assert temporal(seq[:, :1]).shape == (3,)
    idx_a = spatial.select_frames(5, generator=torch.Generator().manual_seed(7))
    idx_b = spatial.select_frames(5, generator=torch.Generator().manual_seed(7))
    assert torch.equal(idx_a, idx_b) and len(idx_a) == 2


def test_backward_gives_finite_grads_for_generator_and_both_discriminators() -> None:
    model = ConvLSTMNowcaster(ConvLSTMConfig(t_in=2, t_out=3, hidden_channels=(4, 8)))
    spatial, temporal = SpatialDiscriminator(D_CFG), TemporalDiscriminator(D_CFG)
    g = torch.Generator().manual_seed(1)
    past = rain_to_log(5 * torch.rand(2, 2, 1, 16, 16, generator=g))
    future = rain_to_log(5 * torch.rand(2, 3, 1, 16, 16, generator=g))
    cfg = NowcastLossConfig(adversarial_weight=0.5, nonlocal_scales=(1,))
    pred = model(past)
    d_loss, d_parts = discriminator_loss(
        pred.detach(), future, config=cfg, context=past, spatial=spatial, temporal=temporal
    )
    d_loss.backward()
    for net in (spatial, temporal):
        grads = [p.grad for p in net.parameters()]
        assert all(gr is not None and torch.isfinite(gr).all() for gr in grads)
        assert any(gr.abs().sum() > 0 for gr in grads if gr is not None)
    assert {"disc_spatial", "disc_temporal"} <= d_parts.keys()
    assert all(p.grad is None for p in model.parameters())

    g_loss, parts = generator_loss(pred, future, config=cfg, context=past, spatial=spatial, temporal=temporal)
    g_loss.backward()
    assert {"huber", "nonlocal", "adv_spatial", "adv_temporal", "total"} <= parts.keys()
    grads = [p.grad for p in model.parameters()]
    assert all(gr is not None and torch.isfinite(gr).all() for gr in grads)
