"""One call from a configuration to files on disk: run, write, plot."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xarray as xr

from dacast.workflow.twin.config import TwinConfig
from dacast.workflow.twin.output import OutputPaths, attach_preset, write_results
from dacast.workflow.twin.plots import make_plots
from dacast.workflow.twin.presets import Preset
from dacast.workflow.twin.run import run_twin


@dataclass(frozen=True, kw_only=True)
class ExperimentResult:
    """What `run_experiment` produced.

    Attributes:
        dataset: the results (see `run_twin`), with preset attributes when given.
        summary: the content of ``summary.json``.
        paths: the files written.
        total_time_s: wall time including writing and plotting (seconds).
    """

    dataset: xr.Dataset
    summary: dict[str, Any]
    paths: OutputPaths
    total_time_s: float


def run_experiment(
    config: TwinConfig,
    out_dir: str | Path,
    *,
    preset: Preset | None = None,
    progress: bool = True,
    plots: bool = True,
) -> ExperimentResult:
    """Run ``config``, then write ``results.nc``, ``summary.json`` and the PNG plots into ``out_dir``.

    Args:
        config: the experiment.
        out_dir: output directory (created if needed; existing files are replaced).
        preset: the preset the run came from; adds its expected RMSE and source.
        progress: show a progress bar over the cycles.
        plots: write the PNG figures.
    """
    start = time.perf_counter()
    ds = attach_preset(run_twin(config, progress=progress), preset)
    results, summary_path, summary = write_results(ds, out_dir)
    figures = make_plots(ds, out_dir) if plots else ()
    paths = OutputPaths(directory=Path(out_dir), results=results, summary=summary_path, plots=figures)
    return ExperimentResult(dataset=ds, summary=summary, paths=paths, total_time_s=time.perf_counter() - start)


__all__ = ["ExperimentResult", "run_experiment"]
