"""The latent-filter run's figure, made from ``latent_run.nc`` alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr
from matplotlib.ticker import MaxNLocator

from dacast.workflow.diffusion.radar_config import RadarDiffusionConfig
from dacast.workflow.diffusion.radar_output import LABELS
from dacast.workflow.figures import new_figure, save_figure

COLOURS = {"letkf": "tab:blue", "latent": "tab:orange"}


def plot_rain_time(ds: xr.Dataset, config: RadarDiffusionConfig, path: Path) -> Path:
    """Rain RMSE (spread dotted) and TS at 30 dBZ of the analysis mean against cycle, mean over seeds, both filters.

    Args:
        ds: the run's dataset (`dacast.workflow.diffusion.radar_output.latent_dataset`): ``rain_rmse``,
            ``rain_spread``, ``ts30`` ``(filter, seed, cycle)``.
        config: the run (its spin-up ``skip`` is marked).
        path: the PNG to write.

    A seed whose run diverged counts until it diverged (its later cycles are NaN).
    """
    names = [str(f) for f in ds["filter_name"].values]
    ds = ds[["rain_rmse", "rain_spread", "ts30"]].assign_coords(filter=names)
    fig = new_figure(figsize=(8, 5.6))
    top, bottom = fig.subplots(2, 1, sharex=True)
    cycle = ds["cycle"].values
    for method in ds["filter"].values:
        mine = ds.sel(filter=method).mean("seed", skipna=True)
        rmse, spread, ts = (mine[k].values for k in ("rain_rmse", "rain_spread", "ts30"))
        colour, label = COLOURS.get(str(method), "k"), LABELS.get(str(method), str(method))
        top.plot(cycle, rmse, color=colour, lw=1.2, label=f"{label} RMSE")
        top.plot(cycle, spread, color=colour, lw=0.8, ls=":", label=f"{label} spread")
        bottom.plot(cycle, ts, color=colour, lw=1.2, label=label)
        if np.isnan(rmse).all():
            top.plot([], [], color=colour, ls="--", label=f"{label} (diverged)")
    for ax in (top, bottom):
        ax.axvline(config.skip + 0.5, color="k", ls=":", lw=0.8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    top.set(ylabel="rain r: analysis RMSE, spread", yscale="log",
            title=f"mean of {ds.sizes['seed']} seed(s); scores after cycle {config.skip}")  # fmt: skip
    bottom.set(ylabel="threat score at 30 dBZ", ylim=(0, 1), xlabel=f"cycle ({config.bda.cycle_seconds:g} s each)")
    bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    return save_figure(fig, path)


__all__ = ["plot_rain_time"]
