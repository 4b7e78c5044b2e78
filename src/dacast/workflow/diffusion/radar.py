"""The radar twin for the latent diffusion filter: training samples from LETKF runs, and scored runs of any analyser.

The twin is the Big Data Assimilation one (`dacast.workflow.bda`): the Würsch-Craig model
on a periodic grid, radar volumes (reflectivity and Doppler velocity) every 30 s. Both
filters run through `dacast.workflow.bda.run.run_cycles` on the same truth, radar
volumes and initial ensemble (functions of the config's seed), so their scores differ
only by the analysis.

`collect_samples` runs the gridded LETKF on training seeds and keeps, per cycle, the
truth, the forecast ensemble mean and a few forecast members: what the autoencoder and
the latent error prior learn from. `score_run` runs a filter on a verification seed and
returns per-cycle rain RMSE, spread and the threat score at 30 dBZ of the analysis mean.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from torch import Tensor

from dacast.ml.diffusion import NoiseSchedule
from dacast.ml.diffusion_sampling import SamplerConfig
from dacast.ml.diffusion_train import DiffusionTrainConfig
from dacast.ml.latent import AutoencoderTrainConfig, train_autoencoder
from dacast.ml.latent_filter import LatentFilterModel, train_latent_prior
from dacast.verify import contingency, csi, rmse
from dacast.workflow.bda.config import BDAConfig
from dacast.workflow.bda.forecast import THRESHOLD_DBZ, VARS, CycleState, state_dbz, threat_scores
from dacast.workflow.bda.run import run_cycles
from dacast.workflow.cycle import Analyser, GriddedAnalyser, Observation
from dacast.workflow.runtime import progress as progress_bar

RAIN = VARS.index("r")
#: A run whose rain spread falls below this fraction of its rain RMSE has collapsed (as `run_filter`'s check).
COLLAPSE = 1e-3


@dataclass(frozen=True)
class TwinSamples:
    """Per-cycle samples of LETKF runs, float32 CPU.

    Attributes:
        truth: ``(samples, 4, ny, nx)``.
        mean: forecast ensemble means, ``(samples, 4, ny, nx)``.
        members: the first forecast members, ``(samples, m, 4, ny, nx)``.
    """

    truth: Tensor
    mean: Tensor
    members: Tensor


class _Recorder:
    """Wraps an analyser; keeps the forecast mean and first members it is given."""

    def __init__(self, inner: Analyser, keep: int) -> None:
        self.inner, self.keep = inner, keep
        self.means: list[Tensor] = []
        self.members: list[Tensor] = []

    def __call__(self, prior: Tensor, obs: Observation, hx: Tensor | None, cycle: int):
        self.means.append(prior.mean(0).float().cpu())
        self.members.append(prior[: self.keep].float().cpu())
        return self.inner(prior, obs, hx, cycle)


def collect_samples(
    config: BDAConfig, seeds: list[int], *, keep_members: int = 8, progress: bool = False
) -> TwinSamples:
    """LETKF runs of ``config`` for each seed; every analysed cycle becomes one sample (see `TwinSamples`).

    Only the last cycle runs an extended forecast and the free run has 2 members (neither is kept).
    """
    truths, means, members = [], [], []
    with progress_bar("LETKF training runs", len(seeds), enabled=progress) as update:
        for i, seed in enumerate(seeds):
            cfg = replace(config, seed=seed, forecast_every=0, free_run_members=2)
            rec = _Recorder(GriddedAnalyser(cfg.letkf, cfg.dx_km), keep_members)
            cycle_truths: list[Tensor] = []
            run_cycles(cfg, analyser=rec, on_cycle=lambda s, out=cycle_truths: out.append(s.truth[0].float().cpu()))
            n = min(len(cycle_truths), len(rec.means))
            truths += cycle_truths[:n]
            means += rec.means[:n]
            members += rec.members[:n]
            update(i + 1)
    return TwinSamples(truth=torch.stack(truths), mean=torch.stack(means), members=torch.stack(members))


@dataclass(frozen=True)
class TwinScores:
    """Per-cycle scores of one filter run (NaN after a divergence).

    Attributes:
        rain_rmse, rain_spread: analysis RMSE and spread of the rain ``r`` (dimensionless), ``(cycles,)``.
        h_rmse: analysis RMSE of the fluid height (m), ``(cycles,)``.
        ts30: threat score at `THRESHOLD_DBZ` of the analysis mean's reflectivity, ``(cycles,)``.
        forecast_ts30: threat scores of the extended forecasts by lead (label -> value) from `threat_scores`.
        analysis_seconds: mean wall time of one analysis (s).
        diverged_cycle: 1-based cycle the run stopped at (0: none), and ``reason``.
    """

    rain_rmse: Tensor
    rain_spread: Tensor
    h_rmse: Tensor
    ts30: Tensor
    forecast_ts30: dict[str, list[float]]
    analysis_seconds: float
    diverged_cycle: int
    reason: str

    def summary(self, skip: int) -> dict[str, float]:
        """Means over cycles after ``skip``: rain RMSE, spread/RMSE, h RMSE, TS 30 dBZ, seconds per analysis."""
        rr, sp, hr = (float(v[skip:].mean()) for v in (self.rain_rmse, self.rain_spread, self.h_rmse))
        ratio = sp / rr if rr > 0 else math.nan  # no rain anywhere: no ratio
        return {"rain_rmse": rr, "rain_spread_ratio": ratio, "h_rmse": hr, "ts30": float(self.ts30[skip:].mean()),
                "seconds_per_analysis": self.analysis_seconds}  # fmt: skip


def analysis_scores(config: BDAConfig, state: CycleState) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Rain RMSE, rain spread, h RMSE and TS at 30 dBZ per completed cycle of ``state``, each ``(cycles,)``."""
    out = torch.full((4, config.cycles), math.nan, dtype=torch.float64)
    for c, (truth, mean, spread) in enumerate(state.fields):
        out[0, c] = rmse(mean[RAIN], truth[RAIN])
        out[1, c] = spread[RAIN].pow(2).mean().sqrt()
        out[2, c] = rmse(mean[VARS.index("h")], truth[VARS.index("h")])
        table = contingency(state_dbz(config, mean), state_dbz(config, truth), THRESHOLD_DBZ)
        out[3, c] = csi(table)
    return out[0], out[1], out[2], out[3]


