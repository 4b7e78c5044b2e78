"""Multi-resolution progressive ConvLSTM nowcaster: shapes, stages, fade-in, schedule, targets, loss, training."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch.nn import functional as F

from dacast.ml import NowcastLossConfig, generator_loss, moving_blobs, rain_to_log
from dacast.ml.multires import (
    MultiResConfig,
    MultiResNowcaster,
    ProgressiveSchedule,
    multires_targets,
    pool_log_rain,
)
from dacast.ml.nowcast_steps import multires_loss

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE = 32
HUBER_ONLY = NowcastLossConfig(nonlocal_weight=0.0, adversarial_weight=0.0)  # Huber, weight 1


def _config(**kw: object) -> MultiResConfig:
    base: dict[str, object] = {"t_in": 2, "t_out": 3, "hidden_channels": (4, 8), "n_outputs": 3, "seed": 0}
    base.update(kw)
    return MultiResConfig(**base)  # type: ignore[arg-type]


def _inputs(b: int = 2, t_in: int = 2, t_out: int = 3, extra: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
    g = torch.Generator().manual_seed(0)
    past = rain_to_log(10 * torch.rand(b, t_in, 1, SIZE, SIZE, generator=g))
    ext = rain_to_log(10 * torch.rand(b, t_out, extra, SIZE, SIZE, generator=g)) if extra else None
    return past, ext


def _expected_shapes(b: int, t: int, levels: range) -> list[tuple[int, ...]]:
    return [(b, t, 1, SIZE >> k, SIZE >> k) for k in levels]


# --------------------------------------------------------------------------- model


@pytest.mark.parametrize("use_extrapolation", [False, True], ids=["obs", "obs+nowcast"])
def test_outputs_at_every_resolution_are_nonnegative(use_extrapolation: bool) -> None:
    cfg = _config(use_extrapolation=use_extrapolation, extra_channels=2)
    model = MultiResNowcaster(cfg)
    assert cfg.spatial_multiple == model.spatial_multiple == 4
    past, ext = _inputs(extra=2 if use_extrapolation else 0)
    outs = model(past, ext)
    assert [tuple(o.shape) for o in outs] == _expected_shapes(2, 3, range(3))
    for o in outs:
        assert torch.isfinite(o).all()
        assert (o >= 0).all()
    if not use_extrapolation:
        assert [tuple(o.shape) for o in model(past, n_leads=5)] == _expected_shapes(2, 5, range(3))


def test_fewer_outputs_than_levels() -> None:
    past, _ = _inputs()
    outs = MultiResNowcaster(_config(n_outputs=1))(past)
    assert [tuple(o.shape) for o in outs] == _expected_shapes(2, 3, range(1))
    outs = MultiResNowcaster(_config(n_outputs=2))(past)
    assert [tuple(o.shape) for o in outs] == _expected_shapes(2, 3, range(2))


@pytest.mark.parametrize("use_extrapolation", [False, True], ids=["obs", "obs+nowcast"])
def test_stage_computes_only_the_coarsest_outputs(use_extrapolation: bool) -> None:
    model = MultiResNowcaster(_config(use_extrapolation=use_extrapolation))
    past, ext = _inputs(extra=1 if use_extrapolation else 0)
    full = model(past, ext)
    for stage in range(3):
        outs = model(past, ext, stage=stage)
        assert [tuple(o.shape) for o in outs] == _expected_shapes(2, 3, range(2 - stage, 3))
        # The coarse outputs do not depend on the finer branches: same values as with all outputs.
        for o, f in zip(outs, full[2 - stage :], strict=True):
            torch.testing.assert_close(o, f)
    # Stage 0 runs neither the finer heads nor the level-0 cell and up-sampling (counted by forward hooks).
    calls: dict[str, int] = {}
    watched = {
        "head0": model.heads[0],
        "head1": model.heads[1],
        "head2": model.heads[2],
        "fc_cell0": model.fc_cells[0],
        "fc_up0": model.fc_up[0],
        "fc_up1": model.fc_up[1],
    }
    for name, module in watched.items():
        calls[name] = 0
        module.register_forward_hook(lambda *_, name=name: calls.__setitem__(name, calls[name] + 1))
    model(past, ext, stage=0)
    assert calls == {"head0": 0, "head1": 0, "head2": 3, "fc_cell0": 0, "fc_up0": 0, "fc_up1": 0}
    model(past, ext, stage=1)
    assert calls == {"head0": 0, "head1": 3, "head2": 6, "fc_cell0": 0, "fc_up0": 0, "fc_up1": 3}


def test_extrapolation_pooled_to_each_resolution_joins_its_head() -> None:
    model = MultiResNowcaster(_config(use_extrapolation=True, extra_channels=2))
    past, ext = _inputs(extra=2)
    assert ext is not None
    seen: dict[int, list[torch.Tensor]] = {k: [] for k in range(3)}
    for k, head in enumerate(model.heads):
        head.register_forward_pre_hook(lambda _, args, k=k: seen[k].append(args[0][:, -2:].clone()))
    model(past, ext)
    for k in range(3):
        assert len(seen[k]) == 3  # one call per lead
        skip = torch.stack(seen[k], dim=1)  # the head input's last 2 channels, (B, T_out, 2, H_k, W_k)
        torch.testing.assert_close(skip, pool_log_rain(ext, 2**k))


@pytest.mark.parametrize("stage", [1, 2])
def test_fade_in_blends_with_upsampled_coarser_output(stage: int) -> None:
    model = MultiResNowcaster(_config())
    past, _ = _inputs()
    own, coarse, *_ = model(past, stage=stage, alpha=1.0)
    up = coarse.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)  # nearest, written out
    assert not torch.allclose(own, up, atol=1e-3)  # the blend is not trivially the same field
    for alpha in (0.0, 0.5, 1.0):
        outs = model(past, stage=stage, alpha=alpha)
        torch.testing.assert_close(outs[0], alpha * own + (1 - alpha) * up)
        torch.testing.assert_close(outs[1], coarse)  # only the newest output is faded
        assert (outs[0] >= 0).all()


def test_forward_rejects_bad_arguments() -> None:
    model = MultiResNowcaster(_config())
    past, _ = _inputs()
    with pytest.raises(ValueError, match="multiples of 4"):
        model(torch.zeros(1, 2, 1, 30, 32))
    with pytest.raises(ValueError, match="None"):
        model(past, torch.zeros(2, 3, 1, SIZE, SIZE))
    with pytest.raises(ValueError, match=r"stage must be in 0\.\.2"):
        model(past, stage=3)
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]"):
        model(past, alpha=1.5)
    with pytest.raises(ValueError, match="coarser output to fade from"):
        model(past, stage=0, alpha=0.5)
    ext_model = MultiResNowcaster(_config(use_extrapolation=True))
    with pytest.raises(ValueError, match="given"):
        ext_model(past)
    with pytest.raises(ValueError, match="does not match past"):
        ext_model(past, torch.zeros(2, 3, 1, 16, 16))


def test_same_seed_same_weights_and_global_rng_untouched() -> None:
    state = torch.random.get_rng_state()
    a = MultiResNowcaster(_config(seed=3))
    assert torch.equal(torch.random.get_rng_state(), state)
    b = MultiResNowcaster(_config(seed=3))
    c = MultiResNowcaster(_config(seed=4))
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key
    assert not torch.equal(a.heads[0].weight, c.heads[0].weight)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_outputs": 0}, r"n_outputs must be in 1\.\.3"),
        ({"n_outputs": 4}, r"n_outputs must be in 1\.\.3"),
        ({"hidden_channels": ()}, "hidden_channels must be non-empty"),
        ({"hidden_channels": (4, 0)}, "hidden_channels must be non-empty positive"),
        ({"t_in": 0}, "t_in and t_out must be >= 1"),
        ({"t_out": 0}, "t_in and t_out must be >= 1"),
        ({"kernel_size": 4}, "kernel_size must be odd"),
        ({"extra_channels": 0}, "extra_channels must be >= 1"),
    ],
)
def test_bad_config_raises(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _config(**kwargs)


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        _config().n_outputs = 2  # type: ignore[misc]


# --------------------------------------------------------------------------- schedule


def test_schedule_stage_and_alpha() -> None:
    sched = ProgressiveSchedule(steps_per_stage=(10, 20, 30), fade_steps=10)
    assert sched.n_stages == 3 and sched.total_steps == 60
    expected = {
        0: (0, 1.0),
        9: (0, 1.0),
        10: (1, 0.0),
        15: (1, 0.5),
        19: (1, 0.9),
        20: (1, 1.0),
        29: (1, 1.0),
        30: (2, 0.0),
        32: (2, 0.2),
        40: (2, 1.0),
        59: (2, 1.0),
        60: (2, 1.0),
        10_000: (2, 1.0),
    }
    for step, (stage, alpha) in expected.items():
        got_stage, got_alpha = sched.at(step)
        assert got_stage == stage, step
        assert math.isclose(got_alpha, alpha), step
    no_fade = ProgressiveSchedule(steps_per_stage=(2, 2), fade_steps=0)
    assert [no_fade.at(s) for s in range(5)] == [(0, 1.0), (0, 1.0), (1, 1.0), (1, 1.0), (1, 1.0)]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"steps_per_stage": ()}, "steps_per_stage must be non-empty"),
        ({"steps_per_stage": (5, 0)}, "steps_per_stage must be non-empty positive"),
        ({"steps_per_stage": (5, 5), "fade_steps": -1}, "fade_steps must be >= 0"),
        ({"steps_per_stage": (5, 3), "fade_steps": 4}, "must not exceed the length"),
    ],
)
def test_bad_schedule_raises(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ProgressiveSchedule(**kwargs)  # type: ignore[arg-type]


def test_schedule_rejects_negative_step() -> None:
    with pytest.raises(ValueError, match="step must be >= 0"):
        ProgressiveSchedule(steps_per_stage=(3,)).at(-1)


# --------------------------------------------------------------------------- targets


def test_targets_of_constant_field_and_all_valid_masks() -> None:
    z = torch.full((2, 3, 1, SIZE, SIZE), math.log1p(5.0))
    mask = torch.ones_like(z)
    mask[0, 1, 0, 3, 5] = 0.0  # one invalid pixel
    targets = multires_targets(z, 3, mask)
    assert len(targets) == 3
    for k, (t, m) in enumerate(targets):
        assert t.shape == m.shape == (2, 3, 1, SIZE >> k, SIZE >> k)  # type: ignore[union-attr]
        torch.testing.assert_close(t, torch.full_like(t, math.log1p(5.0)))
        assert m is not None
        # Exactly the coarse pixel over (3, 5) is invalid.
        assert m.sum().item() == m.numel() - 1
        assert m[0, 1, 0, 3 >> k, 5 >> k].item() == 0.0
    assert targets[0][0] is z and targets[0][1] is mask
    assert all(m is None for _, m in multires_targets(z, 2))
    bool_masks = [m for _, m in multires_targets(z, 3, mask.bool())]
    assert all(m is not None and m.dtype == torch.bool for m in bool_masks)
    assert [int((~m).sum()) for m in bool_masks if m is not None] == [1, 1, 1]


def test_targets_pool_rain_rate_not_log_rain() -> None:
    rain = torch.zeros(1, 1, 1, 4, 4)
    rain[..., 0, 0] = 8.0  # one wet pixel in the top-left 2x2 block
    targets = multires_targets(rain_to_log(rain), 2)
    coarse = targets[1][0]
    assert coarse.shape == (1, 1, 1, 2, 2)
    torch.testing.assert_close(coarse[..., 0, 0], torch.tensor([[[math.log1p(2.0)]]]))  # log(1 + mean R)
    assert coarse[..., 0, 0].item() > math.log1p(8.0) / 4 + 0.1  # not the mean of log-rain
    assert (coarse.flatten()[1:] == 0).all()


def test_targets_reject_bad_shapes() -> None:
    z = torch.zeros(1, 1, 1, 12, 12)
    with pytest.raises(ValueError, match="multiples of 8"):
        multires_targets(z, 4)
    with pytest.raises(ValueError, match="mask shape"):
        multires_targets(z, 2, torch.ones(1, 1, 1, 12, 10))
    with pytest.raises(ValueError, match="n_outputs must be >= 1"):
        multires_targets(z, 0)
    with pytest.raises(ValueError, match="multiples of 8"):
        pool_log_rain(z, 8)


# --------------------------------------------------------------------------- loss


def test_loss_is_weighted_sum_of_per_resolution_losses() -> None:
    model = MultiResNowcaster(_config())
    past, _ = _inputs()
    g = torch.Generator().manual_seed(1)
    truth = rain_to_log(5 * torch.rand(2, 3, 1, SIZE, SIZE, generator=g))
    mask = (torch.rand(2, 3, 1, SIZE, SIZE, generator=g) > 0.1).float()
    targets = multires_targets(truth, 3, mask)
    weights = (1.0, 0.5, 0.25)
    preds = model(past)
    total, parts = multires_loss(preds, targets, weights, HUBER_ONLY)
    per = [generator_loss(p, t, m, config=HUBER_ONLY)[0] for p, (t, m) in zip(preds, targets, strict=True)]
    assert all(v > 0 for v in per)
    torch.testing.assert_close(total, sum(w * v for w, v in zip(weights, per, strict=True)))
    assert {k for k in parts if k.endswith("_total")} == {"level0_total", "level1_total", "level2_total"}
    for k in range(3):
        assert math.isclose(parts[f"level{k}_huber"], float(per[k].detach()), rel_tol=1e-6)
    assert math.isclose(parts["total"], float(total.detach()), rel_tol=1e-6)
    total.backward()
    assert model.heads[0].weight.grad is not None

    # A progressive stage: the coarsest two preds are matched to the last two targets.
    with torch.no_grad():
        stage_preds = model(past, stage=1)
        total1, parts1 = multires_loss(stage_preds, targets, weights, HUBER_ONLY)
        expected1 = sum(
            weights[k] * generator_loss(stage_preds[k - 1], *targets[k], config=HUBER_ONLY)[0] for k in (1, 2)
        )
    torch.testing.assert_close(total1, expected1)
    assert {k for k in parts1 if k.endswith("_total")} == {"level1_total", "level2_total"}
    # A zero weight switches a level off.
    _, parts0 = multires_loss(stage_preds, targets, (1.0, 0.0, 1.0), HUBER_ONLY)
    assert {k for k in parts0 if k.endswith("_total")} == {"level2_total"}
    assert math.isclose(parts0["total"], parts0["level2_total"], rel_tol=1e-6)


# --------------------------------------------------------------------------- training


def test_optimiser_steps_on_moving_blobs_decrease_the_loss() -> None:
    rain = torch.from_numpy(moving_blobs(5, SIZE, SIZE, n_blobs=3, seed=0))
    z = rain_to_log(rain)[None, :, None]  # (1, 5, 1, H, W)
    past, future = z[:, :2], z[:, 2:]
    targets = multires_targets(future, 3)
    model = MultiResNowcaster(_config())
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    weights = (1.0, 1.0, 1.0)
    losses = []
    for _ in range(6):
        opt.zero_grad()
        total, _ = multires_loss(model(past), targets, weights, HUBER_ONLY)
        total.backward()
        opt.step()
        losses.append(float(total.detach()))
    with torch.no_grad():
        final, _ = multires_loss(model(past), targets, weights, HUBER_ONLY)
    assert float(final) < 0.7 * losses[0], losses


def test_pool_log_rain_matches_avg_pool_in_rain_space() -> None:
    g = torch.Generator().manual_seed(2)
    rain = 20 * torch.rand(2, 3, 2, 8, 8, generator=g)
    pooled = pool_log_rain(rain_to_log(rain), 4)
    expected = rain_to_log(F.avg_pool2d(rain.flatten(0, 1), 4).unflatten(0, (2, 3)))
    torch.testing.assert_close(pooled, expected)
