"""The nowcaster shipped inside the package: loads safely, matches its model card, and reproduces the
documented scores of its reference case through `dacast nowcast run`'s code path."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dacast.ml import MultiResNowcaster, load_nowcaster, shipped_model_card, shipped_nowcaster


def test_shipped_weights_are_small_load_safely_and_match_the_card() -> None:
    folder = shipped_nowcaster()
    card = shipped_model_card()
    weights = folder / "best.pt"
    assert weights.stat().st_size < 8e6  # a few MB, fit for the package
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == card["sha256_best_pt"]
    ck = torch.load(weights, map_location="cpu", weights_only=True)
    assert set(ck) == {"model_config", "model_kind", "model", "step"}  # no optimiser, no discriminators
    model = load_nowcaster(folder)
    assert isinstance(model, MultiResNowcaster) and model.is_ensemble
    assert sum(p.numel() for p in model.parameters()) == card["parameters"]
    sidecar = json.loads((folder / "nowcast_workflow.json").read_text())
    assert sidecar["extrapolation"]["motion"] == "dis" and "root" not in sidecar
    training = card["training"]
    assert training["steps"] >= training["best_step"] > 0 and "nowcast_ensemble.yaml" in training["command"]
    # The YAML in the card is the example in the repository, so the training can be rerun from it.
    example = Path(__file__).parents[2] / "examples" / "nowcast_ensemble.yaml"
    assert card["training"]["yaml"] == example.read_text()


def test_shipped_nowcaster_reproduces_its_reference_case(radar_root: Path) -> None:
    from dacast.workflow.nowcast.config import NowcastRunConfig
    from dacast.workflow.nowcast.output import score_dataset
    from dacast.workflow.nowcast.run import make_nowcast

    case = shipped_model_card()["reference_case"]
    config = NowcastRunConfig(
        source=case["source"], start=case["issue_time"], method="convlstm", root=radar_root, device="cpu"
    )
    assert config.checkpoint == shipped_nowcaster()  # no --checkpoint: the shipped one
    ds, _ = make_nowcast(config)
    scores = score_dataset(ds)
    csi = scores["csi"].sel(threshold=1.0).values
    assert float(csi.mean()) == pytest.approx(case["csi_1_mean"], abs=case["tolerance"])
    assert np.allclose(csi, case["csi_1_per_lead"], atol=2 * case["tolerance"])
    assert float(scores["csi"].sel(threshold=5.0).mean()) == pytest.approx(case["csi_5_mean"], abs=case["tolerance"])
