"""Two real MeteoSwiss frames (2015-05-15 16:30 and 17:00 UTC) read with Pillow alone.

Conversion from ``shared/data/radar/README.md`` (pysteps' ``import_mch_gif``,
5-min accumulation x 12 = mm/h); skipped cleanly when the data are absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

RADAR = Path(os.environ.get("DACAST_RADAR_DIR", Path(__file__).resolve().parents[3] / "shared" / "data" / "radar"))


def read_mch(hhmm: str) -> np.ndarray:
    """Rain rate [mm/h] of the 2015-05-15 frame at ``hhmm`` UTC, shape (640, 710), NaN = no data."""
    path = RADAR / "mch" / "20150515" / f"AQC15135{hhmm}F_00005.801.gif"
    if not path.exists():
        pytest.skip(f"radar data not found: {path}")
    dn = np.asarray(Image.open(path)).astype(np.int64)
    rain = 12.0 * (10.0 ** ((dn - 71.5) / 20.0) / 316.0) ** (1.0 / 1.5)
    rain[(dn <= 1) | ((dn >= 251) & (dn <= 254))] = 0.0
    rain[dn == 255] = np.nan
    return rain


@pytest.fixture(scope="session")
def mch_pair() -> tuple[np.ndarray, np.ndarray]:
    """(16:30, 17:00 UTC) rain rate [mm/h], each (640, 710)."""
    return read_mch("1630"), read_mch("1700")
