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
`write_surrogate_outputs` writes ``surrogate_run.nc``, ``summary.json`` and the plots.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dacast.ml.surrogate import SurrogateNet
from dacast.ml.surrogate_train import (
    load_surrogate,
    train_surrogate,
    windows_against_observations,
    windows_from_trajectory,
)
from dacast.models import Model
from dacast.workflow.twin.config import ConfigError, build_model
from dacast.workflow.surrogate.config import SurrogateConfig, surrogate_config_to_dict
from dacast.workflow.surrogate.cycle import (
    CycleResult,
    DelayEmbedded,
    assimilate,
    cpu_threads,
    free_forecasts,
    time_mean_rmse,
    valid_time,
    view_operator,
)

N_LEADS = 4
DIVERGENCE_FACTOR = 10.0


def _gen(seed: int, *key: int) -> torch.Generator:
    state = np.random.SeedSequence([seed, *key]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & 0x7FFF_FFFF_FFFF_FFFF)


@dataclass(frozen=True)
class TruthData:
    """Truth and observations of one experiment (CPU, float64).

    Attributes:
        truth: full truth state at analysis times, shape ``(cycles, n_truth)``.
        observations: shape ``(cycles, n_obs)``.
        test: independent truth segment after the DA period, shape ``(test_cycles, n_truth)``.
        obs_indices: observed modelled variables.
        clim_std: ``sqrt(mean_var var_t(test))`` of the modelled variables.
    """

    truth: Tensor
    observations: Tensor
    test: Tensor
    obs_indices: list[int]
    clim_std: float


def make_truth(config: SurrogateConfig) -> TruthData:
    """Spin the truth up onto its attractor, run it, observe it, and run an independent test segment."""
    model = build_model(config.truth)
    gen = _gen(config.seed, 0)
    x = model.default_initial_state(dtype=torch.float64)  # type: ignore[attr-defined]
    x = x + torch.randn(x.shape, generator=gen, dtype=torch.float64)
    for _ in range(int(round(10.0 / config.dt))):
        x = model.step(x, 0.0, config.dt)

    def run(x: Tensor, n: int) -> tuple[Tensor, Tensor]:
        out = torch.empty((n, x.shape[-1]), dtype=torch.float64)
        for c in range(n):
            for _ in range(config.obs_every):
                x = model.step(x, 0.0, config.dt)
            out[c] = x
        return out, x

    truth, x = run(x, config.cycles)
    for _ in range(int(round(5.0 / config.dt))):  # decorrelate the test segment
        x = model.step(x, 0.0, config.dt)
    test, _ = run(x, config.test_cycles)
    idx = config.obs.state_indices(config.n_var)
    std = torch.as_tensor(config.obs.error_std, dtype=torch.float64)
    noise = torch.randn((config.cycles, len(idx)), generator=_gen(config.seed, 1), dtype=torch.float64)
    obs = truth[:, idx] + noise * std
    clim = float(test[:, : config.n_var].var(0).mean().sqrt())
    return TruthData(truth, obs, test, idx, clim)


