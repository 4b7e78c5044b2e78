"""The surrogate <-> DA cycle: run, resume, score, write (mission §S2).

State on disk (``out_dir``), written after every completed iteration so an
interrupted run resumes from its last completed iteration:

* ``state.json``: the settings and one record per completed iteration;
* ``iteration_NN.npz``: analysis mean and spread ``(cycles, n_var)`` of DA
  iteration NN, and the surrogate's per-start forecast errors ``(starts, 4)``;
  with ``train_target: observation`` also ``window_mean`` ``(cycles, window, n_var)``,
  the analysed window at each cycle (the inputs of the next training);
* ``surrogate_KK.pt`` / ``.json``: surrogate KK (trained after DA iteration KK,
  used by DA iteration KK + 1);
* ``perfect.npz``: DA with the perfect (truth) model, the reference line.

Every random draw comes from a generator seeded by ``(seed, purpose,
iteration)``, so a resumed run equals an uninterrupted one. At the end
`run_surrogate` writes ``surrogate_run.nc``, ``summary.json`` and the plots.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dacast.ml.surrogate_train import (
    load_surrogate,
    train_surrogate,
    windows_against_observations,
    windows_from_trajectory,
)
from dacast.models import Model
from dacast.verify import time_mean_rmse
from dacast.workflow.files import INCOMPLETE, atomic_write, run_folder, write_text
from dacast.workflow.runtime import cpu_threads
from dacast.workflow.schema import ConfigError
from dacast.workflow.surrogate.assimilation import run_da
from dacast.workflow.surrogate.config import SurrogateConfig, surrogate_config_to_dict
from dacast.workflow.surrogate.output import write_surrogate_outputs
from dacast.workflow.surrogate.truth import N_LEADS, TruthData, forecast_scores, make_truth
from dacast.workflow.twin.config import build_model


@dataclass(frozen=True)
class SurrogateRun:
    """Everything a finished (or stopped) cycle produced.

    Attributes:
        config: the experiment.
        out_dir: where its files are.
        records: one dict per completed iteration (rmse_analysis, forecast scores, losses, times).
        perfect_rmse: analysis RMSE of DA with the perfect model.
        stopped: why the cycle ended.
        wall_time_s: seconds, including earlier sessions of a resumed run.
        tuning: with ``config.tuned_inflations``: analysis RMSE of DA with a fixed
            inflation, ``{"imperfect": {factor: rmse}, "<final model>": {factor: rmse}}``
            (factors as strings); ``None`` otherwise.
        paths: the outputs written (``dataset``, ``summary``, one per plot); empty for an interrupted run.
    """

    config: SurrogateConfig
    out_dir: Path
    records: list[dict[str, Any]]
    perfect_rmse: float
    stopped: str
    wall_time_s: float
    tuning: dict[str, dict[str, float]] | None = None
    paths: dict[str, Path] = field(default_factory=dict)


def _save_state(
    out: Path,
    config: SurrogateConfig,
    records: list[dict[str, Any]],
    perfect: float,
    wall: float,
    tuning: dict[str, dict[str, float]] | None = None,
) -> None:
    doc = {"config": surrogate_config_to_dict(config), "records": records, "perfect_rmse": perfect, "wall_time_s": wall}
    if tuning is not None:
        doc["tuning"] = tuning
    write_text(out / "state.json", json.dumps(doc, indent=1) + "\n")  # NaN kept: Python's json reads it back


def _stop_reason(config: SurrogateConfig, records: list[dict[str, Any]]) -> str | None:
    n = len(records) - 1
    rmse = [r["rmse_analysis"] for r in records]
    if n == 0 and not np.isfinite(rmse[0]):
        return "DA with the imperfect model diverged: nothing to train a surrogate on"
    if n >= config.iterations:
        return f"reached the maximum of {config.iterations} iterations"
    if n >= 1 and not np.isfinite(rmse[-1]):
        return f"DA with surrogate {n - 1} diverged"
    if n >= config.patience + 1:
        best_before = min(rmse[1 : n + 1 - config.patience] or [rmse[0]])
        recent = min(rmse[n + 1 - config.patience :])
        if not recent < best_before * (1 - config.tolerance):
            return f"analysis RMSE improved by less than {config.tolerance:.1%} in {config.patience} iterations"
    return None


def run_surrogate(
    config: SurrogateConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool = False,
    plots: bool = True,
    stop_after: int | None = None,
) -> SurrogateRun:
    """Run (or resume) the cycle, keep its state in ``out_dir`` and write its outputs there.

    Args:
        config: the experiment.
        out_dir: output folder (created).
        resume: continue a run found in ``out_dir`` (its settings must equal ``config``'s,
            except ``iterations`` and ``tuned_inflations``); without it an existing run there is an error.
        progress: Rich progress bars.
        plots: write the PNG figures with ``surrogate_run.nc`` and ``summary.json``.
        stop_after: stop after this many iterations of *this call* (simulates an interruption; for tests);
            an interrupted run writes its state only.

    Raises:
        ConfigError: an existing run without ``resume``, or one with other settings.
    """
    out = Path(out_dir)
    config.device_obj()  # a CUDA request without CUDA fails before anything is created
    doc = _resume_state(config, out, resume)  # an existing run without --resume: refused, untouched
    with run_folder(out, keep=("state.json",)), cpu_threads(config.threads):
        run = _run_surrogate(config, out, doc, progress=progress, stop_after=stop_after)
        if run.stopped != "interrupted":
            run = dataclasses.replace(run, paths=write_surrogate_outputs(run, plots=plots))
    if run.stopped == "interrupted":
        write_text(out / INCOMPLETE, f"stopped after {len(run.records)} iterations; resume with --resume\n")
    return run


def _savez(path: Path, **arrays: Any) -> None:
    """`numpy.savez` of ``arrays`` into ``path``, atomically."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    atomic_write(path, write)


