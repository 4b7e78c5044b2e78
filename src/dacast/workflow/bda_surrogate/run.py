"""Run (or resume) a learned-regional-model experiment: train, check stability, assimilate with each model.

Files in ``out_dir`` (each stage is skipped on ``--resume`` when its file is there):

* ``config.json``: the settings (a resumed run must have the same);
* ``surrogate_NN.pt`` / ``.json``: the trained surrogate(s) (`dacast.workflow.bda_surrogate.training`);
* ``stability.json``: the surrogate's free run of ``stability_cycles`` cycles beside the physics';
* ``perfect/``, ``imperfect/``, ``surrogate/``: one `dacast bda run` each (``cycles.nc``,
  ``summary.json``, plots, ``checkpoint.pt``), on the same truth, radar volumes and seeds;
* ``bda_surrogate.nc``, ``summary.json`` and the comparison figures, written last.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dacast.ml.grid_surrogate import GridSurrogate, NonFiniteForecast
from dacast.models.wursch_craig import WurschCraig
from dacast.workflow.bda.checkpoint import CHECKPOINT
from dacast.workflow.bda.forecast import EnsembleModel, Seeds, initial_truth
from dacast.workflow.bda.run import run_bda_experiment
from dacast.workflow.bda_surrogate.config import BDASurrogateConfig, Experiment, bda_surrogate_config_to_dict
from dacast.workflow.bda_surrogate.output import write_outputs
from dacast.workflow.bda_surrogate.training import trained_surrogates
from dacast.workflow.files import run_folder, write_json
from dacast.workflow.runtime import Say, cpu_threads, quiet, resolve_device
from dacast.workflow.schema import ConfigError


@dataclass(frozen=True)
class BDASurrogateResult:
    """What `run_bda_surrogate` produced: the summary and the paths of its outputs."""

    config: BDASurrogateConfig
    out_dir: Path
    summary: dict[str, Any]
    paths: dict[str, Path] = field(default_factory=dict)


def _check_resume(config: BDASurrogateConfig, out: Path, resume: bool) -> None:
    path = out / "config.json"
    if not path.is_file():
        return
    if not resume:
        raise ConfigError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    saved = json.loads(path.read_text(encoding="utf-8"))
    if saved != json.loads(json.dumps(bda_surrogate_config_to_dict(config))):
        raise ConfigError(f"the run in {out} has other settings; resume it with the same configuration")


def run_bda_surrogate(
    config: BDASurrogateConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool = False,
    plots: bool = True,
    say: Say = quiet,
) -> BDASurrogateResult:
    """Train the surrogate(s), run the stability check and the DA experiments, write the outputs.

    Raises:
        ConfigError: an existing run without ``resume``, or one with other settings.
    """
    out = Path(out_dir)
    _check_resume(config, out, resume)
    t0 = time.perf_counter()
    with run_folder(out, resume=resume, keep=("config.json",)), cpu_threads(config.threads):
        write_json(out / "config.json", bda_surrogate_config_to_dict(config))
        surrogates = trained_surrogates(config, out, progress=progress, say=say)
        surrogate = surrogates[-1][0].to(resolve_device(config.bda.device))
        stability = stability_run(config, surrogate, out, say=say)
        cost = member_cost(config, surrogate)
        experiments = {
            name: run_experiment(config, name, surrogate, out, progress=progress, plots=plots, say=say)
            for name in config.experiments
        }
        summary, paths = write_outputs(
            config,
            out,
            surrogates=[meta for _, meta in surrogates],
            stability=stability,
            cost=cost,
            experiments=experiments,
            plots=plots,
            wall=time.perf_counter() - t0,
        )
    return BDASurrogateResult(config, out, summary, paths)


def ensemble_model(config: BDASurrogateConfig, name: Experiment, surrogate: GridSurrogate) -> EnsembleModel | None:
    """The model that runs the ensemble of experiment ``name`` (None: the truth's physics)."""
    if name == "perfect":
        return None
    if name == "imperfect":
        return WurschCraig(config.imperfect_model())
    return surrogate


def run_experiment(
    config: BDASurrogateConfig,
    name: Experiment,
    surrogate: GridSurrogate,
    out: Path,
    *,
    progress: bool,
    plots: bool,
    say: Say,
) -> dict[str, Any]:
    """The 30-s BDA twin with the ensemble run by ``name``'s model, in ``out/name`` (resumed, or read when done)."""
    folder = out / name
    if (folder / "summary.json").is_file():
        return json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    say(f"DA with the {name} model")
    result = run_bda_experiment(
        config.bda,
        folder,
        resume=(folder / CHECKPOINT).is_file(),
        progress=progress,
        plots=plots,
        say=say,
        ensemble_model=ensemble_model(config, name, surrogate),
    )
    return result.summary


def _extremes(x: Tensor, h0: float) -> list[float]:
    """``[max |h - H0| (m), max |u|, |v| (m/s), domain-mean rain, max rain]`` over the members of ``x``."""
    return [
        float((x[:, 2] - h0).abs().max()),
        float(x[:, :2].abs().max()),
        float(x[:, 3].mean()),
        float(x[:, 3].max()),
    ]


def stability_run(config: BDASurrogateConfig, surrogate: GridSurrogate, out: Path, *, say: Say = quiet) -> dict:
    """Free runs of ``stability_cycles`` cycles of the surrogate and of the truth's physics, same start and noise.

    Both start from ``stability_members`` copies of the verification twin's spun-up truth, each member
    its own triggering. Recorded every cycle: max |h - H0|, max |wind|, mean and max rain, per model.
    The surrogate is *stable* when it stays finite and its max |h - H0| and max |wind| stay within
    twice the physics run's largest values. Kept in ``stability.json``.
    """
    path = out / "stability.json"
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    bda = config.bda
    device = resolve_device(bda.device)
    physics = WurschCraig(bda.model)
    truth = initial_truth(bda, physics, device)
    seed = Seeds.of(bda.seed).pool
    xs = truth.expand(config.stability_members, -1, -1, -1).clone()
    xp = xs.clone()
    spc, h0 = bda.steps_per_cycle, bda.model.H0
    series: dict[str, list[list[float]]] = {"surrogate": [], "physics": []}
    failed = None
    for c in range(config.stability_cycles):
        xp = physics.forecast(xp, bda.cycle_seconds, seed=seed, start_step=c * spc)
        series["physics"].append(_extremes(xp, h0))
        if failed is None:
            try:
                xs = surrogate.forecast(xs, bda.cycle_seconds, seed=seed, start_step=c * spc)
                series["surrogate"].append(_extremes(xs, h0))
            except NonFiniteForecast as err:
                failed = f"cycle {c + 1}: {err}"
    doc = {
        "cycles": config.stability_cycles,
        "members": config.stability_members,
        "finite_cycles": len(series["surrogate"]),
        "failure": failed,
        "stable": None,  # not checked (stability_cycles 0)
        "columns": ["max_abs_h_dev_m", "max_abs_wind_ms", "mean_rain", "max_rain"],
        "series": series,
    }
    if series["surrogate"]:
        phys, sur = torch.tensor(series["physics"]), torch.tensor(series["surrogate"])
        bounded = bool((sur[:, :2] <= 2.0 * phys[:, :2].max(0).values).all())
        doc |= {"stable": failed is None and bounded, "max_physics": phys.max(0).values.tolist()}
        doc["max_surrogate"] = sur.max(0).values.tolist()
    elif failed is not None:
        doc["stable"] = False
    write_json(path, doc)
    if doc["stable"] is not None:
        verdict = "stable" if doc["stable"] else "NOT stable"
        say(f"stability: surrogate {verdict} over {config.stability_cycles} free cycles")
    return doc


def member_cost(config: BDASurrogateConfig, surrogate: GridSurrogate, members: int = 8, repeats: int = 3) -> dict:
    """Seconds per member per 30-s cycle of the physics model and of the surrogate (best of ``repeats``)."""
    bda = config.bda
    device = resolve_device(bda.device)
    physics = WurschCraig(bda.model)
    x = initial_truth(bda, physics, device).expand(members, -1, -1, -1).clone()
    out: dict[str, float] = {}
    for name, model in (("physics", physics), ("surrogate", surrogate)):
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            model.forecast(x, bda.cycle_seconds, seed=1, start_step=0)
            if device.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t)
        out[f"{name}_s_per_member_cycle"] = best / members
    out["ratio_surrogate_to_physics"] = out["surrogate_s_per_member_cycle"] / out["physics_s_per_member_cycle"]
    out["threads"] = torch.get_num_threads()
    out["device"] = str(device)
    return out


__all__ = [
    "BDASurrogateResult",
    "ensemble_model",
    "member_cost",
    "run_bda_surrogate",
    "run_experiment",
    "stability_run",
]
