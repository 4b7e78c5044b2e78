"""A radiance run small enough for unit tests (a few seconds)."""

from __future__ import annotations

import pytest

from dacast.workflow.radiance.config import ColumnSpec, ConventionalSpec, MLSpec, RadianceConfig, SatelliteSpec


def tiny(**changes) -> RadianceConfig:
    """12 columns x 14 levels, 8 members, 8 fields of view, 16 cycles, a 2 x 16 network trained for 3 epochs."""
    base = {
        "name": "tiny",
        "experiments": ("conv", "physical", "ml"),
        "seeds": (1,),
        "model": ColumnSpec(n_columns=12, n_levels=14),
        "conventional": ConventionalSpec(stations=3),
        "satellite": SatelliteSpec(fovs=8, step=5),
        "members": 8,
        "cycles": 16,
        "spinup_cycles": 4,
        "localization": 2.0,
        "training_cycles": 20,
        "truth_samples": 200,
        "ml": MLSpec(hidden=16, depth=2, epochs=3, patience=2),
    }
    return RadianceConfig(**(base | changes))


@pytest.fixture
def make_tiny():
    """`tiny`: a function of the fields to change."""
    return tiny
