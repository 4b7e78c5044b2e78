"""Generative data assimilation: the diffusion filter against the LETKF on Lorenz-96 twins (mission S7)."""

from dacast.workflow.diffusion.experiment import NETWORKS, Lorenz96Twin, Network, RunStats, run_filter, training_pairs

__all__ = ["NETWORKS", "Lorenz96Twin", "Network", "RunStats", "run_filter", "training_pairs"]
