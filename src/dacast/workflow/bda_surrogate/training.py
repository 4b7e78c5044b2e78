"""Training data and training of the gridded surrogate, in the training period (its own truth seed).

* ``truth``: ``training_members`` truth runs (the training truth and its siblings: member ``i``
  of the truth's noise stream), spun up like the twin's truth; pairs of consecutive states.
* ``analyses``: a BDA run with the imperfect physics; pairs of consecutive *analyses* of the first
  ``training_members`` members (what a centre archives; each target includes the LETKF's increment).
* ``cycle``: the ``analyses`` surrogate, then ``iterations`` times: a BDA run with the latest
  surrogate as the ensemble model, pairs of its analyses, a warm-started retraining.

Every pair's input is the surrogate's *anchor* for its cycle (`GridSurrogate.anchor`): the state plus
the cycle's triggering kicks (purely learned), or the imperfect physics' forecast (hybrid), drawn from
the same ``(seed, member, step)`` stream that made the target. Each surrogate is written as
``surrogate_NN.pt`` / ``.json`` (metadata: source, iteration, training period, data hash, losses),
so an interrupted run resumes after the last one written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dacast.ml.grid_surrogate import GridSurrogate, load_grid_surrogate, save_grid_surrogate
from dacast.ml.grid_surrogate_train import GridPairs, train_grid_surrogate
from dacast.models.wursch_craig import WurschCraig
from dacast.workflow.bda.forecast import CycleState, EnsembleModel, Seeds, torch_dtype
from dacast.workflow.bda.run import run_cycles
from dacast.workflow.bda_surrogate.config import BDASurrogateConfig
from dacast.workflow.runtime import Say, quiet, resolve_device
from dacast.workflow.runtime import progress as progress_bar


def truth_pairs(config: BDASurrogateConfig, kicker: GridSurrogate, *, progress: bool = False) -> GridPairs:
    """Pairs from ``training_members`` truth runs of ``training_cycles`` cycles (float32, CPU)."""
    bda = config.training_bda()
    model = WurschCraig(bda.model)
    seed = Seeds.of(config.training_seed).truth
    device = resolve_device(bda.device)
    spin = bda.spinup_minutes * 60.0
    x = model.initial_state(config.training_members, seed=seed, dtype=torch_dtype(bda), device=device)
    x = model.forecast(x, spin, seed=seed, start_step=-round(spin / bda.model.dt))
    spc = bda.steps_per_cycle
    inputs: list[Tensor] = []
    targets: list[Tensor] = []
    with progress_bar("truth runs", config.training_cycles, enabled=progress) as update:
        for c in range(config.training_cycles):
            inputs.append(kicker.anchor(x, seed=seed, start_step=c * spc).float().cpu())
            x = model.forecast(x, bda.cycle_seconds, seed=seed, start_step=c * spc)
            targets.append(x.float().cpu())
            update(c + 1)
    return GridPairs(torch.stack(inputs, 1).flatten(0, 1), torch.stack(targets, 1).flatten(0, 1))


def analysis_pairs(
    config: BDASurrogateConfig,
    kicker: GridSurrogate,
    ensemble_model: EnsembleModel,
    *,
    progress: bool = False,
    say: Say = quiet,
) -> tuple[GridPairs, dict[str, Any]]:
    """Pairs of consecutive analyses of the first ``training_members`` members of a BDA run in the training period.

    Returns:
        The pairs (member-major, time order within a member) and the run's diagnostics: analysis RMSE
        per variable averaged over its cycles, and whether (where) it diverged.
    """
    bda = config.training_bda()
    m, spc = config.training_members, bda.steps_per_cycle
    pool = Seeds.of(config.training_seed).pool
    inputs: list[Tensor] = []
    targets: list[Tensor] = []
    prev: list[Tensor] = []
    with progress_bar("training-period DA", bda.cycles, enabled=progress) as update:

        def collect(state: CycleState) -> None:
            now = state.ensemble[:m]
            if prev:
                inputs.append(kicker.anchor(prev[0], seed=pool, start_step=(state.cycle - 1) * spc).float().cpu())
                targets.append(now.float().cpu())
            prev[:] = [now.clone()]
            update(state.cycle)

        state = run_cycles(bda, on_cycle=collect, say=say, ensemble_model=ensemble_model)
    if not inputs:
        raise RuntimeError(f"the training-period DA diverged at cycle {state.diverged_cycle}: no training pairs")
    rmse = torch.tensor([r["rmse_analysis"] for r in state.records]).mean(0).tolist()
    info = {"rmse_analysis": rmse, "cycles": state.cycle, "diverged_cycle": state.diverged_cycle or None}
    pairs = GridPairs(torch.stack(inputs, 1).flatten(0, 1), torch.stack(targets, 1).flatten(0, 1))
    return pairs, info


def _trained_on(config: BDASurrogateConfig, iteration: int) -> str:
    if config.source == "truth":
        return "truth runs"
    return ("imperfect-physics" if iteration == 0 else f"surrogate-{iteration - 1}") + " analyses"


def surrogate_path(out: Path, iteration: int) -> Path:
    """``out/surrogate_NN`` (without suffix)."""
    return out / f"surrogate_{iteration:02d}"


def trained_surrogates(
    config: BDASurrogateConfig, out: Path, *, progress: bool = False, say: Say = quiet
) -> list[tuple[GridSurrogate, dict[str, Any]]]:
    """Train (or, resuming, load) the surrogate(s) of ``config.source``: one, or ``1 + iterations`` for ``cycle``.

    Returns:
        ``(surrogate, metadata)`` per iteration, the last one the surrogate the experiments use.
    """
    spec = config.spec()
    kicker = GridSurrogate(spec)
    n = 1 + (config.iterations if config.source == "cycle" else 0)
    done: list[tuple[GridSurrogate, dict[str, Any]]] = []
    for it in range(n):
        path = surrogate_path(out, it)
        if path.with_suffix(".json").is_file() and path.with_suffix(".pt").is_file():
            meta = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
            done.append((load_grid_surrogate(path, expected=spec), meta))
            say(f"surrogate {it}: loaded from {path.with_suffix('.pt')}")
            continue
        info: dict[str, Any] = {}
        if config.source == "truth":
            pairs = truth_pairs(config, kicker, progress=progress)
        else:
            ens_model = WurschCraig(config.imperfect_model()) if it == 0 else done[-1][0]
            pairs, info = analysis_pairs(config, kicker, ens_model, progress=progress, say=say)
        start = done[-1][0] if it > 0 else spec
        result = train_grid_surrogate(pairs, start, config.train, progress=progress)
        meta = {
            "source": config.source,
            "iteration": it,
            "trained_on": _trained_on(config, it),
            "training_seed": config.training_seed,
            "training_cycles": config.training_cycles,
            "training_members": config.training_members,
            "pairs": len(pairs),
            "training_da": info,
            **result.metrics,
        }
        save_grid_surrogate(result.model, path, metadata=meta)
        m = result.metrics
        say(
            f"surrogate {it}: validation loss {m['initial_val_loss']:.3g} -> {m['best_val_loss']:.3g}, "
            f"{m['wall_time_s']:.0f} s"
        )
        done.append((result.model, meta))
    return done


__all__ = ["analysis_pairs", "surrogate_path", "trained_surrogates", "truth_pairs"]
