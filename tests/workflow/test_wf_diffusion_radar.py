"""The radar twin of the latent diffusion filter: training samples, the filter in the BDA cycle, scores."""

from __future__ import annotations

import math
from dataclasses import replace

import torch

from dacast.da import Analysis, AnalysisFailed
from dacast.ml.diffusion import NoiseSchedule
from dacast.ml.diffusion_sampling import SamplerConfig
from dacast.ml.diffusion_train import DiffusionTrainConfig
from dacast.ml.latent import AutoencoderTrainConfig
from dacast.ml.latent_filter import LatentDiffusionAnalyser
from dacast.workflow.bda.config import BDAConfig
from dacast.workflow.cycle import GriddedAnalyser
from dacast.workflow.diffusion.radar import LatentSetup, build_latent_filter, collect_samples, model_dict, score_run

TINY = BDAConfig(members=6, grid=32, cycles=3, spinup_minutes=10.0, ensemble_pool=4, ensemble_lag_minutes=1.0,
                 forecast_every=0, forecast_minutes=2.0, device="cpu", seed=3)  # fmt: skip
SETUP = LatentSetup(
    autoencoder=AutoencoderTrainConfig(
        log_channels=(), levels=1, latent_channels=2, width=8, epochs=20, batch_size=4, lr=1e-2
    ),
    prior=DiffusionTrainConfig(steps=10, batch_size=2, channels=8, layers=1, kernel=3, val_fraction=0.2),
    sampler=SamplerConfig(steps=2, covariance="isotropic", cg_iterations=2, schedule=NoiseSchedule(sigma_max=5.0)),
)


def test_samples_filter_and_scores_end_to_end() -> None:
    samples = collect_samples(TINY, [11], keep_members=3)
    assert samples.truth.shape == (3, 4, 32, 32) and samples.members.shape == (3, 3, 4, 32, 32)
    assert samples.mean.shape == samples.truth.shape and bool(torch.isfinite(samples.mean).all())
    filt, record = build_latent_filter(samples, SETUP, model_dict(TINY))
    assert set(record) == {"autoencoder", "prior"} and filt.spec.grid == (32, 32)

    letkf = score_run(TINY)
    assert letkf.diverged_cycle == 0 and bool(torch.isfinite(letkf.rain_rmse).all())
    assert letkf.rain_rmse.shape == (3,) and 0 <= float(letkf.ts30.nan_to_num(0).min()) <= 1

    def run(seed: int):
        return score_run(TINY, LatentDiffusionAnalyser(filt, SETUP.sampler, torch.Generator().manual_seed(seed)))

    first, again = run(0), run(0)
    assert first.diverged_cycle == 0 and bool(torch.isfinite(first.rain_rmse).all())
    assert torch.equal(first.rain_rmse, again.rain_rmse)
    assert first.analysis_seconds > 0 and first.summary(1)["rain_spread_ratio"] > 0.01  # about 0.3: not collapsed


def test_a_failing_analysis_stops_the_run_and_is_recorded() -> None:
    def failing(prior, obs, hx, cycle):
        if cycle == 1:
            raise AnalysisFailed("the sampler returned non-finite values (members [0])")
        return GriddedAnalyser(TINY.letkf, TINY.dx_km)(prior, obs, hx, cycle)

    scores = score_run(replace(TINY, cycles=3), failing)
    assert scores.diverged_cycle == 2 and "non-finite" in scores.reason
    assert math.isfinite(float(scores.rain_rmse[0])) and math.isnan(float(scores.rain_rmse[1]))


def test_a_collapsed_ensemble_is_recorded_like_a_divergence() -> None:
    def collapsing(prior, obs, hx, cycle):
        mean = prior.mean(0, keepdim=True).expand_as(prior).clone()
        return Analysis.of(mean, obs.y - obs.operator(prior.flatten(1)).mean(0))

    scores = score_run(replace(TINY, cycles=2), collapsing)
    assert scores.diverged_cycle == 1 and "collapsed" in scores.reason
    assert bool(torch.isnan(scores.rain_rmse).all())
