"""The surrogate cycle's figures, made from ``surrogate_run.nc`` alone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xarray as xr

from dacast.workflow.figures import new_figure, save_figure
from dacast.workflow.surrogate.truth import N_LEADS


def best_fixed_inflation(rmse_by_factor: dict[str, float]) -> tuple[str, float] | None:
    """The factor with the lowest finite analysis RMSE and that RMSE; ``None`` if none is finite."""
    finite = {k: v for k, v in rmse_by_factor.items() if np.isfinite(v)}
    if not finite:
        return None
    k = min(finite, key=finite.__getitem__)
    return k, finite[k]


def plot_surrogate(ds: xr.Dataset, out_dir: str | Path, prefix: str = "surrogate") -> list[Path]:
    """Three PNGs: analysis RMSE per iteration, 1-4 step errors over the attractor, free-forecast skill."""
    out = Path(out_dir)
    paths = []
    it = ds["iteration"].values
    # 1. analysis RMSE per iteration
    fig = new_figure(figsize=(6, 3.5))
    ax = fig.subplots()
    ax.plot(it[1:], ds["rmse_analysis"].values[1:], "o-", label="DA with surrogate n-1")
    ax.axhline(float(ds["rmse_analysis"].values[0]), color="tab:red", ls="--", label="DA, imperfect model")
    ax.axhline(float(ds.attrs["rmse_analysis_perfect"]), color="tab:green", ls=":", label="DA, perfect model")
    pick = best_fixed_inflation(json.loads(ds.attrs.get("rmse_analysis_fixed_inflation", "{}")).get("imperfect", {}))
    if pick is not None:
        ax.axhline(
            pick[1], color="tab:red", ls="-.", lw=0.8, label=f"DA, imperfect model, best fixed inflation ({pick[0]})"
        )
    ax.set(xlabel="iteration", ylabel="analysis RMSE", title=ds.attrs["experiment"])
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(save_figure(fig, out / f"{prefix}_rmse_per_iteration.png"))
    # 2. 1-4 step error over the attractor (x0-x2 plane)
    chosen = [0, 1, int(it[-1])] if len(it) > 2 else list(it)
    err = ds["forecast_error"].values
    xy = ds["start_state"].values
    ycol = 2 if xy.shape[1] > 2 else 1
    vmax = float(np.nanpercentile(err[chosen], 98))
    fig = new_figure(figsize=(2.6 * N_LEADS, 2.4 * len(chosen)), constrained_layout=True)
    axes = fig.subplots(len(chosen), N_LEADS, squeeze=False)
    for row, i in enumerate(chosen):
        for lead in range(N_LEADS):
            a = axes[row, lead]
            sc = a.scatter(xy[:, 0], xy[:, ycol], c=err[i, :, lead], s=6, cmap="viridis", vmin=0, vmax=vmax)
            a.set_title(f"{ds['model_name'].values[i]}, +{lead + 1}", fontsize=8)
            a.tick_params(labelsize=6)
    fig.colorbar(sc, ax=axes, shrink=0.8, label="forecast error")
    paths.append(save_figure(fig, out / f"{prefix}_forecast_error_attractor.png"))
    # 3. free-forecast normalised RMSE and valid time
    fig = new_figure(figsize=(6, 3.5))
    ax = fig.subplots()
    t = ds["free_lead_time"].values
    for i in chosen:
        name = str(ds["model_name"].values[i])
        ax.plot(t, ds["nrmse_free"].values[i], label=f"{name} (valid {float(ds['valid_time'].values[i]):.2f})")
    ax.axhline(0.5, color="k", lw=0.8, ls="--")
    ax.set(xlabel="lead time (model time units)", ylabel="RMSE / climatological std", ylim=(0, 1.5))
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(save_figure(fig, out / f"{prefix}_valid_time.png"))
    return paths


__all__ = ["best_fixed_inflation", "plot_surrogate"]
