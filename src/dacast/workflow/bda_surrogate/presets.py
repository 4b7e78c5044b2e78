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
    from dacast.workflow.bda_surrogate.config import BDASurrogateConfig

    analyses = BDASurrogateConfig(name="bda-surrogate-analyses", source="analyses")
    return (
        Preset(
            name="bda-surrogate-truth",
            description="64x64, 50 members: CNN trained on truth runs (the upper bound) in the 30-s LETKF",
            config=replace(analyses, name="bda-surrogate-truth", source="truth"),
        ),
        Preset(
            name="bda-surrogate-analyses",
            description="64x64, 50 members: CNN trained on the analyses of a BDA run with imperfect physics",
            config=analyses,
        ),
        Preset(
            name="bda-surrogate-cycle",
            description="64x64, 50 members: analyses -> CNN -> analyses with the CNN -> retrain (2 iterations)",
            config=replace(analyses, name="bda-surrogate-cycle", source="cycle"),
        ),
    )


__all__ = ["bda_surrogate_presets"]
