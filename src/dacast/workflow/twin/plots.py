"""PNG figures made from a twin-experiment Dataset (or the ``results.nc`` it was saved to).

Figures are built with `matplotlib.figure.Figure` and rendered by the Agg
backend directly: no pyplot, no global backend or rc state is touched.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from dacast.workflow.figures import save_figure


def _time_label(ds: xr.Dataset) -> str:
    """Axis label of the time coordinate: CF writes the non-dimensional model time as units "1"."""
    units = str(ds["time"].attrs.get("units", ""))
    return f"time [{'model time units' if units == '1' else units}]"


def _title(ds: xr.Dataset) -> str:
    label = ds.attrs.get("preset") or f"{ds.attrs['model']} / {ds.attrs['filter']}"
    return f"{label}, N={ds.attrs['members']}"


def plot_rmse(ds: xr.Dataset, path: str | Path) -> Path:
    """RMSE and spread of forecast and analysis vs time (log y axis), burn-in shaded."""
    fig = Figure(figsize=(8, 4), layout="constrained")
    ax = fig.add_subplot()
    t = ds["time"].values
    for name, style in (
        ("rmse_forecast", dict(color="tab:orange", lw=0.8, alpha=0.8)),
        ("rmse_analysis", dict(color="tab:blue", lw=0.9)),
        ("spread_forecast", dict(color="tab:orange", lw=0.8, ls="--", alpha=0.8)),
        ("spread_analysis", dict(color="tab:blue", lw=0.9, ls="--")),
    ):
        values = ds[name].values
        ok = np.isfinite(values) & (values > 0)
        ax.plot(t[ok], values[ok], label=name.replace("_", " "), **style)
    burn_in = float(ds.attrs["burn_in"])
    if burn_in > 0:
        ax.axvspan(t[0] if t.size else 0.0, burn_in, color="0.9", label="burn-in")
    if "expected_rmse_analysis" in ds.attrs:
        ax.axhline(float(ds.attrs["expected_rmse_analysis"]), color="k", lw=0.8, ls=":", label="expected rmse.a")
    if bool(int(ds.attrs["diverged"])):
        ax.set_title(_title(ds) + f" (diverged at cycle {int(ds.attrs['diverged_cycle'])})", color="tab:red")
    else:
        ax.set_title(_title(ds))
    if any(line.get_xydata().size for line in ax.get_lines()):
        ax.set_yscale("log")
    ax.set_xlabel(_time_label(ds))
    ax.set_ylabel("RMSE / spread")
    ax.legend(loc="upper right", fontsize="small", ncols=2)
    return save_figure(fig, Path(path))


def plot_hovmoller(ds: xr.Dataset, path: str | Path) -> Path:
    """Hovmöller diagrams (state index vs time) of the truth and of the analysis error."""
    fig = Figure(figsize=(10, 4.5), layout="constrained")
    ax_truth, ax_err = fig.subplots(1, 2, sharey=True)
    t = ds["time"].values
    x = ds["state"].values
    truth = ds["truth"].values
    err = ds["analysis_mean"].values - truth
    half = 0.5 * float(ds.attrs["dt"]) * int(ds.attrs["obs_every"])
    extent = (float(x[0]) - 0.5, float(x[-1]) + 0.5, float(t[0]) - half, float(t[-1]) + half)
    im = ax_truth.imshow(truth, aspect="auto", origin="lower", extent=extent, cmap="viridis", interpolation="nearest")
    fig.colorbar(im, ax=ax_truth, label=f"state [{ds['truth'].attrs.get('units', '')}]")
    finite = np.abs(err[np.isfinite(err)])
    lim = float(np.percentile(finite, 99)) if finite.size else 1.0
    im = ax_err.imshow(
        err, aspect="auto", origin="lower", extent=extent, cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest"
    )
    fig.colorbar(im, ax=ax_err, label="analysis mean - truth")
    ax_truth.set_title("truth")
    ax_err.set_title("analysis error")
    for ax in (ax_truth, ax_err):
        ax.set_xlabel("state index")
    ax_truth.set_ylabel(_time_label(ds))
    fig.suptitle(_title(ds))
    return save_figure(fig, Path(path))


def plot_attractor(ds: xr.Dataset, path: str | Path) -> Path:
    """Truth and analysis mean at the analysis times in the (x0, x2) plane (Lorenz-63 and the coupled model)."""
    fig = Figure(figsize=(5.5, 5), layout="constrained")
    ax = fig.add_subplot()
    truth = ds["truth"].values
    ana = ds["analysis_mean"].values
    # Only analysis times are stored (often far apart): points, not lines.
    ax.plot(truth[:, 0], truth[:, 2], "o", color="k", ms=2.5, mfc="none", mew=0.6, label="truth")
    ok = np.isfinite(ana).all(1)
    ax.plot(ana[ok, 0], ana[ok, 2], "x", color="tab:blue", ms=2.5, mew=0.6, label="analysis mean")
    ax.set_xlabel("x0")
    ax.set_ylabel("x2")
    ax.set_title(_title(ds))
    ax.legend(loc="upper right", fontsize="small")
    return save_figure(fig, Path(path))


def make_plots(ds: xr.Dataset, out_dir: str | Path) -> tuple[Path, ...]:
    """Every figure that suits the run, written as PNG into ``out_dir``.

    Always ``rmse.png``; ``hovmoller.png`` for Lorenz-96, ``attractor.png``
    for Lorenz-63 and the coupled Lorenz-63.
    """
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    paths = [plot_rmse(ds, directory / "rmse.png")]
    if ds.attrs["model"] == "lorenz96":
        paths.append(plot_hovmoller(ds, directory / "hovmoller.png"))
    else:
        paths.append(plot_attractor(ds, directory / "attractor.png"))
    return tuple(paths)


__all__ = ["make_plots", "plot_attractor", "plot_hovmoller", "plot_rmse"]
