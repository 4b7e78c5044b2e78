"""Results of a surrogate <-> DA run as data (netCDF, JSON) and figures (PNG).

Figures are drawn from the `xarray.Dataset` that `surrogate_dataset` builds,
so they can be regenerated from ``surrogate_run.nc``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

import dacast
from dacast.workflow.surrogate.config import LYAPUNOV_TIME_L96, surrogate_config_to_dict
from dacast.workflow.surrogate.truth import N_LEADS

if TYPE_CHECKING:
    from dacast.workflow.surrogate.run import SurrogateRun


def surrogate_dataset(run: SurrogateRun) -> xr.Dataset:
    """All per-iteration results of ``run`` as one dataset.

    Dimensions: ``iteration`` (0 = imperfect model, n >= 1 = surrogate n - 1),
    ``time`` (analysis times), ``variable`` (modelled variables), ``lead``
    (1-4 analysis intervals), ``free_lead`` and ``start`` (forecast start times).
    """
    cfg, out = run.config, run.out_dir
    n_it = len(run.records)
    files = [np.load(out / f"iteration_{i:02d}.npz") for i in range(n_it)]
    recs = run.records
    step = cfg.step
    ds = xr.Dataset(
        data_vars={
            "analysis_mean": (("iteration", "time", "variable"), np.stack([f["analysis_mean"] for f in files])),
            "analysis_spread": (("iteration", "time", "variable"), np.stack([f["analysis_spread"] for f in files])),
            "rmse_analysis": ("iteration", np.array([r["rmse_analysis"] for r in recs]), {"units": "1"}),
            "forecast_rmse": (("iteration", "lead"), np.array([r["forecast_rmse_steps_1_4"] for r in recs])),
            "forecast_error": (("iteration", "start", "lead"), np.stack([f["forecast_error"] for f in files])),
            "start_state": (("start", "variable"), files[0]["start_state"]),
            "nrmse_free": (("iteration", "free_lead"), np.array([r["nrmse_free"] for r in recs])),
            "valid_time": ("iteration", np.array([r["valid_time"] for r in recs]), {"units": "model time units"}),
            "train_loss": (
                "iteration",
                np.array([np.nan if r["train_loss"] is None else r["train_loss"] for r in recs]),
            ),
            "val_loss": ("iteration", np.array([np.nan if r["val_loss"] is None else r["val_loss"] for r in recs])),
            "inflation": (
                "iteration",
                np.array([r.get("inflation", np.nan) for r in recs], dtype=float),
                {"long_name": "mean covariance inflation factor of the DA run", "units": "1"},
            ),
        },
        coords={
            "iteration": np.arange(n_it),
            "model_name": ("iteration", [r["model"] for r in recs]),
            "time": np.arange(1, cfg.cycles + 1) * step,
            "variable": np.arange(cfg.n_var),
            "lead": np.arange(1, N_LEADS + 1),
            "free_lead_time": ("free_lead", np.arange(1, cfg.free_leads + 1) * step),
        },
        attrs={
            "title": "dacast surrogate <-> DA cycle",
            "experiment": cfg.name,
            "rmse_analysis_perfect": run.perfect_rmse,
            "stopped": run.stopped,
            "wall_time_s": run.wall_time_s,
            "settings": json.dumps(surrogate_config_to_dict(cfg)),
            "rmse_analysis_fixed_inflation": json.dumps(run.tuning or {}),
            "dacast_version": dacast.__version__,
        },
    )
    return ds


def _losses(records: list[dict[str, Any]], key: str) -> np.ndarray:
    return np.array([np.nan if r[key] is None else r[key] for r in records], dtype=float)


def best_fixed_inflation(rmse_by_factor: dict[str, float]) -> tuple[str, float] | None:
    """The factor with the lowest finite analysis RMSE and that RMSE; ``None`` if none is finite."""
    finite = {k: v for k, v in rmse_by_factor.items() if np.isfinite(v)}
    if not finite:
        return None
    k = min(finite, key=finite.__getitem__)
    return k, finite[k]


def summarise_surrogate(run: SurrogateRun) -> dict[str, Any]:
    """The ``summary.json`` content."""
    recs = run.records
    final = recs[-1]
    valid = {r["model"]: r["valid_time"] for r in recs}
    out: dict[str, Any] = {
        "experiment": run.config.name,
        "rmse_analysis_per_iteration": [r["rmse_analysis"] for r in recs],
        "rmse_analysis_imperfect": recs[0]["rmse_analysis"],
        "rmse_analysis_perfect": run.perfect_rmse,
        "rmse_analysis_final": final["rmse_analysis"],
        "rmse_analysis_reduction": 1.0 - final["rmse_analysis"] / recs[0]["rmse_analysis"],
        "inflation_per_iteration": [r.get("inflation") for r in recs],
        "final_model": final["model"],
        "forecast_rmse_steps_1_4": {r["model"]: r["forecast_rmse_steps_1_4"] for r in recs},
        "valid_time": valid,
        "train_loss_per_iteration": [r["train_loss"] for r in recs],
        "iterations_completed": len(recs) - 1,
        "stopped": run.stopped,
        "wall_time_s": run.wall_time_s,
    }
    if run.tuning:
        picks = {name: best_fixed_inflation(by) for name, by in run.tuning.items()}
        best = {name: pick[1] for name, pick in picks.items() if pick is not None}
        out["rmse_analysis_fixed_inflation"] = run.tuning
        out["rmse_analysis_best_fixed_inflation"] = best
        if final["model"] in best and "imperfect" in best:
            out["rmse_analysis_reduction_best_fixed_inflation"] = 1.0 - best[final["model"]] / best["imperfect"]
    if run.config.truth.name == "lorenz96":
        out["valid_time_lyapunov"] = {k: v / LYAPUNOV_TIME_L96 for k, v in valid.items()}
    return out


def plot_surrogate(ds: xr.Dataset, out_dir: str | Path, prefix: str = "surrogate") -> list[Path]:
    """Three PNGs: analysis RMSE per iteration, 1-4 step errors over the attractor, free-forecast skill."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    paths = []
    it = ds["iteration"].values
    # 1. analysis RMSE per iteration
    fig, ax = plt.subplots(figsize=(6, 3.5))
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
    paths.append(out / f"{prefix}_rmse_per_iteration.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    # 2. 1-4 step error over the attractor (x0-x2 plane)
    chosen = [0, 1, int(it[-1])] if len(it) > 2 else list(it)
    err = ds["forecast_error"].values
    xy = ds["start_state"].values
    ycol = 2 if xy.shape[1] > 2 else 1
    vmax = float(np.nanpercentile(err[chosen], 98))
    fig, axes = plt.subplots(
        len(chosen), N_LEADS, figsize=(2.6 * N_LEADS, 2.4 * len(chosen)), squeeze=False, constrained_layout=True
    )
    for row, i in enumerate(chosen):
        for lead in range(N_LEADS):
            a = axes[row, lead]
            sc = a.scatter(xy[:, 0], xy[:, ycol], c=err[i, :, lead], s=6, cmap="viridis", vmin=0, vmax=vmax)
            a.set_title(f"{ds['model_name'].values[i]}, +{lead + 1}", fontsize=8)
            a.tick_params(labelsize=6)
    fig.colorbar(sc, ax=axes, shrink=0.8, label="forecast error")
    paths.append(out / f"{prefix}_forecast_error_attractor.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    # 3. free-forecast normalised RMSE and valid time
    fig, ax = plt.subplots(figsize=(6, 3.5))
    t = ds["free_lead_time"].values
    for i in chosen:
        name = str(ds["model_name"].values[i])
        ax.plot(t, ds["nrmse_free"].values[i], label=f"{name} (valid {float(ds['valid_time'].values[i]):.2f})")
    ax.axhline(0.5, color="k", lw=0.8, ls="--")
    ax.set(xlabel="lead time (model time units)", ylabel="RMSE / climatological std", ylim=(0, 1.5))
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(out / f"{prefix}_valid_time.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths


def write_surrogate_outputs(run: SurrogateRun, *, plots: bool = True) -> dict[str, Path]:
    """Write ``surrogate_run.nc``, ``summary.json`` and (optionally) the PNGs into ``run.out_dir``."""
    out = run.out_dir
    ds = surrogate_dataset(run)
    paths = {"dataset": out / "surrogate_run.nc", "summary": out / "summary.json"}
    ds.to_netcdf(paths["dataset"])
    paths["summary"].write_text(json.dumps(summarise_surrogate(run), indent=2) + "\n", encoding="utf-8")
    if plots:
        for p in plot_surrogate(ds, out):
            paths[p.stem] = p
    return paths


__all__ = [
    "best_fixed_inflation",
    "plot_surrogate",
    "summarise_surrogate",
    "surrogate_dataset",
    "write_surrogate_outputs",
]
