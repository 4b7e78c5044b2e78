"""The paper's three experiments, shortened (``amsua-quick``: 1 seed, 160 cycles, 100 scored): about 70 s.

Liang et al. (2023) found physical > learned > radiosondes only, with the network trained
on one month of first guesses. The twin reproduces it in temperature (docs/obs_operator.md:
0.833 < 1.049 < 1.698 K over 3 seeds x 60 days); the test asserts it on a fixed seed, with
the bias removed by VarBC and learned by the network. (Trained on ten months, the learned
operator ties with the physical one: that is in the docs, not asserted here.)
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from dacast.workflow.radiance.config import RADIANCE_PRESETS
from dacast.workflow.radiance.run import run_radiance


@pytest.mark.slow
def test_physical_beats_learned_beats_radiosondes_in_temperature(tmp_path):
    config = dataclasses.replace(RADIANCE_PRESETS["amsua-quick"], experiments=("conv", "physical", "ml"))
    result = run_radiance(config, tmp_path / "run", plots=False)
    e = result.summary["experiments"]
    t = {k: v["rmse_t_a"] for k, v in e.items()}
    assert t["physical"] < 0.9 * t["ml"], t  # measured 0.823 < 1.130 < 1.735 K
    assert t["ml"] < 0.8 * t["conv"], t
    assert e["physical"]["rmse_q_a"] < e["conv"]["rmse_q_a"]
    phys, ml = e["physical"]["departures"], e["ml"]["departures"]
    raw = np.array([phys[c]["omb_raw_mean"] for c in ("6", "7", "8")])
    corrected = np.array([phys[c]["omb_mean"] for c in ("6", "7", "8")])
    learned = np.array([ml[c]["omb_mean"] for c in ("6", "7", "8")])
    assert np.abs(raw).max() > 0.5  # the observations are biased (ch 6 by ~1 K) ...
    assert np.abs(corrected).max() < 0.1  # ... VarBC removes it ...
    assert np.abs(learned).max() < 0.15  # ... and the learned operator has learned it
    assert all(c == -1 for v in e.values() for c in v["diverged_cycles"])
