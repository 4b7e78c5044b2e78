"""Generative data assimilation: the diffusion filter against the LETKF on Lorenz-96 twins (mission S7)."""

from dacast.workflow.diffusion.experiment import NETWORKS, Lorenz96Twin, Network, RunStats, run_filter, training_pairs
from dacast.workflow.diffusion.radar_config import RadarDiffusionConfig
from dacast.workflow.diffusion.radar_run import LatentRun, run_latent

__all__ = ["NETWORKS", "Lorenz96Twin", "Network", "RunStats", "run_filter", "training_pairs"]
__all__ += ["LatentRun", "RadarDiffusionConfig", "run_latent"]  # the latent filter on the radar twin