def _resume_state(config: SurrogateConfig, out: Path, resume: bool) -> dict[str, Any]:
    """The state of an earlier run in ``out`` (empty without one); `ConfigError` when it cannot be resumed."""
    state_path = out / "state.json"
    if not state_path.exists():
        return {}
    if not resume:
        raise ConfigError(f"{out} already holds a surrogate run; pass --resume to continue it or choose another --out")
    doc = json.loads(state_path.read_text(encoding="utf-8"))
    mine = surrogate_config_to_dict(config)
    theirs = dict(doc["config"])
    for key in ("iterations", "tuned_inflations"):  # neither changes the cycle itself
        mine.pop(key, None), theirs.pop(key, None)
    if json.loads(json.dumps(mine)) != theirs:
        raise ConfigError(f"the run in {out} has other settings; resume it with the same configuration")
    return doc


def _perfect_rmse(config: SurrogateConfig, data: TruthData, out: Path, progress: bool) -> float:
    """Analysis RMSE of DA with the perfect model (computed once, kept in ``perfect.npz``)."""
    if (out / "perfect.npz").exists():
        return float(np.load(out / "perfect.npz")["rmse"])
    pm = run_da(config, data, build_model(config.truth), 0, None, progress=progress, perfect=True).analysis_mean
    rmse = time_mean_rmse(pm, data.truth[:, : config.n_var], config.burn_cycles)
    _savez(out / "perfect.npz", analysis_mean=pm.numpy(), rmse=rmse)
    return rmse


def _run_surrogate(
    config: SurrogateConfig, out: Path, doc: dict[str, Any], *, progress: bool, stop_after: int | None
) -> SurrogateRun:
    t_start = time.perf_counter()
    records: list[dict[str, Any]] = doc.get("records", [])
    tuning: dict[str, dict[str, float]] | None = doc.get("tuning")
    wall_before = doc.get("wall_time_s", 0.0)
    data = make_truth(config)
    perfect_rmse = _perfect_rmse(config, data, out, progress)
    done_now = 0
    stopped = _stop_reason(config, records) if records else None
    while stopped is None:
        records.append(_iteration(config, data, out, len(records), progress))
        _save_state(out, config, records, perfect_rmse, wall_before + time.perf_counter() - t_start)
        done_now += 1
        stopped = _stop_reason(config, records)
        if stopped is None and stop_after is not None and done_now >= stop_after:
            stopped = "interrupted"
    if done_now:  # a tuning from an earlier session compared an earlier final surrogate
        tuning = None
    if config.tuned_inflations and stopped != "interrupted" and tuning is None:
        tuning = tune_inflation(config, data, records, out, progress=progress)
    wall = wall_before + time.perf_counter() - t_start
    _save_state(out, config, records, perfect_rmse, wall, tuning)
    return SurrogateRun(config, out, records, perfect_rmse, stopped, wall, tuning)


def _train(config: SurrogateConfig, data: TruthData, out: Path, it: int, progress: bool) -> tuple[Any, Tensor]:
    """Train surrogate ``it - 1`` on the analyses of DA iteration ``it - 1``; returns it and those analyses."""
    prev = np.load(out / f"iteration_{it - 1:02d}.npz")
    prev_mean, prev_spread = torch.from_numpy(prev["analysis_mean"]), torch.from_numpy(prev["analysis_spread"])
    skip = config.burn_cycles
    if config.train_target == "observation":
        pairs = windows_against_observations(
            torch.from_numpy(prev["window_mean"]), data.observations, data.obs_indices, skip=skip
        )
    else:
        pairs = windows_from_trajectory(
            torch.from_numpy(prev["smoothed_mean"]),
            config.net.window,
            variance=prev_spread**2 if config.weight_by_variance else None,
            skip=skip,
        )
    init = load_surrogate(out / f"surrogate_{it - 2:02d}") if config.warm_start and it >= 2 else None
    result = train_surrogate(
        pairs,
        init if init is not None else config.surrogate_spec(),
        _replace_train(config, it, config.device_obj()),
        init_seed=config.seed * 1000 + it,
        checkpoint=out / f"surrogate_{it - 1:02d}",
        settings={"experiment": config.name, "iteration": it},
        progress=progress,
    )
    return result, prev_mean


