"""Full-frame prediction (padding, tiling), CPU inference time, and CUDA (skipped cleanly without it)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from dacast.ml import ConvLSTMConfig, ConvLSTMNowcaster, moving_blobs, predict, rain_to_log


@pytest.mark.parametrize("use_extrapolation", [False, True], ids=["obs", "obs+nowcast"])
def test_predict_pads_odd_grids(use_extrapolation: bool) -> None:
    cfg = ConvLSTMConfig(t_in=3, t_out=4, hidden_channels=(4, 8, 8), use_extrapolation=use_extrapolation)
    model = ConvLSTMNowcaster(cfg)
    past = moving_blobs(3, 37, 45, seed=0)
    past[0, :5, :5] = np.nan
    ext = np.repeat(past[-1:], 4, axis=0) if use_extrapolation else None
    out = predict(model, past, ext, device="cpu")
    assert out.shape == (4, 37, 45) and out.device.type == "cpu"
    assert torch.isfinite(out).all() and (out >= 0).all()
    # Same as running the network on the input edge-padded to 40 x 48 and cropping the result.
    z = rain_to_log(
        torch.nn.functional.pad(torch.from_numpy(np.nan_to_num(past))[None], (0, 3, 0, 3), mode="replicate")
    )
    e = None
    if use_extrapolation:
        e = rain_to_log(torch.nn.functional.pad(torch.from_numpy(ext)[None], (0, 3, 0, 3), mode="replicate"))[
            :, :, None
        ]
    with torch.no_grad():
        direct = torch.expm1(model(z[:, :, None], e)[0, :, 0, :37, :45])
    torch.testing.assert_close(out, direct)


def test_predict_tiled() -> None:
    model = ConvLSTMNowcaster(ConvLSTMConfig(t_in=2, t_out=3, hidden_channels=(4, 8)))
    past = torch.from_numpy(moving_blobs(2, 50, 70, seed=1))
    tiled = predict(model, past, device="cpu", tile=32, overlap=8, tile_batch=3)
    assert tiled.shape == (3, 50, 70)
    assert torch.isfinite(tiled).all() and (tiled >= 0).all()
    whole = predict(model, past, device="cpu")
    # Tiles see less context than the whole domain, but away from tile seams they agree closely.
    assert (tiled - whole).abs().median() < 0.05 * whole.abs().max()
    with pytest.raises(ValueError, match="tile"):
        predict(model, past, device="cpu", tile=30)


@pytest.mark.slow
def test_cpu_inference_time_default_model() -> None:
    """One 12-lead nowcast on a 640 x 710 grid with the default model (printed, not asserted)."""
    past = 5 * torch.rand(6, 640, 710, generator=torch.Generator().manual_seed(0))
    for use_extrapolation in (False, True):
        model = ConvLSTMNowcaster(ConvLSTMConfig(use_extrapolation=use_extrapolation))
        ext = past[-1].expand(12, -1, -1) if use_extrapolation else None
        predict(model, past[:, :64, :64], None if ext is None else ext[:, :64, :64], device="cpu")  # warm-up
        t0 = time.perf_counter()
        out = predict(model, past, ext, device="cpu")
        dt = time.perf_counter() - t0
        n_par = sum(p.numel() for p in model.parameters())
        print(
            f"\nCPU ({torch.get_num_threads()} threads) 12-lead nowcast 640x710, "
            f"hidden={model.config.hidden_channels}, extrapolation={use_extrapolation}, {n_par} parameters: {dt:.2f} s"
        )
        assert out.shape == (12, 640, 710)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_and_trains() -> None:
    model = ConvLSTMNowcaster(ConvLSTMConfig(t_in=3, t_out=4, hidden_channels=(8, 16, 16)))
    past = torch.from_numpy(moving_blobs(3, 61, 83, seed=2))
    cpu = predict(model, past, device="cpu")
    gpu = predict(model, past, device="cuda")
    assert next(model.parameters()).device.type == "cuda"
    torch.testing.assert_close(gpu, cpu, rtol=1e-3, atol=1e-3)
    auto = predict(model, past)  # "auto" picks CUDA
    torch.testing.assert_close(auto, gpu)
    from dacast.ml import NowcastLossConfig, NowcastTrainConfig, split_by_time, train_nowcast

    seq = moving_blobs(40, 48, 48, seed=0)
    train, val = split_by_time(seq, val_fraction=0.25, gap=6)
    cfg = NowcastTrainConfig(
        model=ConvLSTMConfig(t_in=3, t_out=3, hidden_channels=(8, 16)),
        loss=NowcastLossConfig(adversarial_weight=0.1, nonlocal_scales=(1, 2)),
        crop_size=32, batch_size=4, max_steps=4, val_every=2, device="cuda",
    )  # fmt: skip
    result = train_nowcast(cfg, train, val, progress=False)
    assert result.device.startswith("cuda")
    assert all(np.isfinite(h["val_loss"]) for h in result.history)
