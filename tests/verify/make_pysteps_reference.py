"""Print the pysteps FSS values stored in test_verify_fss.py.

Run by hand from this folder with pysteps 1.21.5: ``python make_pysteps_reference.py``.
"""

from __future__ import annotations

import numpy as np
from conftest import read_mch
from pysteps.verification.spatialscores import fss

rng = np.random.default_rng(0)
x, y = rng.gamma(0.5, 2.0, (40, 50)), rng.gamma(0.5, 2.0, (40, 50))
print("PYSTEPS_SYNTHETIC =", {s: float(fss(x, y, 1.0, s)) for s in (1, 4, 7)})
f, o = read_mch("1630"), read_mch("1700")
cases = ((1.0, 10), (5.0, 10), (1.0, 1), (1.0, 25), (0.5, 6))
print("PYSTEPS_MCH =", {(t, s): float(fss(f, o, t, s)) for t, s in cases})
