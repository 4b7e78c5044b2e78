"""The diffusion filter: engine interface, a tiny cycle with a fixed seed, failures, checkpoints, training."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from dacast.da import Analysis
from dacast.ml.diffusion import DenoiserSpec, NoiseSchedule
from dacast.ml.diffusion_filter import (
    DiffusionAnalyser,
    ErrorPriorSpec,
    ForecastErrorPrior,
    PriorMismatch,
    load_prior,
    save_prior,
)
from dacast.ml.diffusion_hybrid import EnsembleBlend
from dacast.ml.diffusion_sampling import SamplerConfig
from dacast.ml.diffusion_train import DiffusionTrainConfig, train_error_prior
from dacast.obs import identity
from dacast.workflow.cycle import Observation
from dacast.workflow.diffusion import NETWORKS, Lorenz96Twin, run_filter

TWIN = Lorenz96Twin(n_state=12, members=6)
MODEL = TWIN.model_dict()


def _prior(seed: int = 0) -> ForecastErrorPrior:
    torch.manual_seed(seed)
    spec = ErrorPriorSpec(
        n_state=12, model=MODEL, networks=("all",), state_mean=2.3, state_std=3.6, spread_scale=0.3,
        denoiser=asdict(DenoiserSpec(cond_channels=1, channels=8, layers=2, kernel=3)),
    )  # fmt: skip
    return ForecastErrorPrior(spec).eval().requires_grad_(False)


SAMPLER = SamplerConfig(steps=4, schedule=NoiseSchedule(sigma_max=20.0))
MOVE = SamplerConfig(steps=4, schedule=NoiseSchedule(sigma_max=20.0), transport=True)


def test_the_analyser_meets_the_engine_interface() -> None:
    prior = torch.randn(6, 12, dtype=torch.float64) + 3.0
    obs = Observation(y=torch.zeros(12, dtype=torch.float64), operator=identity(12, 1.0))
    result = DiffusionAnalyser(_prior(), SAMPLER, torch.Generator().manual_seed(0))(prior, obs, None, 0)
    assert isinstance(result, Analysis)
    assert result.ensemble.shape == prior.shape and result.ensemble.dtype == prior.dtype
    torch.testing.assert_close(result.innovation, -prior.mean(0))
    assert bool(torch.isfinite(result.ensemble).all()) and float(result.spread.mean()) > 0


def _tiny_run(sampler: SamplerConfig, seed: int, blend: EnsembleBlend | None = None) -> torch.Tensor:
    """Analysis RMSE ``(6,)`` of a 6-cycle run of the tiny twin (seed 5) with the untrained prior."""
    network = NETWORKS["all"]
    truth, y, ens = TWIN.truth_and_obs(network, seed=5, cycles=6)
    analyser = DiffusionAnalyser(_prior(), sampler, torch.Generator().manual_seed(seed), blend=blend)
    stats = run_filter(TWIN, network, analyser, truth, y, ens)
    assert stats.diverged_cycle == -1, stats.reason
    assert int(stats.rank_counts.sum()) == 6 * 12
    assert bool(torch.isfinite(stats.rmse).all())
    return stats.rmse


def test_a_tiny_cycle_runs_end_to_end_and_is_a_function_of_the_seed() -> None:
    first = _tiny_run(SAMPLER, 1)
    torch.testing.assert_close(_tiny_run(SAMPLER, 1), first, rtol=0, atol=0)
    assert not torch.equal(_tiny_run(SAMPLER, 2), first)


def test_transport_moves_the_members_deterministically() -> None:
    first = _tiny_run(MOVE, 1)
    torch.testing.assert_close(_tiny_run(MOVE, 2), first, rtol=0, atol=0)  # the generator plays no part
    assert not torch.equal(_tiny_run(SAMPLER, 1), first)
    with pytest.raises(ValueError, match="churn must be 0"):
        SamplerConfig(steps=4, churn=1.0, transport=True)


def test_the_hybrid_prior_runs_in_the_cycle_and_changes_the_analysis() -> None:
    """The blend (moved members: deterministic) runs end to end and is not the learned prior alone."""
    iso = SamplerConfig(steps=4, schedule=NoiseSchedule(sigma_max=20.0), covariance="isotropic", transport=True)
    blend = EnsembleBlend(weight=0.5, scale=0.7, taper=TWIN.taper())
    half = _tiny_run(iso, 1, blend)
    torch.testing.assert_close(_tiny_run(iso, 2, blend), half, rtol=0, atol=0)  # the generator plays no part
    assert not torch.equal(half, _tiny_run(iso, 1))


def test_a_sampler_returning_nan_stops_the_run_and_names_the_cycle() -> None:
    prior = _prior()
    with torch.no_grad():
        prior.net.out.bias.fill_(math.nan)
    network = NETWORKS["all"]
    truth, y, ens = TWIN.truth_and_obs(network, seed=5, cycles=4)
    stats = run_filter(
        TWIN, network, DiffusionAnalyser(prior, SAMPLER, torch.Generator().manual_seed(0)), truth, y, ens
    )
    assert stats.diverged_cycle == 0
    assert "non-finite" in stats.reason and "diffusion sampler" in stats.reason
    assert bool(torch.isnan(stats.rmse).all())


def test_checkpoints_round_trip_and_refuse_another_experiment(tmp_path: Path) -> None:
    prior = _prior()
    path = save_prior(prior, tmp_path / "prior.pt", extra={"note": "test"})
    back = load_prior(path, n_state=12, model=MODEL, network="all")
    for a, b in zip(prior.state_dict().values(), back.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["note"] == "test" and len(card["weights_sha256"]) == 64
    with pytest.raises(PriorMismatch, match="12 state variables .need 40."):
        load_prior(path, n_state=40, model=MODEL, network="all")
    with pytest.raises(PriorMismatch, match=r"model.forcing 8.0 \(need 10.0\)"):
        load_prior(path, n_state=12, model={**MODEL, "forcing": 10.0}, network="all")
    with pytest.raises(PriorMismatch, match="trained on networks all, not on 'arctan'"):
        load_prior(path, n_state=12, model=MODEL, network="arctan")
    card["format"] = "something/else"
    path.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(PriorMismatch, match="not a dacast diffusion prior"):
        load_prior(path, n_state=12, model=MODEL, network="all")
    path.with_suffix(".json").write_text("{not json")
    with pytest.raises(PriorMismatch, match="cannot read"):
        load_prior(path, n_state=12, model=MODEL, network="all")
    with pytest.raises(PriorMismatch, match="cannot read"):
        load_prior(tmp_path / "missing.pt", n_state=12, model=MODEL, network="all")


def test_corrupt_weights_and_bad_normalisation_are_one_line_errors(tmp_path: Path) -> None:
    path = save_prior(_prior(), tmp_path / "prior.pt")
    path.write_bytes(b"not a torch file")
    with pytest.raises(PriorMismatch, match="cannot load the weights"):
        load_prior(path, n_state=12, model=MODEL, network="all")
    with pytest.raises(PriorMismatch, match="normalisation"):
        ErrorPriorSpec(n_state=12, model=MODEL, networks=("all",), state_mean=math.nan, state_std=1.0, spread_scale=1.0)
    with pytest.raises(PriorMismatch, match="normalisation"):
        ErrorPriorSpec(n_state=12, model=MODEL, networks=("all",), state_mean=0.0, state_std=1.0, spread_scale=0.0)


def test_the_analyser_refuses_an_ensemble_of_another_size() -> None:
    obs = Observation(y=torch.zeros(8, dtype=torch.float64), operator=identity(8, 1.0))
    with pytest.raises(PriorMismatch, match="12 state variables"):
        DiffusionAnalyser(_prior(), SAMPLER, torch.Generator())(torch.randn(4, 8, dtype=torch.float64), obs, None, 0)


def test_training_is_reproducible_and_lowers_the_loss() -> None:
    g = torch.Generator().manual_seed(0)
    mean = 2.0 + 3.0 * torch.randn(600, 12, generator=g, dtype=torch.float64)
    spread = 0.2 + 0.1 * torch.rand(600, 12, generator=g, dtype=torch.float64)
    truth = mean + spread * torch.randn(600, 12, generator=g, dtype=torch.float64)
    config = DiffusionTrainConfig(steps=120, batch_size=64, channels=8, layers=2, kernel=3)

    def train() -> tuple[ForecastErrorPrior, dict]:
        result = train_error_prior(mean, spread, truth, model=MODEL, networks=("all",), config=config)
        return result.prior, result.record

    (a, record), (b, _) = train(), train()
    for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0)
    assert record["loss_last_100"] < record["loss_first_100"]
    assert record["samples"] == {"train": 540, "validation": 60}
    assert a.spec.spread_scale == pytest.approx(float((truth - mean)[:540].pow(2).mean().sqrt()))
    with pytest.raises(ValueError, match="fewer than batch_size"):
        train_error_prior(mean[:50], spread[:50], truth[:50], model=MODEL, networks=("all",), config=config)
