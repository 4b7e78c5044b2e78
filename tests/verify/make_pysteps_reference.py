"""Print the pysteps FSS values stored in test_verify_fss.py.

Run by hand from this folder with pysteps 1.21.5: ``python make_pysteps_reference.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pysteps.verification.spatialscores import fss

from dacast.io import default_radar_root, read_mch_gif


def read_mch(hhmm: str) -> np.ndarray:
    """MeteoSwiss 2015-05-15 rain rate [mm/h] at ``hhmm`` UTC, (640, 710), NaN = no data."""
    path = Path(default_radar_root()) / "mch" / "20150515" / f"AQC15135{hhmm}F_00005.801.gif"
    return read_mch_gif(path).values.astype(np.float64)


rng = np.random.default_rng(0)
x, y = rng.gamma(0.5, 2.0, (40, 50)), rng.gamma(0.5, 2.0, (40, 50))
print("PYSTEPS_SYNTHETIC =", {s: float(fss(x, y, 1.0, s)) for s in (1, 4, 7)})
f, o = read_mch("1630"), read_mch("1700")
cases = ((1.0, 10), (5.0, 10), (1.0, 1), (1.0, 25), (0.5, 6))
print("PYSTEPS_MCH =", {(t, s): float(fss(f, o, t, s)) for t, s in cases})
