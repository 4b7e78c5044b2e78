"""Two real MeteoSwiss frames (2015-05-15 16:30 and 17:00 UTC), read by ``mch_20150515`` in tests/conftest.py."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest


@pytest.fixture(scope="session")
def mch_pair(mch_20150515: Callable[[str], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(16:30, 17:00 UTC) rain rate [mm/h], each (640, 710)."""
    return mch_20150515("1630"), mch_20150515("1700")