def run_da(
    config: SurrogateConfig,
    data: TruthData,
    model: Model,
    iteration: int,
    previous: Tensor | None,
    *,
    progress: bool = False,
    perfect: bool = False,
) -> CycleResult:
    """One DA run with ``model``.

    Returns the `CycleResult`, with the rows before a surrogate's first analysis
    filled from ``previous`` and non-finite smoothed rows replaced by the filtered
    ones; ``window_mean`` (the analysed window of ``net.window`` past states at each
    cycle) only with ``config.train_target == "observation"``.

    With ``config.smoother_lag > 0`` the imperfect model runs on a delay-embedded
    state (`DelayEmbedded`), so the filter is also a fixed-lag smoother; a
    surrogate's window gives the same for free (lag ``min(window - 1, smoother_lag)``).

    A plain model starts from ``N(truth_0, initial_std^2)`` members at time 0. A
    window-``w`` surrogate starts at cycle ``w`` from the previous analysis
    trajectory's first ``w`` rows plus ``N(0, initial_std^2)`` noise per member;
    those rows are copied into the result (they lie in the burn-in).
    """
    n_var = data.truth.shape[1] if perfect else config.n_var
    n_state = model.n_state
    gen = _gen(config.seed, 2, iteration)
    k = config.members
    truth_mod = data.truth[:, : config.n_var]
    by_obs = config.train_target == "observation" and not perfect
    smoother = (config.smoother_lag > 0 or by_obs) and not perfect
    n_win = config.net.window if by_obs else 0
    if isinstance(model, SurrogateNet):
        assert previous is not None
        w = model.window
        noise = config.initial_std * torch.randn((k, w, config.n_var), generator=gen, dtype=torch.float64)
        ens = model.embed(previous[:w][None] + noise)
        view, start, step, dt = model.view, w, 1, config.step
        lag_view = torch.arange(config.n_var) + (w - 1 - min(w - 1, config.smoother_lag)) * config.n_var
        filt = config.filter_for_surrogate
    elif smoother:
        w = max(config.smoother_lag + 1, n_win)
        model = DelayEmbedded(model, w, config.obs_every)
        n_state = model.n_state
        x0 = truth_mod[0] + config.initial_std * torch.randn((k, config.n_var), generator=gen, dtype=torch.float64)
        ens = x0.repeat(1, w)
        view, start, step, dt = model.view, 0, 1, config.step
        lag_view = torch.arange(config.n_var) + (w - 1 - config.smoother_lag) * config.n_var
        filt = config.filter
    else:
        x0 = data.truth[0, :n_var] if perfect else truth_mod[0]
        ens = x0 + config.initial_std * torch.randn((k, n_state), generator=gen, dtype=torch.float64)
        view, start, step, dt = torch.arange(config.n_var), 0, config.obs_every, config.dt
        lag_view = None
        filt = (config.perfect_filter or config.filter) if perfect else config.filter
    op = view_operator(n_state, view, data.obs_indices, _std(config))
    grid = None
    if config.imperfect.name == "lorenz96":
        from dacast.obs import Grid

        grid = Grid.ring(n_state)
    threshold = DIVERGENCE_FACTOR * data.clim_std
    label = "DA perfect" if perfect else f"DA iter {iteration}"
    res = assimilate(
        model,
        ens,
        data.observations,
        op,
        filt,
        view=view,
        steps_per_cycle=step,
        dt=dt,
        start=start,
        grid=grid,
        generator=gen,
        threshold=threshold,
        truth=truth_mod,
        progress=progress,
        label=label,
        lag_view=lag_view,
        window=n_win,
        adaptive=config.adaptive_inflation,
    )
    mean, spread, smooth = res.analysis_mean, res.analysis_spread, res.smoothed_mean
    if start and previous is not None:
        mean[:start] = previous[:start]
        spread[:start] = config.initial_std
    bad = ~torch.isfinite(smooth).all(-1)
    smooth[bad] = mean[bad]
    if res.window_mean is not None and start and previous is not None:
        win = res.window_mean.view(-1, n_win, config.n_var)
        for c in range(start):  # the window before the first analysis: previous analyses
            lo = max(0, c + 1 - n_win)
            win[c, n_win - (c + 1 - lo) :] = previous[lo : c + 1]
    return res


def _std(config: SurrogateConfig) -> float | Tensor:
    e = config.obs.error_std
    return torch.tensor(e, dtype=torch.float64) if isinstance(e, tuple) and len(e) > 1 else float(np.ravel(e)[0])


