"""Real MeteoSwiss radar frames for the nowcast tests (read by ``mch_20150515`` in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch


@pytest.fixture(scope="session")
def rain_1630(mch_20150515: Callable[[str], np.ndarray]) -> np.ndarray:
    """Rain rate at 2015-05-15 16:30 UTC [mm/h], shape (640, 710)."""
    return mch_20150515("1630")


@pytest.fixture(scope="session")
def dbr_1630(rain_1630: np.ndarray) -> torch.Tensor:
    """dBR of the 16:30 frame (threshold 0.1 mm/h, -15 dBR below), NaN where no data, float64."""
    from dacast.nowcast import to_dbr

    return to_dbr(torch.from_numpy(rain_1630))


@pytest.fixture(scope="session")
def event_1630(mch_20150515: Callable[[str], np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs 16:20, 16:25, 16:30 and observations 16:35 .. 17:30 UTC [mm/h], (3|12, 640, 710)."""
    inputs = np.stack([mch_20150515(t) for t in ("1620", "1625", "1630")])
    later = [f"{(16 * 60 + 30 + 5 * i) // 60}{(30 + 5 * i) % 60:02d}" for i in range(1, 13)]
    observed = np.stack([mch_20150515(t) for t in later])
    return torch.from_numpy(inputs), torch.from_numpy(observed)
