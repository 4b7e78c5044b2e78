"""Figures of nowcast verification: skill vs lead time, frame panels, animated GIF.

Built on `matplotlib.figure.Figure` with the Agg canvas: no pyplot, no global
backend or rc state. Each function returns the figure (or the GIF path) and
saves it when given a path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import xarray as xr
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Colormap, LogNorm
from matplotlib.figure import Figure
from PIL import Image

from dacast.verify._arrays import Array, as_float

RAIN_LEVELS = (0.1, 100.0)  # colour range of rain-rate maps [mm/h]


def _rain_cmap() -> Colormap:
    return colormaps["viridis"].with_extremes(bad="0.85", under="white")


def _numpy(x: Array) -> np.ndarray:
    """Rain rate for a log colour scale: values <= 0 go below the range (white), since LogNorm masks them (grey)."""
    a = as_float(x).cpu().numpy()
    return np.where(a <= 0, RAIN_LEVELS[0] / 2, a)


def _save(fig: Figure, path: str | Path | None, dpi: int = 110) -> Figure:
    canvas = FigureCanvasAgg(fig)
    if path is not None:
        fig.savefig(Path(path), dpi=dpi)
    else:
        canvas.draw()
    return fig


def plot_skill(
    results: Mapping[str, xr.Dataset],
    path: str | Path | None = None,
    *,
    thresholds: Sequence[float] | None = None,
    scale: float | None = None,
) -> Figure:
    """CSI (left) and FSS (right) vs lead time, one line per method, one row per threshold.

    Args:
        results: method name -> Dataset from `score_nowcast`.
        path: where to save the PNG (optional).
        thresholds: thresholds to show [mm/h]; default those of the first Dataset.
        scale: FSS window [km]; default the first scale of each Dataset.
    """
    if not results:
        raise ValueError("no results to plot")
    first = next(iter(results.values()))
    thrs = list(first["threshold"].values) if thresholds is None else list(thresholds)
    fig = Figure(figsize=(9, 3.0 * len(thrs)), layout="constrained")
    axes = fig.subplots(len(thrs), 2, squeeze=False, sharex=True)
    for row, thr in enumerate(thrs):
        for name, ds in results.items():
            lead = ds["lead_time"].values
            (line,) = axes[row, 0].plot(lead, ds["csi"].sel(threshold=thr).values, marker="o", ms=3, label=name)
            fss = ds["fss"].sel(threshold=thr)
            fss = fss.isel(scale=0) if scale is None else fss.sel(scale=scale)
            axes[row, 1].plot(lead, fss.values, marker="o", ms=3, color=line.get_color(), label=name)
        km = first["scale"].values[0] if scale is None else scale
        axes[row, 0].set_ylabel(f"CSI (> {thr:g} mm/h)")
        axes[row, 1].set_ylabel(f"FSS (>= {thr:g} mm/h, {km:g} km)")
        for ax in axes[row]:
            ax.set_ylim(0, 1)
            ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("lead time [min]")
    axes[0, 0].legend(fontsize="small")
    return _save(fig, path)


def plot_frames(
    observed: Array,
    forecasts: Mapping[str, Array],
    leads: Sequence[int],
    path: str | Path | None = None,
    *,
    lead_minutes: Sequence[float] | None = None,
) -> Figure:
    """Observed (top row) and forecast rain rate (one row per method) at chosen leads.

    Args:
        observed: observed rain rate, shape ``(lead, H, W)`` [mm/h]; NaN = missing (grey).
        forecasts: method name -> forecast rain rate, shape ``(lead, H, W)`` [mm/h].
        leads: 0-based lead indices to show (columns).
        path: where to save the PNG (optional).
        lead_minutes: lead time of each index [min] for the titles; default 5, 10, ...
    """
    rows = {"observed": _numpy(observed), **{k: _numpy(v) for k, v in forecasts.items()}}
    minutes = [5.0 * (i + 1) for i in range(len(rows["observed"]))] if lead_minutes is None else list(lead_minutes)
    fig = Figure(figsize=(3.0 * len(leads) + 1.0, 2.8 * len(rows)), layout="constrained")
    axes = fig.subplots(len(rows), len(leads), squeeze=False)
    norm = LogNorm(*RAIN_LEVELS)
    image = None
    for r, (name, data) in enumerate(rows.items()):
        for c, lead in enumerate(leads):
            ax = axes[r, c]
            image = ax.imshow(data[lead], cmap=_rain_cmap(), norm=norm, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"+{minutes[lead]:g} min")
            if c == 0:
                ax.set_ylabel(name)
    if image is not None:
        fig.colorbar(image, ax=axes, label="rain rate [mm/h]", shrink=0.8, extend="min")
    return _save(fig, path)


def save_nowcast_gif(
    forecast: Array,
    path: str | Path,
    *,
    observed: Array | None = None,
    lead_minutes: Sequence[float] | None = None,
    duration_ms: int = 400,
    dpi: int = 80,
) -> Path:
    """Animated GIF of a nowcast, optionally side by side with the observation.

    Args:
        forecast: forecast rain rate, shape ``(lead, H, W)`` [mm/h].
        path: output file (``.gif``).
        observed: observed rain rate at the same times, shape ``(lead, H, W)`` [mm/h].
        lead_minutes: lead time of each frame [min]; default 5, 10, ...
        duration_ms: display time of each frame [ms].
        dpi: resolution of the rendered frames.

    Returns:
        The path written.
    """
    fc = _numpy(forecast)
    ob = None if observed is None else _numpy(observed)
    minutes = [5.0 * (i + 1) for i in range(len(fc))] if lead_minutes is None else list(lead_minutes)
    norm = LogNorm(*RAIN_LEVELS)
    panels = 1 if ob is None else 2
    frames = []
    for i in range(len(fc)):
        fig = Figure(figsize=(4.0 * panels, 4.0), dpi=dpi, layout="constrained")
        canvas = FigureCanvasAgg(fig)
        axes = fig.subplots(1, panels, squeeze=False)[0]
        shown = [("forecast", fc[i])] if ob is None else [("observed", ob[i]), ("forecast", fc[i])]
        for ax, (name, data) in zip(axes, shown, strict=True):
            ax.imshow(data, cmap=_rain_cmap(), norm=norm, interpolation="nearest")
            ax.set_title(f"{name} +{minutes[i]:g} min")
            ax.set_xticks([])
            ax.set_yticks([])
        canvas.draw()
        frames.append(Image.fromarray(np.asarray(canvas.buffer_rgba())).convert("RGB").quantize(colors=255))
    out = Path(path)
    frames[0].save(out, save_all=True, append_images=frames[1:], duration=duration_ms, loop=0)
    return out
