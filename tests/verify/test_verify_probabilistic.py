"""Ensemble scores: CRPS against pysteps, the fair CRPS, exceedance probabilities, spread–skill, reliability."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dacast.verify import crps_ensemble, exceedance_probability, mae, reliability, spread_skill

# pysteps 1.21.5, pysteps.verification.probscores.CRPS(ens, obs) with
#   rng = np.random.default_rng(0); ens = rng.gamma(0.5, 2.0, (5, 30, 40)); obs = rng.gamma(0.5, 2.0, (30, 40))
PYSTEPS_CRPS = 0.7414394962912378


def _gamma_case() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.gamma(0.5, 2.0, (5, 30, 40)), rng.gamma(0.5, 2.0, (30, 40))


def test_crps_equals_pysteps() -> None:
    ens, obs = _gamma_case()
    assert float(crps_ensemble(ens, obs)) == pytest.approx(PYSTEPS_CRPS, rel=1e-12)


def test_crps_by_definition_fair_and_deterministic() -> None:
    ens, obs = _gamma_case()
    m = ens.shape[0]
    skill = np.abs(ens - obs).mean(0)
    pairs = np.abs(ens[:, None] - ens[None]).sum((0, 1))
    assert float(crps_ensemble(ens, obs)) == pytest.approx((skill - pairs / (2 * m * m)).mean(), rel=1e-12)
    fair = (skill - pairs / (2 * m * (m - 1))).mean()
    assert float(crps_ensemble(ens, obs, fair=True)) == pytest.approx(fair, rel=1e-12)
    assert float(crps_ensemble(ens[:1], obs)) == pytest.approx(float(mae(ens[0], obs)), rel=1e-12)
    assert float(crps_ensemble(np.stack([obs, obs]), obs)) == 0.0
    with pytest.raises(ValueError, match="at least 2"):
        crps_ensemble(ens[:1], obs, fair=True)
    with pytest.raises(ValueError, match="must be"):
        crps_ensemble(ens, obs[:, :3])


def test_crps_masks_and_nan_observations() -> None:
    ens, obs = _gamma_case()
    obs = obs.copy()
    obs[:10] = np.nan
    mask = np.ones_like(obs, dtype=bool)
    mask[:, :5] = False
    got = float(crps_ensemble(ens, obs, mask))
    assert got == pytest.approx(float(crps_ensemble(ens[:, 10:, 5:], obs[10:, 5:])), rel=1e-12)
    assert np.isnan(float(crps_ensemble(ens, np.full_like(obs, np.nan))))


def test_exceedance_probability_counts_members_above() -> None:
    ens = np.array([[0.0, 2.0], [1.0, 3.0], [5.0, 1.0], [1.0, 0.5]])  # (4 members, 2 points)
    assert torch.equal(exceedance_probability(ens, 1.0), torch.tensor([0.25, 0.5], dtype=torch.float64))


def test_spread_skill_is_one_for_a_calibrated_ensemble_and_low_for_a_narrow_one() -> None:
    rng = np.random.default_rng(1)
    centre = rng.normal(size=(200, 200))
    members = centre + rng.normal(size=(10, 200, 200))
    truth = centre + rng.normal(size=(200, 200))  # statistically one more member
    spread, rmse, ratio = spread_skill(members, truth)
    assert ratio == pytest.approx(1.0, abs=0.02) and spread > 0 and rmse > 0
    narrow = centre + 0.3 * (members - centre)
    assert spread_skill(narrow, truth)[2] < 0.5
    with pytest.raises(ValueError, match="at least 2"):
        spread_skill(members[:1], truth)


def test_reliability_of_a_reliable_forecast_follows_the_diagonal() -> None:
    rng = np.random.default_rng(2)
    prob = rng.uniform(size=200_000)
    event = rng.uniform(size=prob.shape) < prob  # events happen with the forecast probability
    obs = np.where(event, 2.0, 0.0)
    mean_p, freq, count = reliability(prob, obs, 1.0, n_bins=5)
    assert count.sum() == prob.size and torch.all(count > 30_000)
    torch.testing.assert_close(freq, mean_p, atol=0.01, rtol=0)
    _, freq_masked, count_masked = reliability(prob, obs, 1.0, prob < 0.4, n_bins=5)
    assert count_masked[2:].sum() == 0 and torch.isnan(freq_masked[2:]).all()
