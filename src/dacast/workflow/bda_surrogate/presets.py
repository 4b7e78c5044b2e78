"""The named learned-regional-model experiments, listed by `config.BDA_SURROGATE_PRESETS`.

`BDASurrogateConfig` is imported inside `bda_surrogate_presets` because ``config.py``
calls it to build its registry while it is being imported.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from dacast.workflow.schema import Preset

if TYPE_CHECKING:
    from dacast.workflow.bda_surrogate.config import BDASurrogateConfig


def bda_surrogate_presets() -> tuple[Preset[BDASurrogateConfig], ...]:
    """The presets, in listing order."""
    from dacast.workflow.bda_surrogate.config import BDASurrogateConfig, NetSpec

    # The CNN corrects each 30-s forecast of the imperfect physics (hybrid): the purely learned
    # model of `bda-surrogate-pure` is ~50 % off per cycle and blows up in a free run (docs/bda_surrogate.md).
    analyses = BDASurrogateConfig(name="bda-surrogate-analyses", source="analyses", net=NetSpec(base="imperfect"))
    return (
        Preset(
            name="bda-surrogate-truth",
            description="64x64, 50 members: CNN correcting the imperfect physics, trained on truth runs (upper bound)",
            config=replace(analyses, name="bda-surrogate-truth", source="truth"),
        ),
        Preset(
            name="bda-surrogate-analyses",
            description="64x64, 50 members: CNN correcting the imperfect physics, trained on its BDA analyses",
            config=analyses,
        ),
        Preset(
            name="bda-surrogate-cycle",
            description="64x64, 50 members: analyses -> CNN -> analyses with it -> retrain (2 iterations)",
            config=replace(analyses, name="bda-surrogate-cycle", source="cycle"),
        ),
        Preset(
            name="bda-surrogate-pure",
            description="64x64, 50 members: a purely learned CNN model (no physics) trained on the analyses",
            config=replace(analyses, name="bda-surrogate-pure", net=NetSpec(base="none")),
        ),
    )


__all__ = ["bda_surrogate_presets"]
