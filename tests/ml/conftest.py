"""Tiny settings shared by the nowcasting tests (small nets, small crops, few steps)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from dacast.ml import ConvLSTMConfig, NowcastLossConfig, NowcastTrainConfig, moving_blobs


@pytest.fixture
def tiny_model_config() -> ConvLSTMConfig:
    return ConvLSTMConfig(t_in=3, t_out=3, hidden_channels=(8, 16), seed=0)


@pytest.fixture(scope="session")
def blob_sequence() -> np.ndarray:
    """Moving rain cells, ``(60, 48, 48)`` mm/h."""
    return moving_blobs(60, 48, 48, n_blobs=4, seed=0)


@pytest.fixture
def tiny_train_config(tiny_model_config: ConvLSTMConfig) -> NowcastTrainConfig:
    return NowcastTrainConfig(
        model=tiny_model_config,
        loss=NowcastLossConfig(nonlocal_scales=(1, 2)),
        crop_size=32,
        batch_size=4,
        max_steps=40,
        val_every=10,
        val_batches=2,
        lr=3e-3,
        device="cpu",
        seed=0,
    )


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny tensors: one torch thread is far faster than several on a shared CPU (surrogate tests use it)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
