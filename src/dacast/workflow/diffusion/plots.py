"""The diffusion run's figures, made from ``diffusion_run.nc`` alone; the benchmark's rank histograms too."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from dacast.workflow.diffusion.config import FILTERS, DiffusionConfig
from dacast.workflow.figures import new_figure, save_figure

COLOURS = {"letkf": "tab:blue", "diffusion": "tab:orange"}


def plot_rank_histograms(
    frequencies: Mapping[tuple[str, str], Sequence[float]], networks: Sequence[str], path: str | Path
) -> Path:
    """Rank histograms, one row per network and one column per filter.

    Args:
        frequencies: ``(network, filter) -> `` relative frequency of the truth's rank among the
            members ``(members + 1,)`` (sums to 1; a flat histogram is at ``1 / (members + 1)``).
        networks: the rows, in order.
        path: the PNG to write.
    """
    fig = new_figure(figsize=(8, 2.2 * len(networks)))
    axes = fig.subplots(len(networks), len(FILTERS), squeeze=False, sharey="row")
    for i, network in enumerate(networks):
        for j, method in enumerate(FILTERS):
            freq = list(frequencies[(network, method)])
            ax = axes[i][j]
            ax.bar(range(len(freq)), freq, color=COLOURS[method])
            ax.axhline(1 / len(freq), color="k", lw=0.8, ls="--")
            ax.set_title(f"{network}: {method}", fontsize=9)
            ax.set_xlabel("rank of the truth among the members", fontsize=8)
        axes[i][0].set_ylabel("relative frequency", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_rmse_time(ds: xr.Dataset, config: DiffusionConfig, path: Path) -> Path:
    """Analysis RMSE (solid) and spread (dotted) against cycle, mean over seeds, one panel per network.

    A seed whose run diverged counts until it diverged (its later cycles are NaN).
    """
    networks = [str(n) for n in ds["network"].values]
    fig = new_figure(figsize=(8, 2.6 * len(networks)))
    axes = fig.subplots(len(networks), 1, squeeze=False, sharex=True)[:, 0]
    cycle = ds["cycle"].values
    for ax, network in zip(axes, networks, strict=True):
        for method in FILTERS:
            sel = {"network": network, "filter": method}
            rmse, spread = (ds[key].sel(sel).mean("seed", skipna=True).values for key in ("rmse", "spread"))
            ax.plot(cycle, rmse, color=COLOURS[method], lw=1, label=f"{method} RMSE")
            ax.plot(cycle, spread, color=COLOURS[method], lw=0.8, ls=":", label=f"{method} spread")
            if np.isnan(rmse).all():
                ax.plot([], [], color=COLOURS[method], ls="--", label=f"{method} (diverged)")
        ax.axvline(config.skip, color="k", ls=":", lw=0.8)
        ax.set(ylabel="analysis RMSE, spread", yscale="log", title=f"{network}: mean of {ds.sizes['seed']} seed(s)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    axes[-1].set_xlabel("cycle (dt = 0.05)")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_diffusion_run(ds: xr.Dataset, config: DiffusionConfig, out: Path) -> dict[str, Path]:
    """All figures of a run into ``out``; returns ``name -> path``."""
    ds = ds.assign_coords(
        network=[str(n) for n in ds["network_name"].values], filter=[str(f) for f in ds["filter_name"].values]
    )  # select by name
    counts = ds["rank_counts"].sum("seed")
    freq = counts / counts.sum("rank").clip(min=1)
    frequencies = {(str(n), str(m)): freq.sel(network=n, filter=m).values.tolist() for n in freq["network"].values
                   for m in freq["filter"].values}  # fmt: skip
    networks = [str(n) for n in ds["network"].values]
    return {
        "rmse_time": plot_rmse_time(ds, config, out / "rmse_time.png"),
        "ranks": plot_rank_histograms(frequencies, networks, out / "rank_histograms.png"),
    }


__all__ = ["plot_diffusion_run", "plot_rank_histograms", "plot_rmse_time"]