def forecast_scores(config: SurrogateConfig, data: TruthData, model: Model) -> dict[str, Any]:
    """Forecast scores of ``model`` from true initial states of the test segment.

    Returns:
        ``rmse`` (``N_LEADS`` values, steps 1-4), ``error`` per start and lead
        ``(starts, N_LEADS)``, ``start_state`` ``(starts, n_var)``, ``nrmse``
        (``free_leads`` values: RMSE over starts / climatological std), ``valid_time``.
    """
    w = config.net.window if isinstance(model, SurrogateNet) else 1
    test = data.test[:, : config.n_var]
    last = config.test_cycles - config.free_leads - 1
    starts = torch.linspace(w - 1, max(w - 1, last), config.test_starts).round().long().unique()
    leads = config.free_leads
    if isinstance(model, SurrogateNet):
        hist = test[starts[:, None] + torch.arange(-w + 1, 1)]  # (S, w, n_var)
        init = model.embed(hist)
        fc = free_forecasts(model, init, leads, steps_per_lead=1, dt=config.step)[..., model.view]
    else:
        fc = free_forecasts(model, test[starts], leads, steps_per_lead=config.obs_every, dt=config.dt)
    idx = (starts[None, :] + torch.arange(1, leads + 1)[:, None]).clamp_max(config.test_cycles - 1)
    err = (fc - test[idx]).pow(2).mean(-1)  # (leads, S)
    err = torch.where(torch.isfinite(err), err, torch.full_like(err, 1e6))
    nrmse = err.mean(1).sqrt().numpy() / data.clim_std
    return {
        "rmse": err[:N_LEADS].mean(1).sqrt().tolist(),
        "error": err[:N_LEADS].sqrt().T.numpy(),
        "start_state": test[starts].numpy(),
        "nrmse": nrmse,
        "valid_time": valid_time(nrmse, config.step),
    }


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
    """

    config: SurrogateConfig
    out_dir: Path
    records: list[dict[str, Any]]
    perfect_rmse: float
    stopped: str
    wall_time_s: float
    tuning: dict[str, dict[str, float]] | None = None


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
    tmp = out / "state.json.tmp"
    tmp.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    tmp.replace(out / "state.json")


def _stop_reason(config: SurrogateConfig, records: list[dict[str, Any]]) -> str | None:
    n = len(records) - 1
    rmse = [r["rmse_analysis"] for r in records]
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
    stop_after: int | None = None,
) -> SurrogateRun:
    """Run (or resume) the cycle and keep its state in ``out_dir``.

    Args:
        config: the experiment.
        out_dir: output folder (created).
        resume: continue a run found in ``out_dir`` (its settings must equal ``config``'s,
            except ``iterations`` and ``tuned_inflations``); without it an existing run there is an error.
        progress: Rich progress bars.
        stop_after: stop after this many iterations of *this call* (simulates an interruption; for tests).

    Raises:
        ConfigError: an existing run without ``resume``, or one with other settings.
    """
    with cpu_threads(config.threads):
        return _run_surrogate(config, out_dir, resume=resume, progress=progress, stop_after=stop_after)


def _run_surrogate(
    config: SurrogateConfig, out_dir: str | Path, *, resume: bool, progress: bool, stop_after: int | None
) -> SurrogateRun:
    t_start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = config.device_obj()
    records: list[dict[str, Any]] = []
    tuning: dict[str, dict[str, float]] | None = None
    wall_before = 0.0
    state_path = out / "state.json"
    if state_path.exists():
        if not resume:
            raise ConfigError(
                f"{out} already holds a surrogate run; pass --resume to continue it or choose another --out"
            )
        doc = json.loads(state_path.read_text(encoding="utf-8"))
        mine = surrogate_config_to_dict(config)
        theirs = dict(doc["config"])
        for key in ("iterations", "tuned_inflations"):  # neither changes the cycle itself
            mine.pop(key, None), theirs.pop(key, None)
        if json.loads(json.dumps(mine)) != theirs:
            raise ConfigError(f"the run in {out} has other settings; resume it with the same configuration")
        records, wall_before = doc["records"], doc["wall_time_s"]
        tuning = doc.get("tuning")
    data = make_truth(config)
    truth_mod = data.truth[:, : config.n_var]
    skip = config.burn_cycles
    if (out / "perfect.npz").exists():
        perfect_rmse = float(np.load(out / "perfect.npz")["rmse"])
    else:
        pm = run_da(config, data, build_model(config.truth), 0, None, progress=progress, perfect=True).analysis_mean
        perfect_rmse = time_mean_rmse(pm, truth_mod, skip)
        np.savez(out / "perfect.npz", analysis_mean=pm.numpy(), rmse=perfect_rmse)
    done_now = 0
    stopped = _stop_reason(config, records) if records else None
    while stopped is None:
        it = len(records)
        t0 = time.perf_counter()
        rec: dict[str, Any] = {"iteration": it}
        if it == 0:
            model: Model = config.imperfect_model()
            res = run_da(config, data, model, 0, None, progress=progress)
            rec |= {"model": "imperfect", "train_loss": None, "val_loss": None, "train_time_s": 0.0}
        else:
            prev = np.load(out / f"iteration_{it - 1:02d}.npz")
            prev_mean, prev_spread = torch.from_numpy(prev["analysis_mean"]), torch.from_numpy(prev["analysis_spread"])
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
            init = None
            if config.warm_start and it >= 2:
                init = load_surrogate(out / f"surrogate_{it - 2:02d}")
            spec = init if init is not None else config.surrogate_spec()
            train_cfg = _replace_train(config, it, device)
            result = train_surrogate(
                pairs,
                spec,
                train_cfg,
                init_seed=config.seed * 1000 + it,
                checkpoint=out / f"surrogate_{it - 1:02d}",
                settings={"experiment": config.name, "iteration": it},
                progress=progress,
            )
            model = result.model
            res = run_da(config, data, model, it, prev_mean, progress=progress)
            rec |= {
                "model": f"surrogate-{it - 1}",
                "train_loss": result.metrics["final_train_loss"],
                "val_loss": result.metrics["best_val_loss"],
                "train_time_s": result.wall_time_s,
            }
        rmse = time_mean_rmse(res.analysis_mean, truth_mod, skip)
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
        np.savez(
            out / f"iteration_{it:02d}.npz",
            analysis_mean=res.analysis_mean.numpy(),
            analysis_spread=res.analysis_spread.numpy(),
            smoothed_mean=res.smoothed_mean.numpy(),
            **({} if win is None else {"window_mean": win.view(config.cycles, config.net.window, -1).numpy()}),
            forecast_error=scores["error"],
            start_state=scores["start_state"],
        )
        records.append(rec)
        wall = wall_before + time.perf_counter() - t_start
        _save_state(out, config, records, perfect_rmse, wall)
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
