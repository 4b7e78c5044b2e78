"""PNG figures of a Big Data Assimilation run (Agg canvas, no pyplot state)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import xarray as xr
from matplotlib.figure import Figure

from dacast.obs.radar import reflectivity_dbz
from dacast.workflow.bda.forecast import VARS
from dacast.workflow.figures import save_figure

_UNITS = {"u": "m/s", "v": "m/s", "h": "m", "r": "1"}


def plot_bda_rmse(ds: xr.Dataset, path: str | Path) -> Path:
    """Analysis, forecast and free-run RMSE with analysis spread per variable, against cycle."""
    fig = Figure(figsize=(10, 6), layout="constrained")
    axes = fig.subplots(2, 2, sharex=True).ravel()
    minutes = ds["cycle"].values * 0.5
    for ax, var in zip(axes, VARS, strict=True):
        ax.plot(minutes, ds[f"rmse_free_run_{var}"], color="0.4", lw=1.0, label="free run (no DA)")
        ax.plot(minutes, ds[f"rmse_forecast_{var}"], color="tab:orange", lw=0.9, label="forecast (prior)")
        ax.plot(minutes, ds[f"rmse_analysis_{var}"], color="tab:blue", lw=1.1, label="analysis")
        ax.plot(minutes, ds[f"spread_analysis_{var}"], color="tab:blue", lw=0.8, ls="--", label="analysis spread")
        out = ds["outage"].values.astype(bool)
        for m in minutes[out]:
            ax.axvspan(m - 0.25, m + 0.25, color="tab:red", alpha=0.15, lw=0)
        ax.set_title(f"{var} [{_UNITS[var]}]")
        ax.set_ylim(bottom=0)
    for ax in axes[2:]:
        ax.set_xlabel("time [min] (cycles of 30 s)")
    axes[0].legend(fontsize="small")
    fig.suptitle(f"RMSE against the truth, {int(ds.attrs['members'])} members")
    return save_figure(fig, Path(path))


def plot_threat_score(ds: xr.Dataset, path: str | Path) -> Path:
    """Threat score at 30 dBZ against lead time: forecast from the analysis, ensemble probability, persistence."""
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    lead = ds["lead"].values
    ax.plot(lead, ds["threat_score_forecast"], "o-", ms=3, color="tab:blue", label="forecast from analysis mean")
    ax.plot(lead, ds["threat_score_ensemble_prob"], "s-", ms=3, color="tab:green", label="ensemble P(>30 dBZ) >= 0.5")
    ax.plot(lead, ds["threat_score_persistence"], "^-", ms=3, color="0.3", label="persistence (observed)")
    ax.set_xlabel("lead time [min]")
    ax.set_ylabel("threat score (30 dBZ)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    ax.set_title(f"{int(ds.attrs['members'])}-member analyses: 30-min forecasts")
    return save_figure(fig, Path(path))


def plot_probability_maps(forecast: dict, path: str | Path, dx_km: float) -> Path:
    """P(reflectivity > 30 dBZ) from the member forecasts, truth's 30-dBZ contour on top, at 0/10/20/30 min."""
    prob = forecast["probability"].numpy()
    truth = forecast["truth_dbz"].numpy()
    leads = forecast["map_leads"]
    n = len(leads)
    fig = Figure(figsize=(3.2 * n + 0.8, 3.4), layout="constrained")
    axes = fig.subplots(1, n, squeeze=False)[0]
    extent = (0, prob.shape[-1] * dx_km, 0, prob.shape[-2] * dx_km)
    image = None
    for ax, p, t, lead in zip(axes, prob, truth, leads, strict=True):
        image = ax.imshow(p, origin="lower", extent=extent, vmin=0, vmax=1, cmap="Blues")
        yy, xx = np.meshgrid(
            (np.arange(t.shape[0]) + 0.5) * dx_km, (np.arange(t.shape[1]) + 0.5) * dx_km, indexing="ij"
        )
        if (t > 30).any() and (t <= 30).any():
            ax.contour(xx, yy, t, levels=[30.0], colors="tab:red", linewidths=0.8)
        ax.set_title(f"+{lead:g} min")
        ax.set_xlabel("x [km]")
    axes[0].set_ylabel("y [km]")
    if image is not None:
        fig.colorbar(image, ax=axes.tolist(), shrink=0.8, label="P(> 30 dBZ)")
    fig.suptitle(f"ensemble probability of > 30 dBZ (red: truth 30 dBZ), forecast from cycle {forecast['cycle']}")
    return save_figure(fig, Path(path))


def plot_fields(ds: xr.Dataset, path: str | Path) -> Path:
    """Truth and analysis-mean reflectivity and height at the last cycle (``truth_r``, ``analysis_mean_h``, ...).

    The analysis-mean reflectivity is that of the mean rain field (outside the
    60-km radar range it is the prior mean's).
    """
    last = ds.isel(cycle=-1)
    fig = Figure(figsize=(9, 7.5), layout="constrained")
    axes = fig.subplots(2, 2)
    dx = float(ds["x"].values[1] - ds["x"].values[0]) if ds.sizes["x"] > 1 else 1.0
    extent = (0, ds.sizes["x"] * dx, 0, ds.sizes["y"] * dx)
    for col, name in enumerate(("truth", "analysis_mean")):
        dbz = reflectivity_dbz(torch.as_tensor(last[f"{name}_r"].values)).numpy()
        im = axes[0, col].imshow(dbz, origin="lower", extent=extent, vmin=0, vmax=60, cmap="turbo")
        axes[0, col].set_title(f"{name.replace('_', ' ')}: reflectivity [dBZ]")
        h = last[f"{name}_h"].values
        im2 = axes[1, col].imshow(h, origin="lower", extent=extent, cmap="viridis")
        axes[1, col].set_title(f"{name.replace('_', ' ')}: h [m]")
        axes[1, col].set_xlabel("x [km]")
    for ax in axes[:, 0]:
        ax.set_ylabel("y [km]")
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8)
    fig.colorbar(im2, ax=axes[1].tolist(), shrink=0.8)
    fig.suptitle(f"cycle {int(last['cycle'])}")
    return save_figure(fig, Path(path))


def make_bda_plots(ds: xr.Dataset, forecasts: list[dict], out_dir: str | Path) -> tuple[Path, ...]:
    """Every figure for ``ds`` in ``out_dir``; returns their paths."""
    out = Path(out_dir)
    paths = [plot_bda_rmse(ds, out / "rmse.png")]
    if "truth_r" in ds:
        paths.append(plot_fields(ds, out / "fields.png"))
    if "lead" in ds.coords:
        paths.append(plot_threat_score(ds, out / "threat_score.png"))
    if forecasts:
        dx_km = float(ds["x"].values[1] - ds["x"].values[0]) if ds.sizes["x"] > 1 else 0.5
        paths.append(plot_probability_maps(forecasts[-1], out / "probability_30dbz.png", dx_km))
    return tuple(paths)
