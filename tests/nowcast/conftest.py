"""Real MeteoSwiss radar frames for the nowcast tests, read with Pillow alone.

The conversion is the one of ``shared/data/radar/README.md`` (pysteps'
``import_mch_gif``, 5-min accumulation x 12 = mm/h). Tests that need the data
are skipped cleanly when the shared folder is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

RADAR = Path(os.environ.get("DACAST_RADAR_DIR", Path(__file__).resolve().parents[3] / "shared" / "data" / "radar"))
MCH_EVENT = RADAR / "mch" / "20150515"


def read_mch(hhmm: str) -> np.ndarray:
    """Rain rate [mm/h] of the 2015-05-15 MeteoSwiss AQC frame at ``hhmm`` UTC, (640, 710), NaN = no data."""
    path = MCH_EVENT / f"AQC15135{hhmm}F_00005.801.gif"
    if not path.exists():
        pytest.skip(f"radar data not found: {path}")
    dn = np.asarray(Image.open(path)).astype(np.int64)
    rain = 12.0 * (10.0 ** ((dn - 71.5) / 20.0) / 316.0) ** (1.0 / 1.5)
    rain[(dn <= 1) | ((dn >= 251) & (dn <= 254))] = 0.0
    rain[dn == 255] = np.nan
    return rain


@pytest.fixture(scope="session")
def rain_1630() -> np.ndarray:
    """Rain rate at 2015-05-15 16:30 UTC [mm/h], shape (640, 710)."""
    return read_mch("1630")


@pytest.fixture(scope="session")
def dbr_1630(rain_1630: np.ndarray) -> torch.Tensor:
    """dBR of the 16:30 frame (threshold 0.1 mm/h, -15 dBR below), NaN where no data, float64."""
    from dacast.nowcast import to_dbr

    return to_dbr(torch.from_numpy(rain_1630))


@pytest.fixture(scope="session")
def event_1630() -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs 16:20, 16:25, 16:30 and observations 16:35 .. 17:30 UTC [mm/h], (3|12, 640, 710)."""
    inputs = np.stack([read_mch(t) for t in ("1620", "1625", "1630")])
    later = [f"{(16 * 60 + 30 + 5 * i) // 60}{(30 + 5 * i) % 60:02d}" for i in range(1, 13)]
    observed = np.stack([read_mch(t) for t in later])
    return torch.from_numpy(inputs), torch.from_numpy(observed)
