"""Motion, extrapolation and the nowcast on CUDA equal the CPU results (skipped without a GPU)."""

from __future__ import annotations

import pytest
import torch

from dacast.nowcast import ExtrapolationConfig, OpticalFlowConfig, extrapolate, extrapolation_nowcast, trec
from dacast.nowcast.motion import gaussian_blur

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def blobs(h: int = 192, w: int = 256) -> torch.Tensor:
    """A smooth random field [dBR-like], shape (H, W), float64."""
    noise = torch.randn(h, w, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    field = gaussian_blur(noise, 4.0)
    return 10.0 * field / field.std()


def test_trec_cuda_equals_cpu() -> None:
    f = blobs()
    frames = torch.stack([f, torch.roll(f, shifts=(-2, 3), dims=(0, 1))]).float()
    cpu = trec(frames, block=24, stride=8)
    gpu = trec(frames.cuda(), block=24, stride=8)
    assert gpu.device.type == "cuda"
    assert (cpu[0] - 3.0).abs().median() < 0.1 and (cpu[1] + 2.0).abs().median() < 0.1
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=1e-3)


def test_extrapolate_cuda_equals_cpu() -> None:
    f = blobs()
    g = torch.Generator().manual_seed(1)
    motion = gaussian_blur(torch.randn(2, 192, 256, generator=g, dtype=torch.float64), 20.0) * 50.0 + 1.0
    cpu = extrapolate(f, motion, 6, substeps=2)
    gpu = extrapolate(f.cuda(), motion.cuda(), 6, substeps=2)
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=1e-9, equal_nan=True)


@pytest.mark.parametrize("motion", [None, OpticalFlowConfig(method="dis")], ids=["trec", "dis"])
def test_nowcast_runs_on_cuda(motion: OpticalFlowConfig | None) -> None:
    rain = torch.pow(10.0, torch.stack([blobs(), torch.roll(blobs(), 2, 1), torch.roll(blobs(), 4, 1)]) / 10.0)
    config = ExtrapolationConfig() if motion is None else ExtrapolationConfig(motion=motion)
    cpu = extrapolation_nowcast(rain, 3, config)
    gpu = extrapolation_nowcast(rain.cuda(), 3, config)
    assert gpu.device.type == "cuda" and gpu.shape == (3, 192, 256)
    ok = torch.isfinite(cpu) & torch.isfinite(gpu.cpu())
    assert ok.float().mean() > 0.9
    torch.testing.assert_close(gpu.cpu()[ok], cpu[ok], rtol=1e-3, atol=1e-3)
