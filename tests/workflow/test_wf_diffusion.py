"""Lorenz-96 twins of the diffusion-filter comparison: networks, truth, the LETKF run and the training pairs."""

from __future__ import annotations

import math

import pytest
import torch

from dacast.obs import ArctanObs, IndexObs
from dacast.workflow.diffusion import NETWORKS, Lorenz96Twin, Network, run_filter, training_pairs

TWIN = Lorenz96Twin(n_state=40, members=10)


def test_networks_build_their_operators() -> None:
    x = torch.linspace(-8, 8, 40, dtype=torch.float64)[None]
    all_ = NETWORKS["all"].operator(40)
    assert isinstance(all_, IndexObs) and torch.equal(all_(x), x)
    sparse = NETWORKS["every4"].operator(40)
    assert torch.equal(sparse(x), x[:, ::4])
    arctan = NETWORKS["arctan"].operator(40)
    assert isinstance(arctan, ArctanObs)
    torch.testing.assert_close(arctan(x), torch.atan(x))
    assert float(arctan.error_std[0]) == pytest.approx(0.05)
    with pytest.raises(ValueError, match="kind"):
        Network(name="bad", kind="square")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="k must be"):
        Network(name="bad", kind="every_kth", k=0)


def test_truth_and_observations_are_a_function_of_the_seed() -> None:
    network = NETWORKS["every4"]
    truth, y, ens = TWIN.truth_and_obs(network, seed=3, cycles=20)
    assert truth.shape == (20, 40) and y.shape == (20, 10) and ens.shape == (10, 40)
    again = TWIN.truth_and_obs(network, seed=3, cycles=20)
    for a, b in zip((truth, y, ens), again, strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(TWIN.truth_and_obs(network, seed=4, cycles=20)[0], truth)
    # observation errors have the network's standard deviation
    assert 0.7 < float((y - truth[:, ::4]).std()) < 1.3


def test_the_letkf_run_tracks_the_truth_and_scores_it() -> None:
    network = NETWORKS["all"]
    truth, y, ens = TWIN.truth_and_obs(network, seed=1, cycles=200)
    stats = run_filter(TWIN, network, TWIN.letkf(network), truth, y, ens, skip=50)
    assert stats.diverged_cycle == -1
    summary = stats.summary(50)
    assert summary["rmse"] < 0.35 and 0.6 < summary["spread_ratio"] < 1.6
    assert 0 < summary["crps"] < summary["rmse"]
    assert int(stats.rank_counts.sum()) == 150 * 40 and stats.rank_counts.shape == (11,)


def test_a_diverging_run_is_flagged_and_its_later_scores_are_nan() -> None:
    network = NETWORKS["all"]
    truth, y, ens = TWIN.truth_and_obs(network, seed=1, cycles=30)

    def far_away(prior, obs, hx, cycle):  # an "analysis" that throws the ensemble away from the truth
        from dacast.da import Analysis

        return Analysis.of(prior + 10.0, obs.y - obs.operator(prior).mean(0))

    stats = run_filter(TWIN, network, far_away, truth, y, ens)
    assert stats.diverged_cycle == 0 and "exceeds" in stats.reason
    assert all(math.isnan(v) for v in stats.rmse.tolist())


def test_training_pairs_come_from_every_network_and_run() -> None:
    twin = Lorenz96Twin(n_state=40, members=8)
    mean, spread, truth = training_pairs(twin, (NETWORKS["all"], NETWORKS["every4"]), runs=2, cycles=30, seed=7)
    assert mean.shape == spread.shape == truth.shape == (2 * 2 * 30, 40)
    assert bool(torch.isfinite(mean).all()) and bool((spread > 0).all())
    # the runs differ (own truths), and the forecasts are close to their truths
    assert not torch.equal(truth[:30], truth[30:60])
    assert float((mean - truth).pow(2).mean().sqrt()) < 1.0


def test_training_pairs_take_any_analyser() -> None:
    """The pairs of a retraining come from the diffusion filter itself: any analyser, built per network and seed."""
    from dacast.da import Analysis

    built: list[tuple[str, int]] = []

    def free_run(network: Network, seed: int):
        built.append((network.name, seed))
        return lambda prior, obs, hx, cycle: Analysis.of(prior.clone(), obs.y - obs.operator(prior).mean(0))

    twin = Lorenz96Twin(n_state=40, members=4)
    mean, _, truth = training_pairs(twin, (NETWORKS["all"],), runs=2, cycles=10, seed=7, analyser=free_run)
    assert mean.shape == truth.shape == (20, 40)
    assert [name for name, _ in built] == ["all", "all"] and built[0][1] != built[1][1]
