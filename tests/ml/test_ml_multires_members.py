"""Ensemble members with the noise-independent work shared: the same numbers as one forward pass each."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from dacast.ml import MultiResConfig, MultiResNowcaster, forecast_members, predict, predict_ensemble

pytestmark = pytest.mark.usefixtures("one_thread")


def _net(**kw: Any) -> MultiResNowcaster:
    base: dict[str, Any] = {
        "t_in": 3,
        "t_out": 4,
        "hidden_channels": (4, 6, 8),
        "n_outputs": 4,
        "noise_channels": 3,
        "use_extrapolation": True,
        "seed": 2,
    }
    net = MultiResNowcaster(MultiResConfig(**(base | kw))).eval()
    with torch.no_grad():  # non-zero biases so that they count; larger weights so that the noise carries
        for p in net.parameters():
            if p.ndim == 1:
                p.uniform_(-0.3, 0.3, generator=torch.Generator().manual_seed(p.numel()))
            else:
                p.mul_(3.0)
    return net


def _inputs(net: MultiResNowcaster, members: int, h: int = 24, w: int = 40) -> tuple:
    gen = torch.Generator().manual_seed(7)
    cfg = net.config
    past = 2 * torch.rand(1, cfg.t_in, 1, h, w, generator=gen)
    ext = 2 * torch.rand(1, cfg.t_out, 1, h, w, generator=gen) if cfg.use_extrapolation else None
    return past, ext, 30 * net.sample_noise(members, h, w, generator=gen)  # loud, so that members differ


@pytest.mark.parametrize(
    ("kw", "resolution"),
    [
        ({}, 0),
        ({}, 1),
        ({}, 2),
        ({}, 3),  # the head on the top cell's hidden state
        ({"use_extrapolation": False}, 0),
        ({"kernel_size": 5, "hidden_channels": (4, 6), "n_outputs": 2}, 0),
    ],
)
def test_each_member_is_the_forward_pass_of_its_noise(kw: dict[str, Any], resolution: int) -> None:
    net = _net(**kw)
    past, ext, noise = _inputs(net, 3)
    stage = net.n_outputs - 1 - resolution
    with torch.inference_mode():
        got = forecast_members(net, past, ext, noise, resolution=resolution)
        for m in range(3):
            want = net(past, ext, stage=stage, noise=noise[m : m + 1])[0]
            torch.testing.assert_close(got[m : m + 1], want, rtol=1e-5, atol=1e-6)
    assert got.shape == (3, net.config.t_out, 1, 24 >> resolution, 40 >> resolution)
    assert (got[0] - got[1]).abs().max() > 1e-4  # the noise matters


def test_batches_and_progress_give_the_same_members() -> None:
    net = _net()
    past, ext, noise = _inputs(net, 5)
    done: list[int] = []
    with torch.inference_mode():
        one = forecast_members(net, past, ext, noise, on_member=done.append)
        two = forecast_members(net, past, ext, noise, batch=2)
    assert done == [1, 2, 3, 4, 5]
    torch.testing.assert_close(one, two, rtol=1e-5, atol=1e-6)


def test_predict_ensemble_members_are_predict_with_their_seed() -> None:
    net = _net()
    gen = torch.Generator().manual_seed(3)
    past, ext = 5 * torch.rand(3, 21, 35, generator=gen), 5 * torch.rand(4, 21, 35, generator=gen)  # padded to 24x40
    ens = predict_ensemble(net, past, ext, members=3, seed=10, device="cpu", batch=2)
    assert ens.shape == (3, 4, 21, 35)
    for m in range(3):
        want = predict(net, past, ext, device="cpu", noise_seed=10 + m)
        torch.testing.assert_close(ens[m], want, rtol=1e-5, atol=1e-5)
    coarse = predict_ensemble(net, past, ext, members=2, seed=10, device="cpu", resolution=2)
    torch.testing.assert_close(coarse[1], predict(net, past, ext, device="cpu", noise_seed=11, resolution=2))


def test_bad_input_is_refused() -> None:
    net = _net()
    past, ext, noise = _inputs(net, 2)
    with pytest.raises(ValueError, match="ensemble network"):
        forecast_members(_net(noise_channels=0), past, ext, noise)
    with pytest.raises(ValueError, match="batch 1"):
        forecast_members(net, past.expand(2, -1, -1, -1, -1), ext.expand(2, -1, -1, -1, -1), noise)
    with pytest.raises(ValueError, match="noise must be"):
        forecast_members(net, past, ext, noise[:, :, :2])
    with pytest.raises(ValueError, match="resolution"):
        forecast_members(net, past, ext, noise, resolution=4)
    with pytest.raises(ValueError, match="batch must be"):
        forecast_members(net, past, ext, noise, batch=0)
    with pytest.raises(ValueError, match="extrapolation must be given"):
        forecast_members(net, past, None, noise)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_members_match_the_cpu() -> None:
    net = _net()
    gen = torch.Generator().manual_seed(3)
    past, ext = 5 * torch.rand(3, 24, 40, generator=gen), 5 * torch.rand(4, 24, 40, generator=gen)
    cpu = predict_ensemble(net, past, ext, members=4, device="cpu")
    gpu = predict_ensemble(net, past, ext, members=4, device="cuda")
    torch.testing.assert_close(gpu, cpu, rtol=1e-3, atol=1e-4)
