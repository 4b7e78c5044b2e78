"""Verification: categorical scores, FSS, MAE, power spectra, plots; RMSE, spread and valid time of trajectories;
CRPS, exceedance probabilities, spread–skill and reliability of ensembles.

Conventions follow pysteps so that numbers compare with its gallery:
categorical events are ``value > threshold`` (``det_cat_fct``), FSS events
``value >= threshold`` (``spatialscores.fss``). Scores reduce over the last
two axes ``(y, x)``; leading axes (lead time, member, ...) are kept.
"""

from dacast.verify.categorical import Contingency, contingency, csi, far, frequency_bias, pod
from dacast.verify.continuous import mae
from dacast.verify.plots import plot_frames, plot_skill, save_nowcast_gif
from dacast.verify.probabilistic import crps_ensemble, crps_members, exceedance_probability, reliability, spread_skill
from dacast.verify.scores import score_nowcast
from dacast.verify.spatial import fractions, fss
from dacast.verify.spectrum import radial_power_spectrum
from dacast.verify.trajectory import ensemble_spread, pooled_csi, rms, rmse, time_mean_rmse, valid_time

__all__ = [
    "Contingency",
    "contingency",
    "crps_ensemble",
    "crps_members",
    "csi",
    "ensemble_spread",
    "exceedance_probability",
    "far",
    "fractions",
    "frequency_bias",
    "fss",
    "mae",
    "plot_frames",
    "plot_skill",
    "pod",
    "pooled_csi",
    "radial_power_spectrum",
    "reliability",
    "rms",
    "rmse",
    "save_nowcast_gif",
    "score_nowcast",
    "spread_skill",
    "time_mean_rmse",
    "valid_time",
]
