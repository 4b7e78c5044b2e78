"""The named Big Data Assimilation twins; `dacast.workflow.bda.config.BDA_PRESETS` is their registry.

`BDAConfig` is imported inside `bda_presets` because ``config.py`` calls it to
build its registry while it is being imported.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from dacast.da.gridded import GriddedLETKFConfig
from dacast.workflow.schema import Preset

if TYPE_CHECKING:
    from dacast.workflow.bda.config import BDAConfig

# SCALE-LETKF's RTPP 0.95 and 2-km localization are tuned for 1000 members; with 50-100
# members, less relaxation and a 1-km length halve the rain error of the analysis and keep
# winds and height closer to the free run (measured: docs/bda.md).
SMALL_ENSEMBLE_LETKF = GriddedLETKFConfig(localization=1.0, rtpp=0.5)
# On the 1000-member run, weights every 2nd or 4th point gave the same or slightly lower
# analysis RMSE than every point (docs/bda.md), at a fraction of the cost.
MID_LETKF = replace(SMALL_ENSEMBLE_LETKF, weight_stride=2)


def bda_presets() -> tuple[Preset[BDAConfig], ...]:
    """The BDA presets, in listing order."""
    from dacast.workflow.bda.config import BDAConfig

    small = BDAConfig(
        members=50,
        grid=64,
        spinup_minutes=45.0,
        ensemble_pool=25,
        ensemble_lag_minutes=5.0,
        letkf=SMALL_ENSEMBLE_LETKF,
    )
    mid = BDAConfig(members=100, grid=256, forecast_every=20, free_run_members=50, letkf=MID_LETKF)
    big = replace(
        mid, members=1000, cycles=10, forecast_every=10, forecast_members=100, letkf=GriddedLETKFConfig(weight_stride=4)
    )
    # 10240 members on one GPU: SCALE-LETKF's settings as bda-256-1000; a larger pool lagged less keeps
    # the spin-up of the initial members short (40 snapshots x 2 min); the model's member chunks are sized
    # for the device (`default_chunk`).
    huge = replace(
        big, members=10240, cycles=5, forecast_every=5, ensemble_pool=256, ensemble_lag_minutes=2.0, device="cuda"
    )
    return (
        Preset(
            name="bda-small",
            description="64x64 at 500 m, 50 members, 20 cycles, L=1 km, RTPP 0.5 (runs in CI)",
            config=small,
        ),
        Preset(
            name="bda-256",
            description="256x256 at 500 m (128 km), 100 members, 20 cycles, L=1 km, RTPP 0.5, weights every 2nd point",
            config=mid,
        ),
        Preset(
            name="bda-256-1000",
            description="256x256 at 500 m, 1000 members, 10 cycles, SCALE-LETKF's L=2 km, RTPP 0.95; "
            "weights every 4th point",
            config=big,
        ),
        Preset(
            name="bda-256-10240",
            description="256x256 at 500 m, 10240 members on one GPU (float32), 5 cycles, L=2 km, RTPP 0.95; "
            "weights every 4th point",
            config=huge,
        ),
    )


__all__ = ["MID_LETKF", "SMALL_ENSEMBLE_LETKF", "bda_presets"]
