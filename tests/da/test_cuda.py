"""The LETKF on CUDA equals the CPU result (skipped cleanly without a GPU)."""

from __future__ import annotations

import pytest
import torch
from da_helpers import noisy_obs, ring_ensemble

from dacast.da import ETKFConfig, LETKFConfig, Localization, etkf, letkf
from dacast.obs import Grid, every_kth

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.mark.parametrize(("k", "stride"), [(20, 2), (8, 1)], ids=["gram", "ensemble"])
def test_letkf_cuda_equals_cpu(k: int, stride: int) -> None:
    n = 400
    prior = ring_ensemble(k, n, seed=k)
    op = every_kth(n, stride, 0.5)
    y = noisy_obs(op(prior.mean(0)), seed=1)
    grid = Grid.ring(n)
    config = LETKFConfig(localization=Localization(length=4.0), inflation=1.05, rtps=0.3)
    cpu = letkf(prior, y, op, config, grid)
    gpu = letkf(prior.cuda(), y.cuda(), op, config, grid)
    assert gpu.ensemble.device.type == "cuda"
    torch.testing.assert_close(gpu.ensemble.cpu(), cpu.ensemble, rtol=0, atol=1e-10)
    torch.testing.assert_close(gpu.innovation.cpu(), cpu.innovation, rtol=0, atol=1e-12)


def test_etkf_cuda_equals_cpu() -> None:
    prior = ring_ensemble(15, 40, seed=3)
    op = every_kth(40, 3, 0.5)
    y = noisy_obs(op(prior.mean(0)), seed=2)
    cpu = etkf(prior, y, op, ETKFConfig())
    gpu = etkf(prior.cuda(), y.cuda(), op, ETKFConfig())
    torch.testing.assert_close(gpu.ensemble.cpu(), cpu.ensemble, rtol=0, atol=1e-10)
