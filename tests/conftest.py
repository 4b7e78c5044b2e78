"""Fixtures every test folder shares: the real radar files of ``../shared/data/radar``, read in place.

The repository is checked out beside ``shared/`` (CI clones it there too);
``$DACAST_RADAR_ROOT`` points elsewhere. Tests that need the data skip with a
reason when neither exists.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from dacast.io import default_radar_root, read_mch_gif

# The Hypothesis profiles of tests/robustness (see its conftest.py): registered here, before pytest
# reads --hypothesis-profile, so that `pytest tests --hypothesis-profile long` works too.
_QUIET_CHECKS = [
    HealthCheck.too_slow,
    HealthCheck.data_too_large,
    HealthCheck.filter_too_much,
    HealthCheck.function_scoped_fixture,
    HealthCheck.large_base_example,
]
settings.register_profile(
    "ci", max_examples=100, deadline=None, derandomize=True, database=None, suppress_health_check=_QUIET_CHECKS
)
settings.register_profile("long", max_examples=2500, deadline=None, suppress_health_check=_QUIET_CHECKS)


# <repo>/tests/conftest.py -> <repo>/../shared/data/radar
SHARED_RADAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "radar"


@pytest.fixture(scope="session")
def radar_root() -> Path:
    """The shared radar folder beside the repository, else ``default_radar_root()``."""
    if (SHARED_RADAR / "mch").is_dir():
        return SHARED_RADAR
    try:
        return default_radar_root()
    except FileNotFoundError as exc:
        pytest.skip(f"shared radar data not found: {exc}")


@pytest.fixture(scope="session")
def mch_20150515(radar_root: Path) -> Callable[[str], np.ndarray]:
    """Reader of the MeteoSwiss 2015-05-15 frames: ``hhmm`` (UTC) -> rain rate [mm/h], (640, 710), NaN = no data."""

    def read(hhmm: str) -> np.ndarray:
        path = radar_root / "mch" / "20150515" / f"AQC15135{hhmm}F_00005.801.gif"
        if not path.exists():
            pytest.skip(f"radar frame not found: {path}")
        return read_mch_gif(path).values.astype(np.float64)

    return read


@pytest.fixture(scope="module")
def inprocess_dask():
    """A Dask client on an in-process LocalCluster of 2 workers x 1 thread (one per test module)."""
    from dask.distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        yield client
