"""The named surrogate <-> DA experiments; `dacast.workflow.surrogate.config.SURROGATE_PRESETS` lists them.

`SurrogateConfig` and `NetSpec` are imported inside `surrogate_presets` because
``config.py`` calls it to build its registry while it is being imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from dacast.da import AdaptiveInflation, ETKFConfig
from dacast.ml.surrogate_train import SurrogateTrainConfig
from dacast.workflow.schema import Preset
from dacast.workflow.twin.config import ModelSpec, ObsSpec

if TYPE_CHECKING:
    from dacast.workflow.surrogate.config import SurrogateConfig

_L63_TRUTH = ModelSpec(name="coupled_lorenz63", omega=2.0, damping=2.0, x3_star=0.0, variant="constant")


def _l96_obs_indices(seed: int = 2020) -> tuple[int, ...]:
    gen = torch.Generator().manual_seed(seed)
    return tuple(sorted(int(i) for i in torch.randperm(40, generator=gen)[:20]))


def surrogate_presets() -> tuple[Preset[SurrogateConfig], ...]:
    """The surrogate presets, in listing order."""
    from dacast.workflow.surrogate.config import NetSpec, SurrogateConfig

    lorenz63 = SurrogateConfig(
        name="surrogate-lorenz63",
        truth=_L63_TRUTH,
        imperfect=ModelSpec(name="lorenz63"),
        dt=0.01,
        obs_every=5,
        obs=ObsSpec(kind="identity", error_std=0.1),
        filter=ETKFConfig(inflation=1.1),
        adaptive_inflation=AdaptiveInflation(weight=0.05),
        tuned_inflations=(1.1, 1.3, 1.6, 2.0, 3.0, 4.0),
        members=20,
        cycles=10000,
        burn_in=5.0,
        net=NetSpec(kind="lstm", window=16, hidden=32, base="imperfect", linear_skip=True),
        train=SurrogateTrainConfig(epochs=60, batch_size=128, lr=3e-3, patience=10),
        warm_start=True,
        iterations=30,
        tolerance=0.005,
        patience=4,
    )
    lorenz96 = SurrogateConfig(
        name="surrogate-lorenz96",
        truth=ModelSpec(name="lorenz96", n_state=40, forcing=8.0),
        imperfect=ModelSpec(name="lorenz96", n_state=40, forcing=6.0),
        dt=0.05,
        obs_every=1,
        obs=ObsSpec(kind="subset", indices=_l96_obs_indices(), error_std=1.0),
        filter=ETKFConfig(inflation=1.06),
        members=30,
        cycles=3000,
        burn_in=10.0,
        net=NetSpec(kind="cnn", window=1, hidden=24, layers=2, kernel=5),
        train=SurrogateTrainConfig(epochs=40, batch_size=64, lr=3e-3, patience=8),
        iterations=6,
        tolerance=0.01,
        patience=2,
        test_cycles=1500,
        test_starts=100,
        free_leads=80,
    )
    return (
        Preset(
            name="surrogate-lorenz63",
            description="coupled Lorenz-63 truth, Lorenz-63 model + residual LSTM, ETKF with adaptive inflation",
            config=lorenz63,
        ),
        Preset(
            name="surrogate-lorenz96",
            description="Lorenz-96 truth (F=8), pure CNN surrogate vs the F=6 model, half the points observed",
            config=lorenz96,
        ),
    )


__all__ = ["surrogate_presets"]
