"""Comparison figures of a learned-regional-model run (Agg canvas, no pyplot state)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import xarray as xr
from matplotlib.figure import Figure

from dacast.obs.radar import reflectivity_dbz
from dacast.workflow.figures import save_figure

if TYPE_CHECKING:
    from dacast.workflow.bda_surrogate.config import BDASurrogateConfig

_COLOURS = {"perfect": "tab:blue", "imperfect": "tab:red", "surrogate": "tab:green"}


def plot_rmse(ds: xr.Dataset, path: Path) -> Path:
    """Analysis RMSE (solid) and free-run RMSE (dashed) of h and r against cycle, per experiment."""
    fig = Figure(figsize=(10, 4), layout="constrained")
    axes = fig.subplots(1, 2)
    minutes = ds["cycle"].values * 0.5
    for ax, var, unit in zip(axes, ("h", "r"), ("m", "1"), strict=True):
        for i, name in enumerate(ds["experiment_name"].values):
            colour = _COLOURS.get(str(name), "0.3")
            sel = ds.isel(experiment=i)
            ax.plot(minutes, sel[f"rmse_analysis_{var}"], color=colour, lw=1.1, label=f"{name}: analysis")
            ax.plot(minutes, sel[f"rmse_free_run_{var}"], color=colour, lw=0.8, ls="--", label=f"{name}: free run")
        ax.set_title(f"{var} [{unit}]")
        ax.set_xlabel("time [min] (cycles of 30 s)")
        ax.set_ylim(bottom=0)
    axes[0].set_ylabel("RMSE against the truth")
    axes[1].legend(fontsize="small")
    return save_figure(fig, path)


def plot_threat(ds: xr.Dataset, path: Path) -> Path:
    """Threat score at 30 dBZ of the 30-min forecasts from the analysis mean, per experiment, and persistence."""
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    lead = ds["lead"].values
    for i, name in enumerate(ds["experiment_name"].values):
        sel = ds.isel(experiment=i)
        ax.plot(lead, sel["threat_score_forecast"], "o-", ms=3, color=_COLOURS.get(str(name), "0.3"), label=str(name))
    ax.plot(lead, ds["threat_score_persistence"].isel(experiment=0), "^-", ms=3, color="0.3", label="persistence")
    ax.set_xlabel("lead time [min]")
    ax.set_ylabel("threat score (30 dBZ)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return save_figure(fig, path)


def plot_fields(out: Path, names: list[str], config: BDASurrogateConfig, path: Path) -> Path | None:
    """Reflectivity of the truth and of each experiment's analysis mean at the last cycle, side by side."""
    panels: list[tuple[str, np.ndarray]] = []
    radar = config.bda.radar
    for name in names:
        nc = out / name / "cycles.nc"
        if not nc.is_file():
            continue
        with xr.open_dataset(nc) as ds:
            if not panels:
                panels.append(("truth", ds["truth_r"].isel(cycle=-1).values))
            panels.append((f"{name} analysis", ds["analysis_mean_r"].isel(cycle=-1).values))
    if not panels:
        return None
    fig = Figure(figsize=(3.2 * len(panels), 3.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    km = config.bda.grid * config.bda.dx_km
    for ax, (title, rain) in zip(axes, panels, strict=True):
        dbz = reflectivity_dbz(
            torch.from_numpy(rain).double(), rain_to_rhoqr=radar.rain_to_rhoqr, floor_dbz=radar.floor_dbz
        )
        im = ax.imshow(dbz.numpy(), origin="lower", extent=(0, km, 0, km), vmin=radar.floor_dbz, vmax=60, cmap="turbo")
        ax.set_title(title)
        ax.set_xlabel("x [km]")
    axes[0].set_ylabel("y [km]")
    fig.colorbar(im, ax=list(axes), label="reflectivity [dBZ]", shrink=0.8)
    return save_figure(fig, path)


def plot_stability(stability: dict, path: Path, minutes_per_cycle: float) -> Path:
    """Free runs: max |h - H0| and domain-mean rain against time, surrogate beside the physics."""
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    axes = fig.subplots(1, 2)
    for name, colour in (("physics", "tab:blue"), ("surrogate", "tab:green")):
        s = np.asarray(stability["series"][name], dtype=float).reshape(-1, 4)
        t = np.arange(1, s.shape[0] + 1) * minutes_per_cycle
        axes[0].plot(t, s[:, 0], color=colour, label=name)
        axes[1].plot(t, s[:, 2], color=colour, label=name)
    axes[0].set_ylabel("max |h - H0| [m]")
    axes[1].set_ylabel("domain-mean rain")
    for ax in axes:
        ax.set_xlabel("free-run time [min]")
    axes[0].legend(fontsize="small")
    fig.suptitle(f"free run of {stability['cycles']} cycles, {stability['members']} members")
    return save_figure(fig, path)


def make_plots(ds: xr.Dataset, out: Path, stability: dict, config: BDASurrogateConfig) -> dict[str, Path]:
    """All figures into ``out``; name -> path."""
    paths = {"rmse_plot": plot_rmse(ds, out / "rmse_by_cycle.png")}
    if "lead" in ds.dims and "threat_score_forecast" in ds:
        paths["threat_plot"] = plot_threat(ds, out / "threat_score.png")
    fields = plot_fields(out, [str(n) for n in ds["experiment_name"].values], config, out / "fields.png")
    if fields is not None:
        paths["fields_plot"] = fields
    if stability.get("series", {}).get("physics"):
        paths["stability_plot"] = plot_stability(stability, out / "stability.png", config.bda.cycle_seconds / 60.0)
    return paths


__all__ = ["make_plots", "plot_fields", "plot_rmse", "plot_stability", "plot_threat"]
