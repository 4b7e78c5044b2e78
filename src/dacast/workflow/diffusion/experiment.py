"""Lorenz-96 twins for the diffusion filter: truth, observation networks, LETKF and diffusion runs, training pairs.

Both filters run through the one cycle engine (`dacast.workflow.cycle.cycle`) on the
same truth, observations and initial ensemble (a function of the seed), so their
scores differ only by the analysis. The LETKF is DAPPER's ``sakov2008`` set-up
(Gaspari-Cohn localization as DAPPER's ``loc_rad=4``, multiplicative inflation); the diffusion
filter is `dacast.ml.diffusion_filter.DiffusionAnalyser` with a trained prior.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from dacast.da import LETKFConfig, Localization
from dacast.geometry import pairwise_distances
from dacast.models import Lorenz96, advance
from dacast.obs import ArctanObs, ObsOperator, every_kth, identity, observe
from dacast.verify import crps_ensemble
from dacast.workflow.cycle import Analyser, FilterAnalyser, array_observations, cycle, model_forecast
from dacast.workflow.runtime import progress as progress_bar
from dacast.workflow.runtime import spawn_seeds
from dacast.workflow.twin.presets import L96_LOCALIZATION


@dataclass(frozen=True, kw_only=True)
class Network:
    """An observation network of Lorenz-96.

    Attributes:
        name: its label in tables and checkpoints.
        kind: ``identity`` (all variables), ``every_kth`` (variables ``0, k, 2k, ...``) or ``arctan``
            (``arctan(x)`` of every ``k``-th variable, radians).
        k: the spacing (``every_kth``, ``arctan``).
        error_std: observation-error standard deviation (observation units).
        inflation: the LETKF's multiplicative inflation for this network.
    """

    name: str
    kind: Literal["identity", "every_kth", "arctan"] = "identity"
    k: int = 1
    error_std: float = 1.0
    inflation: float = 1.04

    def __post_init__(self) -> None:
        if self.kind not in ("identity", "every_kth", "arctan"):
            raise ValueError(f"network kind must be identity, every_kth or arctan, got {self.kind!r}")
        if self.k < 1 or not self.error_std > 0 or not self.inflation >= 1:
            raise ValueError("network k must be >= 1, error_std > 0 and inflation >= 1")

    def operator(self, n_state: int) -> ObsOperator:
        """The observation operator on states ``(*batch, n_state)``."""
        if self.kind == "identity":
            return identity(n_state, self.error_std)
        base = every_kth(n_state, self.k, self.error_std)
        return base if self.kind == "every_kth" else ArctanObs(base)


#: DAPPER's sakov2008 network, a sparse one and the nonlinear one of score-filter studies.
NETWORKS = {
    "all": Network(name="all"),
    "every4": Network(name="every4", kind="every_kth", k=4, inflation=1.04),
    "arctan": Network(name="arctan", kind="arctan", k=1, error_std=0.05, inflation=1.04),
}


@dataclass(frozen=True, kw_only=True)
class Lorenz96Twin:
    """The model and ensemble of the comparison (DAPPER's ``sakov2008``: 40 variables, F = 8, dt = 0.05).

    Attributes:
        n_state, forcing, dt: the model; one analysis every ``dt``.
        members: ensemble size of both filters.
        initial_std: the initial ensemble is the truth plus ``N(0, initial_std**2)`` (DAPPER's ``X0``: variance 0.001).
        burn_in_steps: model steps from the default initial state before the truth starts.
        localization: the LETKF's (DAPPER's ``loc_rad=4``, as the twin presets).
    """

    n_state: int = 40
    forcing: float = 8.0
    dt: float = 0.05
    members: int = 20
    initial_std: float = 0.001**0.5
    burn_in_steps: int = 400
    localization: Localization = L96_LOCALIZATION

    @property
    def model(self) -> Lorenz96:
        """The Lorenz-96 model."""
        return Lorenz96(n_state=self.n_state, forcing=self.forcing)

    def model_dict(self) -> dict[str, Any]:
        """What a prior trained on these forecasts is made for (compared when it is loaded)."""
        return {"name": "lorenz96", "forcing": self.forcing, "dt": self.dt, "steps_per_cycle": 1}

    def letkf(self, network: Network) -> FilterAnalyser:
        """The LETKF of ``network`` (localization as DAPPER's ``loc_rad``)."""
        config = LETKFConfig(localization=self.localization, inflation=network.inflation)
        return FilterAnalyser(config, grid=self.model.grid())

    def taper(self) -> Tensor:
        """The LETKF's localization weights between state variables ``(n, n)`` (ring distance), float64."""
        grid = self.model.grid()
        return self.localization.weights(pairwise_distances(grid.coords, grid.coords, grid.period))

    def truth_and_obs(self, network: Network, seed: int, cycles: int) -> tuple[Tensor, Tensor, Tensor]:
        """Truth ``(cycles, n)``, observations ``(cycles, p)`` and initial ensemble ``(members, n)``, CPU float64."""
        g_truth, g_obs, g_ens = (
            torch.Generator().manual_seed(s & 0x7FFF_FFFF_FFFF_FFFF) for s in spawn_seeds(seed, n=3)
        )
        model = self.model
        x = model.default_initial_state() + torch.randn(self.n_state, generator=g_truth, dtype=torch.float64)
        x = advance(model, x, self.burn_in_steps, self.dt)
        truth = torch.empty((cycles, self.n_state), dtype=torch.float64)
        for c in range(cycles):
            x = advance(model, x, 1, self.dt)
            truth[c] = x
        y = observe(truth, network.operator(self.n_state), g_obs)
        noise = torch.randn((self.members, self.n_state), generator=g_ens, dtype=torch.float64)
        return truth, y, truth[0] + self.initial_std * noise


@dataclass(frozen=True)
class RunStats:
    """Per-cycle scores of one filter run (NaN after a divergence).

    Attributes:
        rmse, spread, crps: analysis RMSE, RMS spread and CRPS (mean over variables), ``(cycles,)``.
        rank_counts: rank of the truth among the members, counted over all variables and the cycles after
            ``skip``, ``(members + 1,)``.
        forecast_mean, forecast_spread: ``(cycles, n)`` (the training pairs of a prior, with the truth).
        analysis_seconds: wall time of the analyses (s).
        diverged_cycle: the cycle the run stopped at (-1: none) and ``reason``.
    """

    rmse: Tensor
    spread: Tensor
    crps: Tensor
    rank_counts: Tensor
    forecast_mean: Tensor
    forecast_spread: Tensor
    analysis_seconds: float
    diverged_cycle: int
    reason: str

    def summary(self, skip: int) -> dict[str, float]:
        """Means over the cycles after ``skip``: RMSE, spread, spread/RMSE, CRPS, seconds per analysis."""
        rm, sp, cr = (float(v[skip:].mean()) for v in (self.rmse, self.spread, self.crps))
        n = int(torch.isfinite(self.rmse).sum())
        return {"rmse": rm, "spread": sp, "spread_ratio": sp / rm, "crps": cr,
                "seconds_per_analysis": self.analysis_seconds / max(n, 1)}  # fmt: skip


#: A run whose analysis RMSE exceeds this (Lorenz-96 climatological std is about 3.6) has diverged.
DIVERGED_RMSE = 6.0


def run_filter(
    twin: Lorenz96Twin,
    network: Network,
    analyser: Analyser,
    truth: Tensor,
    y: Tensor,
    ensemble: Tensor,
    *,
    skip: int = 0,
    label: str = "cycling",
    progress: bool = False,
) -> RunStats:
    """Cycle ``analyser`` over the observations ``y`` ``(cycles, p)`` from ``ensemble``; score it against ``truth``."""
    cycles, n = truth.shape
    k = ensemble.shape[0]
    nan = torch.full((cycles,), math.nan, dtype=torch.float64)
    rmse, spread, crps = nan.clone(), nan.clone(), nan.clone()
    f_mean = torch.full((cycles, n), math.nan, dtype=torch.float64)
    f_spread = f_mean.clone()
    ranks = torch.zeros(k + 1, dtype=torch.float64)
    seconds, diverged, reason = 0.0, -1, ""
    operator = network.operator(n)
    forecast = model_forecast(twin.model, 1, twin.dt)
    stream = array_observations(y, operator)
    steps = cycle(ensemble, forecast=forecast, observations=stream, analyse=analyser, cycles=range(cycles))
    with progress_bar(label, cycles, enabled=progress) as update:
        for step in steps:
            c = step.cycle
            f_mean[c], f_spread[c] = step.prior.mean(0), step.prior.std(0)
            if step.analysis is None:
                diverged, reason = c, step.failure
                break
            seconds += step.seconds["analysis"]
            ens = step.analysis.ensemble
            rmse[c] = (step.analysis.mean - truth[c]).pow(2).mean().sqrt()
            spread[c] = step.analysis.spread.pow(2).mean().sqrt()
            crps[c] = crps_ensemble(ens, truth[c])
            if c >= skip:
                ranks += torch.bincount((ens < truth[c]).sum(0), minlength=k + 1).double()
            update(c + 1, f"rmse.a {float(rmse[c]):.3g}")
            if not math.isfinite(float(rmse[c])) or float(rmse[c]) > DIVERGED_RMSE:
                diverged, reason = c, f"analysis RMSE {float(rmse[c]):.3g} exceeds {DIVERGED_RMSE}"
                break
            if float(spread[c]) < 1e-3 * float(rmse[c]):
                diverged, reason = c, f"the ensemble collapsed (spread {float(spread[c]):.2g})"
                break
    if diverged >= 0:
        for v in (rmse, spread, crps):
            v[diverged:] = math.nan
    return RunStats(
        rmse=rmse,
        spread=spread,
        crps=crps,
        rank_counts=ranks,
        forecast_mean=f_mean,
        forecast_spread=f_spread,
        analysis_seconds=seconds,
        diverged_cycle=diverged,
        reason=reason,
    )


def training_pairs(
    twin: Lorenz96Twin,
    networks: tuple[Network, ...],
    *,
    runs: int,
    cycles: int,
    seed: int,
    analyser: Callable[[Network, int], Analyser] | None = None,
    label: str = "LETKF",
    progress: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """Forecast means, spreads and truths ``(samples, n)`` of filter runs, for a prior to learn.

    ``runs`` runs of ``cycles`` cycles per network, each from its own truth (seeds
    ``(seed, network index, run)``, never those of a verification run), all cycles kept.
    ``analyser(network, run seed)`` builds the filter (default: the network's LETKF); the
    diffusion filter itself, for a prior retrained on its own forecasts.
    """
    out: list[tuple[Tensor, Tensor, Tensor]] = []
    for r in range(runs):  # runs outermost: a trainer's held-out tail holds every network
        for i, network in enumerate(networks):
            s = spawn_seeds(seed, i, r)[0]
            truth, y, ens = twin.truth_and_obs(network, s, cycles)
            filt = twin.letkf(network) if analyser is None else analyser(network, s)
            stats = run_filter(twin, network, filt, truth, y, ens, label=f"{label} {network.name} {r + 1}/{runs}",
                               progress=progress)  # fmt: skip
            ok = torch.isfinite(stats.forecast_mean).all(1)
            out.append((stats.forecast_mean[ok], stats.forecast_spread[ok], truth[ok]))
    mean, spread, truth = (torch.cat(parts) for parts in zip(*out, strict=True))
    return mean, spread, truth


__all__ = ["DIVERGED_RMSE", "NETWORKS", "Lorenz96Twin", "Network", "RunStats", "run_filter", "training_pairs"]
