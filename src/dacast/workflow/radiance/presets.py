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

    # 1200 training cycles after the spin-up give 36 000 columns: with 10 800 the learned operator's
    # validation error was 0.03-0.05 K higher and the DA with it 0.47 K worse in T (docs/obs_operator.md).
    full = RadianceConfig(
        name="amsua",
        experiments=("conv", "physical", "physical-nobc", "ml", "ml-truth"),
        training_cycles=1240,
        truth_samples=36000,
        ml=MLSpec(epochs=150, patience=20),
    )
    three = replace(full, name="amsua-3", experiments=("conv", "physical", "ml"))
    quick = replace(
        full,
        name="amsua-quick",
        seeds=(1,),
        cycles=100,
        spinup_cycles=20,
        training_cycles=340,
        truth_samples=6000,
        ml=MLSpec(hidden=128, depth=4, epochs=60, patience=10),
    )
    return (
        Preset(
            name="amsua",
            description="Liang et al. 2023 in a 40-column twin: CONV, +AMSU-A physical (+/- VarBC), "
            "+AMSU-A learned (bias-learning and truth-trained), 3 seeds x 60 days",
            config=full,
        ),
        Preset(name="amsua-3", description="the paper's three experiments only (CONV, physical, ML)", config=three),
        Preset(
            name="amsua-quick",
            description="all five experiments, 1 seed, 25 days, smaller networks and training sets (a few minutes)",
            config=quick,
        ),
    )


__all__ = ["radiance_presets"]
