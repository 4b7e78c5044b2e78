"""Shared fixtures of the dacast.io tests: the real radar files, read in place."""

from __future__ import annotations

from pathlib import Path

import pytest

# ``radar_root`` comes from tests/conftest.py.


@pytest.fixture(scope="session")
def mch_file(radar_root: Path) -> Path:
    return radar_root / "mch" / "20150515" / "AQC151351550F_00005.801.gif"


@pytest.fixture(scope="session")
def fmi_file(radar_root: Path) -> Path:
    return radar_root / "fmi" / "pgm" / "20160928" / "201609281600_fmi.radar.composite.lowest_FIN_SUOMI1.pgm.gz"


@pytest.fixture(scope="session")
def knmi_file(radar_root: Path) -> Path:
    return radar_root / "KNMI" / "2010" / "08" / "RAD_NL25_RAP_5min_201008260540.h5"