def score_run(config: BDAConfig, analyser: Analyser | None = None) -> TwinScores:
    """Run the twin of ``config`` with ``analyser`` (None: its gridded LETKF) and score every cycle."""
    state = run_cycles(config, analyser=analyser)
    rain_rmse, rain_spread, h_rmse, ts30 = analysis_scores(config, state)
    seconds = [r["seconds_letkf"] for r in state.records if not r["outage"]]
    diverged, reason = state.diverged_cycle, state.diverged_reason
    collapsed = (rain_spread < COLLAPSE * rain_rmse).nonzero().flatten()
    if not diverged and collapsed.numel():  # recorded like a diverged filter: no scores from that cycle on
        c = int(collapsed[0])
        spread, error = float(rain_spread[c]), float(rain_rmse[c])
        diverged, reason = c + 1, f"the ensemble collapsed (rain spread {spread:.2g} at RMSE {error:.2g})"
        for v in (rain_rmse, rain_spread, h_rmse, ts30):
            v[c:] = math.nan
    return TwinScores(
        rain_rmse=rain_rmse,
        rain_spread=rain_spread,
        h_rmse=h_rmse,
        ts30=ts30,
        forecast_ts30=threat_scores(state.forecasts) if state.forecasts else {},
        analysis_seconds=sum(seconds) / max(len(seconds), 1),
        diverged_cycle=diverged,
        reason=reason,
    )


def model_dict(config: BDAConfig) -> dict[str, Any]:
    """What a latent filter trained on this twin's forecasts is made for (compared when it is loaded)."""
    return {"name": "wursch_craig", "cycle_seconds": config.cycle_seconds,
            **{k: v for k, v in asdict(config.model).items() if k not in ("ny", "nx")}}  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class LatentSetup:
    """How the latent diffusion filter is built and run on the radar twin.

    Attributes:
        autoencoder: its training (latent channels, width, epochs, ...).
        prior: the latent error prior's training (steps, network size, ...).
        sampler: steps, noise levels and the likelihood (isotropic, matrix-free CG for radar volumes).
        inflation: multiplies the latent error scale.
        members_per_sample: forecast members per training cycle the autoencoder also learns from.
    """

    autoencoder: AutoencoderTrainConfig = AutoencoderTrainConfig(log_channels=(), levels=1, width=32, epochs=15,
                                                                 patience=4)  # fmt: skip
    prior: DiffusionTrainConfig = DiffusionTrainConfig(steps=1500, batch_size=16, channels=32, layers=4, kernel=3,
                                                       schedule=NoiseSchedule(sigma_max=20.0))  # fmt: skip
    sampler: SamplerConfig = SamplerConfig(steps=4, covariance="isotropic", gamma=3.0, cg_iterations=2,
                                           guidance="mean", schedule=NoiseSchedule(sigma_max=10.0))  # fmt: skip
    inflation: float = 1.0
    members_per_sample: int = 2


def build_latent_filter(
    samples: TwinSamples, setup: LatentSetup, model: dict[str, Any], *, progress: bool = False
) -> tuple[LatentFilterModel, dict[str, Any]]:
    """Train the autoencoder (truths, forecast means and members) and then the latent prior; with their records."""
    m = setup.members_per_sample  # sample-major, so the held-out tail is the last run's cycles
    states = torch.cat((samples.truth[:, None], samples.mean[:, None], samples.members[:, :m]), 1).flatten(0, 1)
    ae, ae_record = train_autoencoder(states, setup.autoencoder, progress=progress)
    filt, prior_record = train_latent_prior(ae, samples.mean, samples.truth, model=model, config=setup.prior,
                                            progress=progress)  # fmt: skip
    return filt, {"autoencoder": ae_record, "prior": prior_record}


__all__ = ["LatentSetup", "TwinSamples", "TwinScores", "analysis_scores", "build_latent_filter", "collect_samples",
           "model_dict", "score_run"]  # fmt: skip
