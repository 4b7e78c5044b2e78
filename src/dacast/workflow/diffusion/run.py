"""Run the diffusion filter against the LETKF: one prior per network, both filters on every (network, seed), outputs.

State on disk (``out_dir``), so an interrupted run resumes where it stopped:

* ``state.json``: the settings (a resumed run must have the same ones);
* ``priors/prior-NETWORK[-itK].pt`` and ``.json``: the priors, trained (or copied from ``prior_dir``) once;
* ``results/NETWORK_seedS.npz``: both filters' scores of each finished (network, seed), written atomically.

Both filters of a (network, seed) cycle over the same truth, observations and initial
ensemble (a function of the seed), and the diffusion filter's samples are a function of
the seed too, so a resumed run equals an uninterrupted one. A filter that diverges is a
result (its cycle and reason are kept), not an error. At the end `run_diffusion` writes
``diffusion_run.nc``, ``summary.json`` and the plots (`dacast.workflow.diffusion.output`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dacast.ml.diffusion_filter import ForecastErrorPrior, PriorMismatch, load_prior
from dacast.workflow.diffusion.config import (
    FILTERS,
    DiffusionConfig,
    diffusion_config_from_dict,
    diffusion_config_to_dict,
)
from dacast.workflow.diffusion.experiment import Lorenz96Twin, Network, RunStats, run_filter
from dacast.workflow.diffusion.output import Results, write_diffusion_outputs
from dacast.workflow.diffusion.priors import diffusion_analyser, network_prior, prior_name
from dacast.workflow.files import atomic_write, run_folder, write_text
from dacast.workflow.runtime import Say, cpu_threads, quiet
from dacast.workflow.schema import ConfigError

#: ``network -> (prior, training record)``: where a comparison gets the prior of each network.
PriorSource = Callable[[Network], tuple[ForecastErrorPrior, dict[str, Any]]]
#: The numbers of a `RunStats` that are kept per filter (its forecasts are not).
SCORES = ("rmse", "spread", "crps", "rank_counts")


@dataclass(frozen=True)
class DiffusionRun:
    """What a finished run produced.

    Attributes:
        config: the comparison.
        out_dir: where the files are.
        results: ``(network, seed) -> filter -> RunStats`` (scores only, no forecasts).
        training: ``network -> record`` of each prior's training.
        rows: one row per (network, filter) of the table (`dacast.workflow.diffusion.output.filter_rows`).
        wall_time_s: seconds of this session.
        paths: the outputs written (``dataset``, ``summary``, one per plot).
        summary: the contents of ``summary.json``.
    """

    config: DiffusionConfig
    out_dir: Path
    results: Results
    training: dict[str, dict[str, Any]]
    rows: list[dict[str, Any]]
    wall_time_s: float
    paths: dict[str, Path] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


def scores_only(stats: RunStats) -> RunStats:
    """``stats`` without its forecasts ``(cycles, n)`` (kept empty): what a verification run keeps."""
    empty = torch.empty(0, dtype=torch.float64)
    return replace(stats, forecast_mean=empty, forecast_spread=empty)


def compare_filters(
    twin: Lorenz96Twin,
    network: Network,
    prior: ForecastErrorPrior,
    config: DiffusionConfig,
    seed: int,
    *,
    progress: bool = False,
) -> dict[str, RunStats]:
    """The LETKF and the diffusion filter (of ``prior``) over the truth, observations and ensemble of ``seed``.

    Returns:
        ``filter -> RunStats`` in `FILTERS` order, scores per cycle ``(cycles,)`` (NaN after a divergence).
    """
    truth, y, ens = twin.truth_and_obs(network, seed, config.cycles)
    out: dict[str, RunStats] = {}
    for method in FILTERS:
        analyser = twin.letkf(network) if method == "letkf" else diffusion_analyser(prior, config, seed)
        stats = run_filter(twin, network, analyser, truth, y, ens, skip=config.skip,
                           label=f"{method} {network.name} seed {seed}", progress=progress)  # fmt: skip
        out[method] = scores_only(stats)
    return out


@dataclass(frozen=True)
class ResultStore:
    """Finished comparisons on disk: ``folder/NETWORK_seedS.npz``, one per (network, seed), both filters."""

    folder: Path

    def path(self, network: str, seed: int) -> Path:
        """The file of ``(network, seed)``."""
        return self.folder / f"{network}_seed{seed}.npz"

    def load(self, network: str, seed: int) -> dict[str, RunStats] | None:
        """The saved comparison of ``(network, seed)``, ``None`` when there is none."""
        path = self.path(network, seed)
        if not path.is_file():
            return None
        try:
            with np.load(path) as saved:
                return {m: _stats(m, saved) for m in FILTERS}
        except (OSError, ValueError, KeyError) as err:
            raise ConfigError(f"cannot resume: {path} is unreadable ({err})") from None

    def save(self, network: str, seed: int, result: dict[str, RunStats]) -> Path:
        """Write the comparison of ``(network, seed)`` atomically."""
        arrays: dict[str, np.ndarray] = {}
        for m, stats in result.items():
            arrays |= {f"{m}_{key}": getattr(stats, key).numpy() for key in SCORES}
            arrays[f"{m}_analysis_seconds"] = np.array(stats.analysis_seconds)
            arrays[f"{m}_diverged_cycle"] = np.array(stats.diverged_cycle)
            arrays[f"{m}_reason"] = np.array(stats.reason)
        self.folder.mkdir(parents=True, exist_ok=True)

        def write(tmp: Path) -> None:
            with tmp.open("wb") as fh:
                np.savez(fh, **arrays)

        return atomic_write(self.path(network, seed), write)


def _stats(method: str, saved: Any) -> RunStats:
    empty = torch.empty(0, dtype=torch.float64)
    scores = {key: torch.from_numpy(saved[f"{method}_{key}"].copy()) for key in SCORES}
    return RunStats(
        **scores,
        forecast_mean=empty,
        forecast_spread=empty,
        analysis_seconds=float(saved[f"{method}_analysis_seconds"]),
        diverged_cycle=int(saved[f"{method}_diverged_cycle"]),
        reason=str(saved[f"{method}_reason"]),
    )


def run_comparison(
    config: DiffusionConfig,
    twin: Lorenz96Twin,
    priors: PriorSource,
    *,
    store: ResultStore | None = None,
    progress: bool = False,
    say: Say = quiet,
) -> tuple[Results, dict[str, dict[str, Any]]]:
    """Both filters on every network and seed of ``config``: the prior of each network, then its seeds.

    Args:
        config: networks, seeds, cycles, sampler.
        twin: the model and ensemble size.
        priors: gives each network's prior and its training record (`network_prior`).
        store: keeps each finished (network, seed) and skips those it holds (``None``: nothing kept).
        progress: progress bars.
        say: one-line notes (a comparison read back from ``store``).

    Returns:
        ``(results, training)``: ``(network, seed) -> filter -> RunStats`` and ``network -> record``.
    """
    results: Results = {}
    training: dict[str, dict[str, Any]] = {}
    for network in config.observation_networks():
        prior, training[network.name] = priors(network)
        for seed in config.seeds:
            if store is not None and (saved := store.load(network.name, seed)) is not None:
                say(f"{network.name} seed {seed}: read back from {store.path(network.name, seed)}")
                results[(network.name, seed)] = saved
                continue
            result = compare_filters(twin, network, prior, config, seed, progress=progress)
            if store is not None:
                store.save(network.name, seed, result)
            results[(network.name, seed)] = result
    return results, training


def _check_state(out: Path, config: DiffusionConfig, resume: bool) -> None:
    """Refuse an existing run without ``resume`` and a resumed one with other settings (before anything is written)."""
    state = out / "state.json"
    if not state.is_file():
        return
    if not resume:
        raise ConfigError(f"{out} already holds a diffusion run; pass --resume to continue it or choose another --out")
    try:  # parsed, so that a key added since the run began takes its default
        saved = diffusion_config_from_dict(json.loads(state.read_text(encoding="utf-8"))["config"])
    except (OSError, ValueError, KeyError) as err:
        raise ConfigError(f"cannot resume: {state} is unreadable ({err})") from None
    if saved != config:
        raise ConfigError(f"the run in {out} has other settings; resume it with the same configuration")


def _check_prior_dir(config: DiffusionConfig, twin: Lorenz96Twin) -> None:
    """``prior_dir`` is a folder and every prior of this run found there fits it (before anything is written)."""
    folder = config.prior_dir
    if folder is None:
        return
    if not folder.is_dir():
        raise ConfigError(f"prior_dir {folder} is not a folder")
    for network in config.observation_networks():
        for it in range(config.iterations + 1):
            path = folder / prior_name(network.name, it)
            if path.is_file():
                try:
                    load_prior(path, n_state=twin.n_state, model=twin.model_dict(), network=network.name)
                except PriorMismatch as err:
                    raise ConfigError(str(err)) from None


def run_diffusion(
    config: DiffusionConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool = False,
    plots: bool = True,
    say: Say = quiet,
) -> DiffusionRun:
    """Run (or resume) the comparison of ``config`` and write the outputs into ``out_dir``.

    Priors are read from ``out_dir/priors`` (a resumed run), then from ``config.prior_dir``, else
    trained; all end up in ``out_dir/priors``.

    Raises:
        ConfigError: ``out_dir`` cannot be written, holds a run without ``resume`` or one with other
            settings; ``prior_dir`` is not a folder or holds a prior that does not fit.
    """
    start = time.perf_counter()
    twin = config.twin()
    _check_state(Path(out_dir), config, resume)
    _check_prior_dir(config, twin)
    with cpu_threads(config.threads), run_folder(out_dir, resume=resume, keep=("priors", "results")) as out:
        write_text(out / "state.json", json.dumps({"config": diffusion_config_to_dict(config)}, indent=1) + "\n")
        folders = (out / "priors", *((config.prior_dir,) if config.prior_dir is not None else ()))

        def priors(network: Network) -> tuple[ForecastErrorPrior, dict[str, Any]]:
            return network_prior(twin, network, config, read=folders, write=out / "priors", progress=progress, say=say)

        results, training = run_comparison(
            config, twin, priors, store=ResultStore(out / "results"), progress=progress, say=say
        )
        wall = time.perf_counter() - start
        paths, summary, rows = write_diffusion_outputs(config, results, training, out, wall_time_s=wall, plots=plots)
    return DiffusionRun(config, Path(out_dir), results, training, rows, wall, paths, summary)


__all__ = [
    "DiffusionRun",
    "PriorSource",
    "ResultStore",
    "compare_filters",
    "run_comparison",
    "run_diffusion",
    "scores_only",
]
