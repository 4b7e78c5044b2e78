"""Figures of every application: made on Matplotlib's object API with the Agg canvas (no pyplot state)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

#: Resolution of every PNG the applications write.
DPI = 110


def new_figure(**kwargs: Any) -> Figure:
    """A `matplotlib.figure.Figure` (``figsize``, ``constrained_layout``, ...) with an Agg canvas attached."""
    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | Path, dpi: int = DPI) -> Path:
    """Write ``fig`` as a PNG to ``path`` and return the path."""
    if fig.canvas is None or not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    fig.savefig(path, dpi=dpi)
    return Path(path)


__all__ = ["DPI", "new_figure", "save_figure"]
