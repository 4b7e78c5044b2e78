"""Run the latent diffusion filter against the gridded LETKF on the radar twin: one filter, both filters per seed.

State on disk (``out_dir``), so an interrupted run resumes where it stopped:

* ``state.json``: the settings (a resumed run must have the same ones);
* ``latent-filter.pt`` and ``.json``: the filter, trained (or copied from ``filter_file``) once; the
  training samples (gridded-LETKF forecasts and truths, hundreds of MB) are not kept;
* ``results/{letkf|latent}_seedS.json``: the scores of each finished run, written atomically.

Both filters of a seed cycle over the same truth, radar volumes and initial ensemble (a
function of the seed), and the latent filter's samples are a function of the seed too, so a
resumed run equals an uninterrupted one. A filter that diverges or whose ensemble collapses
is a result (its cycle and reason are kept), not an error. At the end `run_latent` writes
``latent_run.nc``, ``summary.json`` and ``rain_rmse_time.png`` (`dacast.workflow.diffusion.radar_output`).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dacast.ml.diffusion_filter import PriorMismatch
from dacast.ml.latent_filter import LatentDiffusionAnalyser, LatentFilterModel, load_latent_filter, save_latent_filter
from dacast.workflow.diffusion.radar import (
    TwinSamples,
    TwinScores,
    build_latent_filter,
    collect_samples,
    model_dict,
    score_run,
)
from dacast.workflow.diffusion.radar_config import LATENT_FILTERS, RadarDiffusionConfig, radar_config_to_dict
from dacast.workflow.diffusion.radar_output import FILTER_FILE, LABELS, FilterRun, Results, write_latent_outputs
from dacast.workflow.files import load_checkpoint, run_folder, save_checkpoint, write_json, write_text
from dacast.workflow.runtime import Say, cpu_threads, quiet
from dacast.workflow.runtime import progress as progress_bar
from dacast.workflow.schema import ConfigError

#: The per-cycle scores of `TwinScores` kept in a results file, ``(cycles,)`` each.
PER_CYCLE = ("rain_rmse", "rain_spread", "h_rmse", "ts30")


@dataclass(frozen=True)
class LatentRun:
    """What a finished run produced.

    Attributes:
        config: the comparison.
        out_dir: where the files are.
        results: ``(filter, seed) -> FilterRun``.
        training: the filter's training record (``autoencoder``, ``prior``, ``data_seconds``, ...).
        rows: one row per filter of the table (`dacast.workflow.diffusion.radar_output.filter_rows`).
        wall_time_s: seconds of this session.
        paths: the outputs written (``dataset``, ``summary``, ``rain_rmse_time``).
        summary: the contents of ``summary.json``.
    """

    config: RadarDiffusionConfig
    out_dir: Path
    results: Results
    training: dict[str, Any]
    rows: list[dict[str, Any]]
    wall_time_s: float
    paths: dict[str, Path] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


def read_latent_filter(path: Path, config: RadarDiffusionConfig) -> tuple[LatentFilterModel, dict[str, Any]]:
    """The filter in ``path`` and the training record of its card.

    Raises:
        PriorMismatch: the file is not a latent filter, or one for another grid or model (one line).
    """
    filt = load_latent_filter(path, grid=(config.bda.grid, config.bda.grid), model=model_dict(config.bda))
    record = json.loads(path.with_suffix(".json").read_text(encoding="utf-8")).get("record")
    return filt, record if isinstance(record, dict) else {}


def training_samples(
    config: RadarDiffusionConfig, *, cache: Path | None = None, progress: bool = False, say: Say = quiet
) -> tuple[TwinSamples, float]:
    """The samples of the gridded-LETKF training runs and the seconds they took (`collect_samples`).

    With ``cache`` they are read from that file when it exists, else written there (a benchmark's
    habit; the application keeps none).
    """
    if cache is not None and cache.is_file():
        say(f"training samples: {cache}")
        data = load_checkpoint(cache)
        return TwinSamples(truth=data["truth"], mean=data["mean"], members=data["members"]), float(data["seconds"])
    start = time.perf_counter()
    samples = collect_samples(config.training_bda(), config.training_seeds(), keep_members=config.keep_members,
                              progress=progress)  # fmt: skip
    seconds = time.perf_counter() - start
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint({"truth": samples.truth, "mean": samples.mean, "members": samples.members,
                         "seconds": seconds}, cache)  # fmt: skip
    return samples, seconds


def latent_filter(
    config: RadarDiffusionConfig,
    *,
    read: Sequence[Path] = (),
    write: Path | None = None,
    samples_cache: Path | None = None,
    progress: bool = False,
    say: Say = quiet,
) -> tuple[LatentFilterModel, dict[str, Any]]:
    """The latent filter from the first file of ``read`` that exists, else trained; written to ``write`` if given.

    Training: ``train_seeds`` gridded-LETKF runs of ``train_cycles`` cycles (`training_samples`), then
    the autoencoder and the latent prior (`build_latent_filter` with `RadarDiffusionConfig.setup`).

    Returns:
        ``(filter, record)``: ``record`` holds the ``autoencoder`` and ``prior`` records, ``data_seconds``
        (the training runs) and ``data_samples``.

    Raises:
        PriorMismatch: a file of ``read`` does not fit the twin (one line, naming the file).
    """
    for path in read:
        if path.is_file():
            say(f"latent filter: {path}")
            filt, record = read_latent_filter(path, config)
            if write is not None and Path(path).resolve() != write.resolve():
                save_latent_filter(filt, write, extra={"record": record, "copied_from": str(path)})
            return filt, record
    samples, seconds = training_samples(config, cache=samples_cache, progress=progress, say=say)
    filt, record = build_latent_filter(samples, config.setup(), model_dict(config.bda), progress=progress)
    record = {**record, "data_seconds": seconds, "data_samples": int(samples.truth.shape[0]),
              "train_seeds": config.training_seeds(), "train_cycles": config.train_cycles}  # fmt: skip
    if write is not None:
        save_latent_filter(filt, write, extra={"record": record})
    return filt, record


def run_filter(config: RadarDiffusionConfig, filt: LatentFilterModel, method: str, seed: int) -> FilterRun:
    """``method`` (``letkf`` or ``latent``) over the truth, radar volumes and initial ensemble of ``seed``."""
    analyser = None
    if method == "latent":
        analyser = LatentDiffusionAnalyser(filt, config.sampler, torch.Generator().manual_seed(seed), config.inflation)
    start = time.perf_counter()
    scores = score_run(config.run_bda(seed), analyser)
    return FilterRun(scores=scores, seconds=time.perf_counter() - start)


def _nan(values: Any) -> list[float]:
    return [math.nan if v is None else float(v) for v in values]


@dataclass(frozen=True)
class ResultStore:
    """Finished runs on disk: ``folder/FILTER_seedS.json``, one per (filter, seed)."""

    folder: Path

    def path(self, method: str, seed: int) -> Path:
        """The file of ``(method, seed)``."""
        return self.folder / f"{method}_seed{seed}.json"

    def load(self, method: str, seed: int) -> FilterRun | None:
        """The saved run of ``(method, seed)``, ``None`` when there is none."""
        path = self.path(method, seed)
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            cycles = {k: torch.tensor(_nan(data[k]), dtype=torch.float64) for k in PER_CYCLE}
            forecast = {k: _nan(v) for k, v in data["forecast_ts30"].items()}
            scores = TwinScores(**cycles, forecast_ts30=forecast, analysis_seconds=float(data["analysis_seconds"]),
                                diverged_cycle=int(data["diverged_cycle"]), reason=str(data["reason"]))  # fmt: skip
            return FilterRun(scores=scores, seconds=float(data["run_seconds"]))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            raise ConfigError(f"cannot resume: {path} is unreadable ({err})") from None

    def save(self, method: str, seed: int, run: FilterRun) -> Path:
        """Write the run of ``(method, seed)`` atomically (NaN as null)."""
        s = run.scores
        data = {"filter": method, "seed": seed, **{k: getattr(s, k).tolist() for k in PER_CYCLE},
                "forecast_ts30": s.forecast_ts30, "analysis_seconds": s.analysis_seconds,
                "diverged_cycle": s.diverged_cycle, "reason": s.reason, "run_seconds": run.seconds}  # fmt: skip
        self.folder.mkdir(parents=True, exist_ok=True)
        return write_json(self.path(method, seed), data)


def compare_filters(
    config: RadarDiffusionConfig,
    filt: LatentFilterModel,
    *,
    store: ResultStore | None = None,
    progress: bool = False,
    say: Say = quiet,
) -> Results:
    """The gridded LETKF and the latent filter ``filt`` on every seed of ``config``, seed by seed.

    Args:
        config: seeds, twin, sampler, inflation.
        filt: the latent filter.
        store: keeps each finished run and skips those it holds (``None``: nothing kept).
        progress: a progress bar over the runs.
        say: one line per run (read back, or its rain RMSE and divergence).

    Returns:
        ``(filter, seed) -> FilterRun``.
    """
    results: Results = {}
    runs = [(method, seed) for seed in config.seeds for method in LATENT_FILTERS]
    with progress_bar("filter runs", len(runs), enabled=progress) as update:
        for i, (method, seed) in enumerate(runs):
            saved = store.load(method, seed) if store is not None else None
            if saved is not None:
                say(f"{LABELS[method]} seed {seed}: read back from {store.path(method, seed)}")  # type: ignore[union-attr]
            else:
                saved = run_filter(config, filt, method, seed)
                if store is not None:
                    store.save(method, seed, saved)
                rmse = saved.scores.summary(config.skip)["rain_rmse"]
                stop = f", stopped at cycle {saved.scores.diverged_cycle}" if saved.scores.diverged_cycle else ""
                say(f"{LABELS[method]} seed {seed}: rain RMSE {rmse:.3g}{stop} ({saved.seconds:.1f} s)")
            results[(method, seed)] = saved
            update(i + 1, f"{LABELS[method]} seed {seed}")
    return results


def _check_state(out: Path, config: RadarDiffusionConfig, resume: bool) -> None:
    """Refuse an existing run without ``resume`` and a resumed one with other settings (before anything is written)."""
    state = out / "state.json"
    if not state.is_file():
        return
    if not resume:
        raise ConfigError(
            f"{out} already holds a latent radar run; pass --resume to continue it or choose another --out"
        )
    try:
        saved = json.loads(state.read_text(encoding="utf-8"))["config"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"cannot resume: {state} is unreadable ({err})") from None
    if saved != json.loads(json.dumps(radar_config_to_dict(config))):
        raise ConfigError(f"the run in {out} has other settings; resume it with the same configuration")


def _check_filters(out: Path, config: RadarDiffusionConfig, resume: bool) -> None:
    """The filters this run would read fit the twin: ``filter_file`` and, resuming, the run's own."""
    paths = [config.filter_file] if config.filter_file is not None else []
    if config.filter_file is not None and not config.filter_file.is_file():
        raise ConfigError(f"filter_file {config.filter_file} is not a file")
    if resume and (out / FILTER_FILE).is_file():
        paths.insert(0, out / FILTER_FILE)
    for path in paths:
        try:
            read_latent_filter(path, config)
        except PriorMismatch as err:
            raise ConfigError(str(err)) from None
        except (OSError, ValueError) as err:
            raise ConfigError(f"{path}: cannot read the filter's card ({err})") from None


