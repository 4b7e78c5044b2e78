"""The named latent-filter comparisons on the radar twin; `dacast.workflow.diffusion.radar_config.RADAR_PRESETS`.

`RadarDiffusionConfig` is imported inside `radar_presets` because ``radar_config.py``
calls it to build its registry while it is being imported.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from dacast.workflow.schema import Preset

if TYPE_CHECKING:
    from dacast.workflow.diffusion.radar_config import RadarDiffusionConfig


def radar_presets() -> tuple[Preset[RadarDiffusionConfig], ...]:
    """The latent-filter presets, in listing order."""
    from dacast.workflow.diffusion.radar_config import RadarDiffusionConfig

    # benchmarks/latent_diffusion_vs_letkf.py's defaults: bda-small (64 x 64, 50 members, 20 cycles),
    # 12 gridded-LETKF training runs x 30 cycles from seed 1000, LatentSetup(), verification seeds 0-2.
    full = RadarDiffusionConfig(name="latent-radar")
    # A 4-channel autoencoder of width 16 trained 10 epochs and a 1-layer prior trained 10 steps on
    # 3 samples, 2 sampler steps: a smoke run of the whole application (about 10 s on one core), not a
    # result. (With 2 epochs of width 8 the decoded increments were too small: the ensemble collapsed.)
    quick = replace(
        full,
        name="latent-radar-quick",
        bda=replace(full.bda, grid=32, members=8, cycles=3),
        seeds=(0,),
        skip=1,
        train_seeds=1,
        train_cycles=3,
        keep_members=2,
        autoencoder=replace(full.autoencoder, latent_channels=4, width=16, epochs=10, batch_size=4),
        prior=replace(full.prior, steps=10, batch_size=2, channels=8, layers=1, val_fraction=0.2),
        sampler=replace(full.sampler, steps=2),
        threads=1,
    )
    return (
        Preset(
            name="latent-radar",
            description="latent diffusion filter vs gridded LETKF on bda-small (64x64, 50 members, 20 cycles), "
            "3 seeds; trained on 12 LETKF runs x 30 cycles",
            config=full,
            source="docs/diffusion_da.md (benchmarks/latent_diffusion_vs_letkf.py)",
        ),
        Preset(
            name="latent-radar-quick",
            description="32x32, 8 members, 1 seed x 3 cycles, a tiny filter trained on 3 LETKF cycles: "
            "a smoke run (about 10 s)",
            config=quick,
        ),
    )


__all__ = ["radar_presets"]
