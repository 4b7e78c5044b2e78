"""The forecast-error prior of each observation network: read from a folder, else trained (and retrained) and written.

File names: ``prior-NETWORK.pt`` (trained on forecast/truth pairs of LETKF runs) and
``prior-NETWORK-itK.pt`` (retrained K times on those pairs plus the diffusion filter's
own forecasts), each with its ``.json`` card (`dacast.ml.diffusion_filter.save_prior`;
its ``record`` says how the prior was trained). With ``iterations: N`` the prior of
iteration ``K`` is written as soon as it is trained, so an interrupted run redoes only
the sampling that makes the next iteration's pairs, not the training.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dacast.ml.diffusion_filter import DiffusionAnalyser, ForecastErrorPrior, load_prior, save_prior
from dacast.ml.diffusion_train import train_error_prior
from dacast.workflow.diffusion.config import DiffusionConfig
from dacast.workflow.diffusion.experiment import Lorenz96Twin, Network, training_pairs
from dacast.workflow.runtime import Say, quiet

#: Forecast means, spreads and truths ``(samples, n)`` a prior learns from.
Pairs = tuple[Tensor, Tensor, Tensor]


def prior_name(network: str, iteration: int = 0) -> str:
    """``prior-NETWORK.pt``, or ``prior-NETWORK-itK.pt`` for the prior of retraining ``iteration`` K >= 1."""
    return f"prior-{network}.pt" if iteration == 0 else f"prior-{network}-it{iteration}.pt"


def diffusion_analyser(prior: ForecastErrorPrior, config: DiffusionConfig, seed: int) -> DiffusionAnalyser:
    """The diffusion filter of ``prior`` with ``config``'s sampler, inflation and ensemble blend, its samples a
    function of ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    blend = config.ensemble.build(config.twin())
    return DiffusionAnalyser(prior, config.sampler.build(), generator, inflation=config.inflation, blend=blend)


def _read(
    name: str, folders: Sequence[Path], twin: Lorenz96Twin, network: Network, write: Path | None, say: Say
) -> tuple[ForecastErrorPrior, dict[str, Any]] | None:
    """The prior ``name`` from the first of ``folders`` that holds it (copied into ``write``); ``None`` if none does.

    Raises:
        PriorMismatch: the file there does not fit the experiment (one line, naming the file).
    """
    for folder in folders:
        path = folder / name
        if not path.is_file():
            continue
        say(f"prior: {path}")
        prior = load_prior(path, n_state=twin.n_state, model=twin.model_dict(), network=network.name)
        record = json.loads(path.with_suffix(".json").read_text(encoding="utf-8")).get("record")
        record = record if isinstance(record, dict) else {}
        record = {**record, "iterations": list(record.get("iterations", []))}  # as a trained prior's
        if write is not None and not (write / name).is_file():
            write.mkdir(parents=True, exist_ok=True)
            save_prior(prior, write / name, extra={"record": record, "copied_from": str(path)})
        return prior, record
    return None


def _train(
    data: Pairs, twin: Lorenz96Twin, network: Network, config: DiffusionConfig, progress: bool
) -> tuple[ForecastErrorPrior, dict[str, Any]]:
    """Train a prior on ``data``; returns the prior and its training record (without data timings)."""
    result = train_error_prior(*data, model=twin.model_dict(), networks=(network.name,), config=config.training.build(),
                               progress=progress)  # fmt: skip
    return result.prior, dict(result.record)


def network_prior(
    twin: Lorenz96Twin,
    network: Network,
    config: DiffusionConfig,
    *,
    read: Sequence[Path] = (),
    write: Path | None = None,
    progress: bool = False,
    say: Say = quiet,
) -> tuple[ForecastErrorPrior, dict[str, Any]]:
    """The prior the diffusion filter of ``network`` runs with, and how it was trained.

    The prior of ``config.iterations`` is read from the first folder of ``read`` that holds it.
    Otherwise the base prior (``prior-NETWORK.pt``) is read or trained on ``training.runs`` LETKF runs
    of ``training.cycles`` cycles (seeds derived from ``training.seed``, never a verification seed),
    then retrained ``iterations`` times, each time on all the pairs so far plus ``iteration_runs``
    runs of the diffusion filter with the latest prior (training seeds ``training.seed + K``). Every
    prior trained (or read from another folder) is written into ``write`` when given.

    Returns:
        ``(prior, record)``: ``record`` is the base training's record with ``iterations``, one record
        per retraining (``data_seconds``, ``data_samples`` added).

    Raises:
        PriorMismatch: a prior file found does not fit the experiment.
        ValueError: too few training pairs for a batch (runs that diverged early).
    """
    folders = tuple(read)
    found = _read(prior_name(network.name, config.iterations), folders, twin, network, write, say)
    if found is not None:
        return found
    spec = config.training
    start = time.perf_counter()
    data = training_pairs(twin, (network,), runs=spec.runs, cycles=spec.cycles, seed=spec.seed, progress=progress)
    data_seconds = time.perf_counter() - start
    base = _read(prior_name(network.name), folders, twin, network, write, say) if config.iterations else None
    if base is None:
        prior, record = _train(data, twin, network, config, progress)
        record |= {"data_seconds": data_seconds, "data_samples": int(data[0].shape[0]), "iterations": []}
        _write(prior, record, write, prior_name(network.name))
    else:
        prior, record = base
    for it in range(1, config.iterations + 1):
        # retrain on the LETKF pairs plus the diffusion filter's own forecasts (the errors it will meet)
        start = time.perf_counter()
        extra = training_pairs(twin, (network,), runs=config.iteration_runs, cycles=spec.cycles, seed=spec.seed + it,
                               analyser=_own_analyser(prior, config), label="diffusion", progress=progress)  # fmt: skip
        data = tuple(torch.cat((a, b)) for a, b in zip(data, extra, strict=True))  # type: ignore[assignment]
        data_seconds = time.perf_counter() - start
        saved = _read(prior_name(network.name, it), folders, twin, network, write, say)
        if saved is not None:
            prior, record = saved
            continue
        prior, trained = _train(data, twin, network, config, progress)
        trained |= {"data_seconds": data_seconds, "data_samples": int(data[0].shape[0])}
        record = {**record, "iterations": [*record["iterations"], trained]}
        _write(prior, record, write, prior_name(network.name, it))
    return prior, record


def _own_analyser(prior: ForecastErrorPrior, config: DiffusionConfig) -> Callable[[Network, int], DiffusionAnalyser]:
    """Builds the diffusion filter of ``prior`` for a (network, run seed) of the training period."""

    def build(network: Network, seed: int) -> DiffusionAnalyser:
        return diffusion_analyser(prior, config, seed)

    return build


def _write(prior: ForecastErrorPrior, record: dict[str, Any], folder: Path | None, name: str) -> None:
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        save_prior(prior, folder / name, extra={"record": record})


__all__ = ["Pairs", "diffusion_analyser", "network_prior", "prior_name"]