def run_latent(
    config: RadarDiffusionConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool = False,
    plots: bool = True,
    say: Say = quiet,
) -> LatentRun:
    """Run (or resume) the comparison of ``config`` and write the outputs into ``out_dir``.

    The filter is read from ``out_dir/latent-filter.pt`` (a resumed run), else from
    ``config.filter_file`` (copied in), else trained and written there.

    Raises:
        ConfigError: ``out_dir`` cannot be written, holds a run without ``resume`` or one with other
            settings; ``filter_file`` is missing or does not fit the twin (nothing written then).
    """
    start = time.perf_counter()
    _check_state(Path(out_dir), config, resume)
    _check_filters(Path(out_dir), config, resume)
    with cpu_threads(config.threads), run_folder(out_dir, resume=resume, keep=(FILTER_FILE, "results")) as out:
        write_text(out / "state.json", json.dumps({"config": radar_config_to_dict(config)}, indent=1) + "\n")
        read = [*([out / FILTER_FILE] if resume else []), *([config.filter_file] if config.filter_file else [])]
        filt, training = latent_filter(config, read=read, write=out / FILTER_FILE, progress=progress, say=say)
        results = compare_filters(config, filt, store=ResultStore(out / "results"), progress=progress, say=say)
        wall = time.perf_counter() - start
        paths, summary, rows = write_latent_outputs(config, results, training, out, wall_time_s=wall, plots=plots)
    return LatentRun(config, Path(out_dir), results, training, rows, wall, paths, summary)


__all__ = [
    "PER_CYCLE",
    "LatentRun",
    "ResultStore",
    "compare_filters",
    "latent_filter",
    "read_latent_filter",
    "run_filter",
    "run_latent",
    "training_samples",
]
