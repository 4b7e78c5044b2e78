"""The named diffusion-filter comparisons; `dacast.workflow.diffusion.config.DIFFUSION_PRESETS` is their registry.

`DiffusionConfig` is imported inside `diffusion_presets` because ``config.py``
calls it to build its registry while it is being imported.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from dacast.workflow.schema import Preset

if TYPE_CHECKING:
    from dacast.workflow.diffusion.config import DiffusionConfig


def diffusion_presets() -> tuple[Preset[DiffusionConfig], ...]:
    """The diffusion presets, in listing order."""
    from dacast.workflow.diffusion.config import DiffusionConfig, EnsembleSpec, TrainingSpec

    # The settings of docs/diffusion_da.md (benchmarks/diffusion_vs_letkf.py): one prior per network
    # trained 3000 steps on 10 LETKF runs x 1000 cycles, 16 Heun steps, isotropic covariance.
    full = DiffusionConfig(name="diffusion-l96", networks=("all", "every4", "arctan"), seeds=(3000, 3001, 3002))
    iterated = replace(full, name="diffusion-l96-iterated", networks=("all",), iterations=1, iteration_runs=2)
    moved = replace(full, name="diffusion-l96-transport", sampler=replace(full.sampler, transport=True))
    # Moved members and the hybrid prior: half the forecast members' localized Gaussian (their errors x 0.7).
    hybrid = replace(moved, name="diffusion-l96-hybrid", ensemble=EnsembleSpec(weight=0.5, scale=0.7))
    # A prior of 32 channels x 4 layers trained 400 steps on 600 pairs: a smoke run of the whole
    # application (about 20 s on one core), not a result.
    quick = replace(
        full,
        name="diffusion-quick",
        networks=("all",),
        seeds=(3000,),
        cycles=60,
        skip=20,
        training=TrainingSpec(runs=3, cycles=200, steps=400, batch_size=128, channels=32, layers=4),
        threads=1,
    )
    return (
        Preset(
            name="diffusion-l96",
            description="diffusion filter vs LETKF on Lorenz-96 (sakov2008), networks all/every4/arctan, "
            "3 seeds x 400 cycles: the diffusion filter's RMSE is 1.5x/2.5x/3.0x the LETKF's (~35 min on 2 cores)",
            config=full,
            source="docs/diffusion_da.md (benchmarks/diffusion_vs_letkf.py)",
        ),
        Preset(
            name="diffusion-l96-iterated",
            description="network all, the prior retrained once on 2 runs of the diffusion filter's own forecasts: "
            "1.38x the LETKF's RMSE (from 1.50x)",
            config=iterated,
            source="docs/diffusion_da.md, docs/diffusion_da_iterated.json",
        ),
        Preset(
            name="diffusion-l96-transport",
            description="as diffusion-l96 with the forecast members moved to the posterior, not redrawn: "
            "RMSE 1.35x/4.4x/12x the LETKF's (drawn: 1.50x/2.5x/3.0x; better for network all only)",
            config=moved,
            source="docs/diffusion_da.md, docs/diffusion_da_transport.json",
        ),
        Preset(
            name="diffusion-l96-hybrid",
            description="as diffusion-l96-transport with the hybrid prior (half the learned prior, half the forecast "
            "members' localized Gaussian): RMSE 1.09x/1.96x/1.49x the LETKF's, spread/RMSE 1.15 for network all",
            config=hybrid,
            source="docs/diffusion_da.md, docs/diffusion_da_hybrid.json",
        ),
        Preset(
            name="diffusion-quick",
            description="network all, 1 seed x 60 cycles, a tiny prior trained 400 steps: a smoke run (about 20 s)",
            config=quick,
        ),
    )


__all__ = ["diffusion_presets"]
