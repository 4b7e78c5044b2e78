"""Run the radiance experiments: train the learned operators, assimilate every (experiment, seed), write outputs.

State on disk (``out_dir``), so an interrupted run resumes where it stopped:

* ``state.json``: the settings (a resumed run must have the same ones);
* ``ml/``, ``ml-truth/``: the learned operators (weights + metadata.json), trained once;
* ``<experiment>_seed<seed>.npz``: the scores and departures of each finished experiment.

Every random draw comes from a generator seeded by the seed and its purpose
(truth, observation errors, initial ensemble), so every experiment of a seed
sees the same truth, observations and initial ensemble, and a resumed run
equals an uninterrupted one. At the end `run_radiance` writes ``radiance_run.nc``,
``summary.json`` and the plots (`dacast.workflow.radiance.output`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from dacast.ml.obsop import LearnedRadianceOperator, RadianceNetwork
from dacast.models.column import ColumnAtmosphere
from dacast.obs import ObsOperator
from dacast.workflow.files import atomic_write, run_folder, write_text
from dacast.workflow.radiance.assimilation import OperatorFactory, run_experiment
from dacast.workflow.radiance.config import LEARNED, RadianceConfig, radiance_config_to_dict
from dacast.workflow.radiance.observing import (
    Swath,
    channel_heights,
    initial_ensemble,
    make_truth,
    observe_truth,
    physical_factory,
    radiance_locations,
)
from dacast.workflow.radiance.output import write_radiance_outputs
from dacast.workflow.radiance.training import learned_operator_network
from dacast.workflow.runtime import cpu_threads
from dacast.workflow.runtime import progress as progress_bar
from dacast.workflow.schema import ConfigError


@dataclass(frozen=True)
class RadianceRun:
    """What a finished run produced.

    Attributes:
        config: the experiments.
        out_dir: where the files are.
        results: ``(experiment, seed) -> arrays`` of `run_experiment`.
        networks: ``kind -> metadata`` of the learned operators used.
        wall_time_s: seconds of this session.
        paths: the outputs written (``dataset``, ``summary``, one per plot).
        summary: the contents of ``summary.json``.
    """

    config: RadianceConfig
    out_dir: Path
    results: dict[tuple[str, int], dict[str, np.ndarray]]
    networks: dict[str, dict[str, Any]]
    wall_time_s: float
    paths: dict[str, Path] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


def learned_error_std(config: RadianceConfig, kind: str, meta: dict[str, Any]) -> Tensor:
    """Observation-error standard deviation per channel ``(C,)`` (K) for radiances through a learned operator.

    With ``ml_error: nominal`` the instrument's ``satellite.error_std``. With ``validation``
    (default) the error the operator adds is counted too, as operational systems
    inflate R for an approximate operator: for ``ml`` (trained on observations) the
    validation RMSE against the observations, which already contains the instrument
    error; for ``ml-truth`` (trained on noiseless radiances) the instrument error and
    the validation RMSE added in quadrature.
    """
    nominal = torch.tensor(config.satellite.error_std, dtype=torch.float64)
    if config.ml_error == "nominal":
        return nominal
    val = torch.tensor([float(meta["val_rmse_per_channel"][str(c)]) for c in config.satellite.channels])
    val = val.to(torch.float64)
    return torch.maximum(val, nominal) if kind == "ml" else torch.sqrt(nominal**2 + val**2)


def operator_factory(
    model: ColumnAtmosphere,
    config: RadianceConfig,
    experiment: str,
    networks: dict[str, tuple[RadianceNetwork, Tensor]],
) -> OperatorFactory | None:
    """``view -> ObsOperator`` of ``experiment``'s radiances (``None`` for ``conv``).

    ``networks`` maps a learned experiment to its network and error standard deviations ``(C,)`` (K).
    """
    if experiment == "conv":
        return None
    if experiment in ("physical", "physical-nobc"):
        return physical_factory(model, config)
    network, errors = networks[experiment]
    heights = channel_heights(model, config)

    def learned(view: Swath) -> ObsOperator:
        return LearnedRadianceOperator(
            model=model,
            network=network,
            columns=view.columns,
            scan_deg=view.scan_deg,
            zenith_deg=view.zenith_deg,
            error_std=errors.repeat(view.columns.numel()),
            locations=radiance_locations(view, heights),
        )

    return learned


def _check_state(out: Path, config: RadianceConfig, resume: bool) -> None:
    """Refuse an existing run without ``resume`` and a resumed one with other settings (before anything is written)."""
    state = out / "state.json"
    if not state.is_file():
        return
    if not resume:
        raise ConfigError(f"{out} already holds a radiance run; pass --resume to continue it or choose another --out")
    try:
        saved = json.loads(state.read_text(encoding="utf-8"))["config"]
    except (OSError, ValueError, KeyError) as err:
        raise ConfigError(f"cannot resume: {state} is unreadable ({err})") from None
    if saved != json.loads(json.dumps(radiance_config_to_dict(config))):
        raise ConfigError(f"the run in {out} has other settings; resume it with the same configuration")


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    def write(tmp: Path) -> None:
        with tmp.open("wb") as fh:
            np.savez(fh, **arrays)

    atomic_write(path, write)


def run_radiance(
    config: RadianceConfig, out_dir: str | Path, *, resume: bool = False, progress: bool = False, plots: bool = True
) -> RadianceRun:
    """Run (or resume) every experiment of ``config`` and write the outputs into ``out_dir``.

    A filter that diverges ends that experiment only (its scores stay NaN from then
    on; ``summary.json`` gives the cycle and the reason).

    Raises:
        ConfigError: ``out_dir`` cannot be written, holds a run without ``resume``, or one with other settings.
    """
    start = time.perf_counter()
    _check_state(Path(out_dir), config, resume)
    with cpu_threads(config.threads), run_folder(out_dir, resume=resume, keep=("state.json",)) as out:
        write_text(out / "state.json", json.dumps({"config": radiance_config_to_dict(config)}, indent=1) + "\n")
        model = config.model.build()
        networks: dict[str, tuple[RadianceNetwork, Tensor]] = {}
        meta: dict[str, dict[str, Any]] = {}
        for kind in (k for k in LEARNED if k in config.experiments):
            network, meta[kind] = learned_operator_network(model, config, kind, out / kind, progress=progress)
            errors = learned_error_std(config, kind, meta[kind])
            meta[kind]["error_std_used"] = errors.tolist()
            networks[kind] = (network, errors)
        results: dict[tuple[str, int], dict[str, np.ndarray]] = {}
        total = len(config.seeds) * len(config.experiments)
        with progress_bar("experiments", total * config.cycles, enabled=progress) as update:
            done = 0
            for seed in config.seeds:
                data = None
                for experiment in config.experiments:
                    path = out / f"{experiment}_seed{seed}.npz"
                    if resume and path.is_file():
                        with np.load(path) as saved:
                            results[(experiment, seed)] = dict(saved)
                        done += config.cycles
                        update(done, f"{experiment} seed {seed} (saved)")
                        continue
                    if data is None:
                        data = observe_truth(model, config, make_truth(model, config, seed, config.cycles), seed)
                    factory = operator_factory(model, config, experiment, networks)
                    t0 = time.perf_counter()
                    arrays = run_experiment(
                        model,
                        config,
                        data,
                        initial_ensemble(model, config, seed),
                        radiance_operator=factory,
                        bias_correction=experiment == "physical" and config.satellite.bias,
                        monitor=factory or physical_factory(model, config),
                        progress=lambda i, n, d=done, e=experiment, s=seed: update(d + i, f"{e} seed {s}"),
                    )
                    arrays["seconds"] = np.array(time.perf_counter() - t0)
                    _save_npz(path, arrays)
                    results[(experiment, seed)] = arrays
                    done += config.cycles
        wall = time.perf_counter() - start
        paths, summary = write_radiance_outputs(config, model, results, meta, out, wall_time_s=wall, plots=plots)
    return RadianceRun(
        config=config,
        out_dir=Path(out_dir),
        results=results,
        networks=meta,
        wall_time_s=wall,
        paths=paths,
        summary=summary,
    )


__all__ = ["RadianceRun", "learned_error_std", "operator_factory", "run_radiance"]
