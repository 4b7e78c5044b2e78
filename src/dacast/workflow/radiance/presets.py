"""The named radiance experiments; `dacast.workflow.radiance.config.RADIANCE_PRESETS` is their registry.

`RadianceConfig` is imported inside `radiance_presets` because ``config.py``
calls it to build its registry while it is being imported.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from dacast.workflow.schema import Preset

if TYPE_CHECKING:
    from dacast.workflow.radiance.config import RadianceConfig


def radiance_presets() -> tuple[Preset[RadianceConfig], ...]:
    """The radiance presets, in listing order."""
    from dacast.workflow.radiance.config import MLSpec, RadianceConfig

    # The paper trained on one month of first guesses: 124 six-hourly cycles after the 40-cycle
    # spin-up of the training run, 3720 columns here. With ten months (36 000 columns) the learned
    # operator ties with the physical one (preset amsua-10months; docs/obs_operator.md).
    full = RadianceConfig(
        name="amsua",
        experiments=("conv", "physical", "physical-nobc", "ml", "ml-truth"),
        training_cycles=164,
        truth_samples=3720,
        ml=MLSpec(epochs=150, patience=20),
    )
    rich = replace(full, name="amsua-10months", training_cycles=1240, truth_samples=36000)
    three = replace(full, name="amsua-3", experiments=("conv", "physical", "ml"))
    # VarBC needs about 40 cycles to learn the bias: a shorter spin-up favours the learned operator.
    quick = replace(full, name="amsua-quick", seeds=(1,), cycles=160, spinup_cycles=60)
    return (
        Preset(
            name="amsua",
            description="Liang et al. 2023 in a 40-column twin: CONV, +AMSU-A physical (+/- VarBC), "
            "+AMSU-A learned (bias-learning and truth-trained), 3 seeds x 60 days",
            config=full,
        ),
        Preset(name="amsua-3", description="the paper's three experiments only (CONV, physical, ML)", config=three),
        Preset(
            name="amsua-10months",
            description="amsua with both learned operators trained on ten months (36 000 columns) instead of one",
            config=rich,
        ),
        Preset(
            name="amsua-quick",
            description="all five experiments, 1 seed, 40 days (the last 25 scored): about 2 minutes",
            config=quick,
        ),
    )


__all__ = ["radiance_presets"]
