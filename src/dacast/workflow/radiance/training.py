"""Training data and training of the learned radiance operators.

Two operators, as issue and paper ask:

* ``ml`` (the paper's): a separate DA run (its own truth and seed, ``training_cycles``
  long, assimilating ``training_system``) provides background forecasts; the
  background-mean column under each field of view, with the scan and zenith angles
  and the latitude, is paired with the radiance actually observed there (biased and
  noisy). The network learns H(x_b) plus the bias plus the average effect of
  background errors, as in Liang et al. (2023), who trained on a month of NICAM-LETKF
  first guesses paired with AMSU-A.
* ``ml-truth``: truth columns under the swath, paired with the physical operator's
  brightness temperatures (no bias, no noise): a perfect emulator of the
  physics that knows nothing of the bias.

Networks are saved in ``<run>/ml/`` and ``<run>/ml-truth/`` with JSON metadata and
reused on resume.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dacast.ml.obsop import RadianceNetwork, radiance_features
from dacast.ml.obsop_train import (
    RadianceTrainConfig,
    load_radiance_network,
    save_radiance_network,
    train_radiance_network,
)
from dacast.models.column import ColumnAtmosphere
from dacast.obs.microwave import brightness_temperature
from dacast.workflow.cycle import CycleStep
from dacast.workflow.radiance.assimilation import Progress, run_experiment
from dacast.workflow.radiance.config import RadianceConfig
from dacast.workflow.radiance.observing import (
    initial_ensemble,
    make_truth,
    observe_truth,
    physical_factory,
    swath,
)
from dacast.workflow.runtime import progress as progress_bar


def swath_features(model: ColumnAtmosphere, config: RadianceConfig, x: Tensor, cycle: int) -> Tensor:
    """Network inputs ``(n_fov, L + Lq + 3)`` of the swath's columns of ``cycle`` in state ``x`` ``(n_state,)``.

    ``Lq``: the levels at or below ``config.ml_humidity_top_hpa``.
    """
    view = swath(config, cycle)
    t, q = model.profiles(x, view.columns)
    lat = model.latitude[view.columns]
    return radiance_features(t, q, view.scan_deg, view.zenith_deg, lat, config.humidity_levels(model.pressure))


def background_pairs(
    model: ColumnAtmosphere, config: RadianceConfig, progress: Progress | None = None
) -> tuple[Tensor, Tensor]:
    """Features of background means and the raw observed radiances from a separate DA run.

    Returns:
        ``(features (n, L + Lq + 3), targets (n, C) K)`` with ``n = (training_cycles − spinup_cycles) · fovs``.

    Raises:
        ValueError: the training DA run diverged before it produced any pair.
    """
    seed = config.seed
    truth = make_truth(model, config, seed, config.training_cycles)
    data = observe_truth(model, config, truth, seed)
    ensemble = initial_ensemble(model, config, seed)
    features, targets = [], []

    def collect(step: CycleStep) -> None:
        if step.cycle > config.spinup_cycles:
            features.append(swath_features(model, config, step.prior.mean(0), step.cycle))
            targets.append(data.radiances[step.cycle])

    physical = config.training_system == "physical"
    run_experiment(
        model,
        replace(config, cycles=config.training_cycles),
        data,
        ensemble,
        radiance_operator=physical_factory(model, config) if physical else None,
        bias_correction=physical and config.satellite.bias,
        progress=progress,
        on_step=collect,
    )
    if not features:
        raise ValueError(
            f"the training DA run (seed {seed}) produced no background after its {config.spinup_cycles} spin-up cycles"
        )
    return torch.cat(features), torch.cat(targets)


def truth_pairs(model: ColumnAtmosphere, config: RadianceConfig) -> tuple[Tensor, Tensor]:
    """Features of truth columns under the swath and their unbiased, noiseless physical radiances.

    Returns:
        ``(features (n, L + Lq + 3), targets (n, C) K)`` with ``n`` about ``truth_samples``.
    """
    cycles = max(1, -(-config.truth_samples // config.satellite.fovs))
    truth = make_truth(model, config, config.seed + 1, cycles)
    features, targets = [], []
    for c in range(1, cycles + 1):
        view = swath(config, c)
        t, q = model.profiles(truth[c], view.columns)
        features.append(swath_features(model, config, truth[c], c))
        targets.append(
            brightness_temperature(t, q, model.pressure, view.zenith_deg, channels=config.satellite.channels)
        )
    return torch.cat(features), torch.cat(targets)


def train_config(config: RadianceConfig) -> RadianceTrainConfig:
    """The network training settings of ``config.ml``."""
    ml = config.ml
    return RadianceTrainConfig(
        hidden=ml.hidden,
        depth=ml.depth,
        epochs=ml.epochs,
        lr=ml.lr,
        batch_size=ml.batch_size,
        patience=ml.patience,
        seed=config.seed,
    )


def learned_operator_network(
    model: ColumnAtmosphere, config: RadianceConfig, kind: str, folder: Path, *, progress: bool = False
) -> tuple[RadianceNetwork, dict[str, Any]]:
    """The network of ``kind`` (``ml`` or ``ml-truth``): loaded from ``folder`` when trained before, else trained.

    ``progress`` shows bars for the training DA run and the epochs.
    """
    if (folder / "metadata.json").is_file():
        return load_radiance_network(folder, pressure=model.pressure, channels=config.satellite.channels)
    if kind == "ml":
        with progress_bar(f"{kind}: training DA run", config.training_cycles, enabled=progress) as update:
            features, targets = background_pairs(model, config, progress=lambda i, n: update(i, ""))
        label = f"background-obs ({config.training_system} DA run, {config.training_cycles} cycles)"
    else:
        features, targets = truth_pairs(model, config)
        label = "truth (physical operator, no bias, no noise)"
    with progress_bar(f"{kind}: train the network", config.ml.epochs, enabled=progress) as update:
        network, history = train_radiance_network(
            features.float(),
            targets.float(),
            train_config(config),
            channels=config.satellite.channels,
            humidity_levels=config.humidity_levels(model.pressure),
            progress=lambda epoch, n, rmse: update(epoch, f"validation RMSE {rmse:.3f} K"),
        )
    meta = {**history, "kind": label, "pressure_hpa": model.pressure.tolist(), "samples": int(features.shape[0])}
    save_radiance_network(folder, network, meta)
    return load_radiance_network(folder, pressure=model.pressure, channels=config.satellite.channels)


__all__ = ["background_pairs", "learned_operator_network", "swath_features", "train_config", "truth_pairs"]
