"""Tiny twin experiments shared by the workflow tests (each runs in well under a second)."""

from __future__ import annotations

import pytest

from dacast.da import ETKFConfig, LETKFConfig, Localization
from dacast.workflow import ModelSpec, ObsSpec, TwinConfig


@pytest.fixture
def l63_tiny() -> TwinConfig:
    """Lorenz-63, all observed every 5 steps, ETKF with 5 members, 20 analyses."""
    return TwinConfig(
        model=ModelSpec(name="lorenz63"),
        dt=0.01,
        obs=ObsSpec(kind="identity", error_std=1.0),
        obs_every=5,
        filter=ETKFConfig(inflation=1.02),
        members=5,
        cycles=20,
        burn_in=0.2,
        initial_std=1.0,
        seed=1,
    )


@pytest.fixture
def l96_tiny() -> TwinConfig:
    """Lorenz-96 on 12 points, every 2nd observed, LETKF with 6 members, 15 analyses."""
    return TwinConfig(
        model=ModelSpec(name="lorenz96", n_state=12),
        dt=0.05,
        obs=ObsSpec(kind="every_kth", k=2, error_std=0.5),
        obs_every=1,
        filter=LETKFConfig(localization=Localization(length=2.0), inflation=1.05),
        members=6,
        cycles=15,
        burn_in=0.25,
        initial_std=1.0,
        seed=2,
    )
