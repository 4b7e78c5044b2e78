"""The radiance run's figures, made from ``radiance_run.nc`` alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from dacast.workflow.figures import new_figure, save_figure
from dacast.workflow.radiance.config import RadianceConfig

COLOURS = {
    "conv": "tab:grey",
    "physical": "tab:blue",
    "physical-nobc": "tab:cyan",
    "ml": "tab:red",
    "ml-truth": "tab:orange",
}


def _after_spinup(da: xr.DataArray, spinup: int) -> xr.DataArray:
    return da.isel(cycle=slice(spinup, None))


def plot_rmse_by_level(ds: xr.Dataset, config: RadianceConfig, path: Path) -> Path:
    """Analysis RMSE of T and q by pressure level, one line per experiment (mean over seeds and time).

    Seeds whose filter diverged are left out (their last cycles are far off); an
    experiment that diverged with every seed is named in the legend only.
    """
    fig = new_figure(figsize=(9, 4.5))
    axes = fig.subplots(1, 2, sharey=True)
    p = ds["pressure"].values
    for ax, var, unit in ((axes[0], "t", "K"), (axes[1], "q", "g/kg")):
        for e in ds["experiment"].values:
            kept = ds["diverged_cycle"].sel(experiment=e).values < 0
            if not kept.any():
                ax.plot([], [], label=f"{e} (diverged)", color=COLOURS.get(str(e)), ls=":")
                continue
            rmse = ds[f"rmse_{var}_a"].sel(experiment=e).isel(seed=np.flatnonzero(kept))
            rmse = _after_spinup(rmse, config.spinup_cycles).mean(("seed", "cycle"))
            ax.plot(rmse.values, p, label=str(e), color=COLOURS.get(str(e)))
        ax.set(xlabel=f"analysis RMSE of {var.upper()} ({unit})", yscale="log")
        ax.grid(alpha=0.3)
    axes[0].set(ylabel="pressure (hPa)", ylim=(p.max(), p.min()))
    axes[0].legend(fontsize=8)
    fig.suptitle(
        f"{config.name}: analysis RMSE after {config.spinup_cycles} spin-up cycles, {len(config.seeds)} seed(s)"
    )
    fig.tight_layout()
    return save_figure(fig, path)


def plot_rmse_time(ds: xr.Dataset, config: RadianceConfig, path: Path) -> Path:
    """Level-mean analysis RMSE of T against cycle (first seed), one line per experiment."""
    fig = new_figure(figsize=(8, 3.5))
    ax = fig.subplots()
    seed = ds["seed"].values[0]
    for e in ds["experiment"].values:
        rmse = ds["rmse_t_a"].sel(experiment=e, seed=seed).mean("level")
        ax.plot(ds["cycle"].values, rmse.values, label=str(e), color=COLOURS.get(str(e)), lw=1)
    ax.axvline(config.spinup_cycles, color="k", ls=":", lw=0.8)
    ax.set(xlabel="cycle (6 h)", ylabel="analysis RMSE of T (K)", title=f"seed {seed}")
    ax.legend(fontsize=8, ncol=3)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_departures(ds: xr.Dataset, config: RadianceConfig, path: Path) -> Path:
    """Per channel: O-B before and after bias correction and O-A, of the experiments that assimilate radiances."""
    channels = ds["channel"].values
    rows = [e for e in ds["experiment"].values if str(e) != "conv"] or list(ds["experiment"].values)
    fig = new_figure(figsize=(3.3 * len(channels), 2.4 * len(rows)))
    axes = fig.subplots(len(rows), len(channels), squeeze=False, sharex=True)
    bins = np.linspace(-4, 4, 81)
    for r, e in enumerate(rows):
        for c, ch in enumerate(channels):
            ax = axes[r, c]
            for key, label, style in (
                ("omb_raw", "O-B uncorrected", {"color": "tab:grey", "alpha": 0.5}),
                ("omb", "O-B used", {"color": "tab:blue", "histtype": "step", "lw": 1.5}),
                ("oma", "O-A", {"color": "tab:red", "histtype": "step", "lw": 1.5}),
            ):
                v = _after_spinup(ds[key].sel(experiment=e, channel=ch), config.spinup_cycles).values.ravel()
                v = v[np.isfinite(v)]
                if v.size:
                    ax.hist(v, bins=bins, density=True, label=f"{label} ({v.mean():+.2f})", **style)
            ax.set_title(f"{e}, channel {ch}", fontsize=9)
            ax.legend(fontsize=6)
            ax.tick_params(labelsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("K")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_weighting_functions(ds: xr.Dataset, path: Path) -> Path:
    """The channels' weighting functions (climatological columns, nadir) against pressure."""
    fig = new_figure(figsize=(4, 4.5))
    ax = fig.subplots()
    p = ds["pressure"].values
    for ch in ds["channel"].values:
        ax.plot(ds["weighting_function"].sel(channel=ch).values, p, label=f"channel {ch}")
    ax.set(
        xlabel="−dΓ/d ln p (Γ: transmittance to space)", ylabel="pressure (hPa)", yscale="log", ylim=(p.max(), p.min())
    )
    ax.set_title("AMSU-A weighting functions", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_radiance_run(ds: xr.Dataset, config: RadianceConfig, out: Path) -> dict[str, Path]:
    """All figures of a run into ``out``; returns ``name -> path``."""
    ds = ds.assign_coords(experiment=[str(e) for e in ds["experiment_name"].values])  # select by name
    return {
        "rmse_by_level": plot_rmse_by_level(ds, config, out / "rmse_by_level.png"),
        "rmse_time": plot_rmse_time(ds, config, out / "rmse_time.png"),
        "departures": plot_departures(ds, config, out / "departures.png"),
        "weighting_functions": plot_weighting_functions(ds, out / "weighting_functions.png"),
    }


__all__ = ["plot_radiance_run"]