def _iteration(config: SurrogateConfig, data: TruthData, out: Path, it: int, progress: bool) -> dict[str, Any]:
    """DA iteration ``it`` (with the imperfect model, or with a surrogate trained first); its files and record."""
    t0 = time.perf_counter()
    rec: dict[str, Any] = {"iteration": it}
    if it == 0:
        model: Model = config.imperfect_model()
        res = run_da(config, data, model, 0, None, progress=progress)
        rec |= {"model": "imperfect", "train_loss": None, "val_loss": None, "train_time_s": 0.0}
    else:
        result, prev_mean = _train(config, data, out, it, progress)
        model = result.model
        res = run_da(config, data, model, it, prev_mean, progress=progress)
        rec |= {
            "model": f"surrogate-{it - 1}",
            "train_loss": result.metrics["final_train_loss"],
            "val_loss": result.metrics["best_val_loss"],
            "train_time_s": result.wall_time_s,
        }
    skip = config.burn_cycles
    rmse = time_mean_rmse(res.analysis_mean, data.truth[:, : config.n_var], skip)
    scores = forecast_scores(config, data, model)
    win = res.window_mean
    rec |= {
        "rmse_analysis": rmse if np.isfinite(rmse) else float("nan"),
        "inflation": res.mean_inflation(skip),
        "forecast_rmse_steps_1_4": scores["rmse"],
        "valid_time": scores["valid_time"],
        "nrmse_free": scores["nrmse"].tolist(),
        "iteration_time_s": time.perf_counter() - t0,
    }
    _savez(
        out / f"iteration_{it:02d}.npz",
        analysis_mean=res.analysis_mean.numpy(),
        analysis_spread=res.analysis_spread.numpy(),
        smoothed_mean=res.smoothed_mean.numpy(),
        **({} if win is None else {"window_mean": win.view(config.cycles, config.net.window, -1).numpy()}),
        forecast_error=scores["error"],
        start_state=scores["start_state"],
    )
    return rec


def tune_inflation(
    config: SurrogateConfig, data: TruthData, records: list[dict[str, Any]], out: Path, *, progress: bool = False
) -> dict[str, dict[str, float]]:
    """Analysis RMSE of DA with the imperfect model and with the final surrogate at each fixed inflation.

    Each run uses the random draws of the cycle's own run of that model (same
    iteration number), without adaptive inflation; the final surrogate starts from
    the analyses of the iteration before it, as in the cycle.

    Returns:
        ``{"imperfect": {str(factor): rmse}, records[-1]["model"]: {...}}`` (only
        ``"imperfect"`` when no surrogate iteration completed).
    """
    truth_mod = data.truth[:, : config.n_var]
    n = len(records) - 1
    models: list[tuple[str, Model, int, Tensor | None]] = [("imperfect", config.imperfect_model(), 0, None)]
    if n >= 1:
        prev = torch.from_numpy(np.load(out / f"iteration_{n - 1:02d}.npz")["analysis_mean"])
        models.append((records[-1]["model"], load_surrogate(out / f"surrogate_{n - 1:02d}"), n, prev))
    result: dict[str, dict[str, float]] = {}
    for name, model, it, prev in models:
        result[name] = {}
        for factor in config.tuned_inflations:
            fixed = dataclasses.replace(
                config,
                adaptive_inflation=None,
                filter=dataclasses.replace(config.filter, inflation=factor),  # type: ignore[type-var]
                surrogate_filter=dataclasses.replace(config.filter_for_surrogate, inflation=factor),  # type: ignore[type-var]
            )
            mean = run_da(fixed, data, model, it, prev, progress=progress).analysis_mean
            rmse = time_mean_rmse(mean, truth_mod, config.burn_cycles)
            result[name][f"{factor:g}"] = rmse if np.isfinite(rmse) else float("nan")
    return result


def _replace_train(config: SurrogateConfig, iteration: int, device: torch.device) -> Any:
    return dataclasses.replace(config.train, seed=config.seed * 1000 + iteration, device=device.type)


__all__ = [
    "N_LEADS",
    "SurrogateRun",
    "TruthData",
    "forecast_scores",
    "make_truth",
    "run_da",
    "run_surrogate",
    "tune_inflation",
]
