"""Shapes, positivity and determinism of the ConvLSTM nowcaster."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from dacast.ml import ConvLSTMCell, ConvLSTMConfig, ConvLSTMNowcaster, log_to_rain, rain_to_log


def test_cell_shapes_and_no_input() -> None:
    cell = ConvLSTMCell(3, 5, 3)
    x = torch.randn(2, 3, 8, 8)
    h, c = cell(x, cell.init_state(2, 8, 8, like=x))
    assert h.shape == c.shape == (2, 5, 8, 8)
    empty = ConvLSTMCell(0, 5, 3)
    h2, _ = empty(None, (h, c))
    assert h2.shape == (2, 5, 8, 8)
    assert torch.isfinite(h2).all()


@pytest.mark.parametrize("use_extrapolation", [False, True], ids=["obs", "obs+nowcast"])
def test_nowcaster_shapes_finite_nonnegative(use_extrapolation: bool) -> None:
    cfg = ConvLSTMConfig(
        t_in=3, t_out=4, hidden_channels=(4, 8, 8), use_extrapolation=use_extrapolation, extra_channels=2
    )
    model = ConvLSTMNowcaster(cfg)
    assert model.spatial_multiple == 8
    g = torch.Generator().manual_seed(0)
    past = rain_to_log(10 * torch.rand(2, 3, 1, 16, 24, generator=g))
    ext = rain_to_log(10 * torch.rand(2, 4, 2, 16, 24, generator=g)) if use_extrapolation else None
    out = model(past, ext)
    assert out.shape == (2, 4, 1, 16, 24)
    assert torch.isfinite(out).all()
    assert (out >= 0).all()
    assert (log_to_rain(out) >= 0).all()
    if not use_extrapolation:
        assert model(past, n_leads=6).shape == (2, 6, 1, 16, 24)


def test_nowcaster_rejects_bad_inputs() -> None:
    model = ConvLSTMNowcaster(ConvLSTMConfig(t_in=2, t_out=2, hidden_channels=(4, 4)))
    with pytest.raises(ValueError, match="multiples of 4"):
        model(torch.zeros(1, 2, 1, 10, 8))
    with pytest.raises(ValueError, match="None"):
        model(torch.zeros(1, 2, 1, 8, 8), torch.zeros(1, 2, 1, 8, 8))
    with pytest.raises(ValueError):
        ConvLSTMConfig(kernel_size=4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ConvLSTMConfig().t_in = 3  # type: ignore[misc]


def test_init_is_seeded_and_leaves_global_rng_alone() -> None:
    state = torch.random.get_rng_state()
    a = ConvLSTMNowcaster(ConvLSTMConfig(hidden_channels=(4, 8), seed=3))
    assert torch.equal(torch.random.get_rng_state(), state)
    b = ConvLSTMNowcaster(ConvLSTMConfig(hidden_channels=(4, 8), seed=3))
    c = ConvLSTMNowcaster(ConvLSTMConfig(hidden_channels=(4, 8), seed=4))
    for (_, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(pa, pb)
    assert not torch.equal(a.head.weight, c.head.weight)


def test_rain_log_round_trip() -> None:
    r = torch.tensor([0.0, 0.1, 1.0, 50.0, 200.0])
    torch.testing.assert_close(log_to_rain(rain_to_log(r)), r)
    assert rain_to_log(torch.tensor([-1.0])).item() == 0.0
    assert torch.isfinite(log_to_rain(torch.tensor([1e4]))).all()
