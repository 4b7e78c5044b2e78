"""The BDA twin's model runs: spun-up initial ensemble, member-chunk forecasts on Dask, 30-minute forecasts.

A free ensemble run from the same initial members (same noise, no DA) is the
reference every analysis must beat. The truth, the initial ensemble and all
noise are deterministic functions of ``config.seed``. With a ``client`` (a
``dask.distributed.Client``) the forecasts run as member chunks on the
cluster; the numbers equal the single-process run to float tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from dacast.models.wursch_craig import WurschCraig
from dacast.obs.radar import RadarOperator, radar_mask, reflectivity_dbz
from dacast.verify import contingency, pooled_csi
from dacast.verify.trajectory import COUNT_KEYS
from dacast.workflow.bda.config import BDAConfig
from dacast.workflow.runtime import spawn_seeds, torch_generator, tune_malloc

VARS = ("u", "v", "h", "r")
THRESHOLD_DBZ = 30.0
LEAD_STEP_SECONDS = 60.0


@dataclass(frozen=True)
class Seeds:
    """Independent integer seeds spawned from the master seed."""

    truth: int
    pool: int
    obs: int

    @staticmethod
    def of(seed: int) -> Seeds:
        """Spawn ``(truth, pool, obs)`` from ``seed`` (`dacast.workflow.runtime.spawn_seeds`)."""
        truth, pool, obs = spawn_seeds(seed, n=3, bits=32)
        return Seeds(truth=truth, pool=pool, obs=obs)


def obs_generator(seed: int, cycle: int) -> torch.Generator:
    """The observation-error generator of ``cycle``: independent of every other cycle (restart-safe)."""
    return torch_generator(seed, cycle)


@dataclass
class CycleState:
    """Everything needed to continue a run: the states after ``cycle`` cycles and the diagnostics so far.

    Attributes:
        cycle: number of completed cycles.
        truth: shape ``(1, 4, ny, nx)``.
        ensemble: analysis ensemble, ``(k, 4, ny, nx)``.
        free: free-run ensemble, ``(m, 4, ny, nx)``.
        records: one dict of per-cycle diagnostics per completed cycle.
        forecasts: one dict of extended-forecast scores per forecast made.
        fields: per completed cycle, ``(truth, analysis mean, analysis spread)`` each ``(4, ny, nx)`` float32 CPU.
        diverged_cycle: the cycle (1-based) whose analysis failed or was not finite; 0: none. The run stops
            there: that cycle is not among ``records``.
        diverged_reason: why, one line.
    """

    cycle: int
    truth: Tensor
    ensemble: Tensor
    free: Tensor
    records: list[dict] = field(default_factory=list)
    forecasts: list[dict] = field(default_factory=list)
    fields: list[tuple[Tensor, Tensor, Tensor]] = field(default_factory=list)
    diverged_cycle: int = 0
    diverged_reason: str = ""


def torch_dtype(config: BDAConfig) -> torch.dtype:
    """``torch.float32`` or ``torch.float64``."""
    return torch.float32 if config.dtype == "float32" else torch.float64


class EnsembleModel(Protocol):
    """What runs the ensemble: the Würsch-Craig model, an imperfect copy of it, or a learned surrogate."""

    def forecast(
        self, x: Tensor, seconds: float, *, seed: int | None, start_step: int = 0, member_offset: int = 0
    ) -> Tensor:
        """``x`` ``(k, 4, ny, nx)`` after ``seconds``, with the triggering noise of ``(seed, member, step)``."""
        ...


class Forecaster:
    """Runs ensemble forecasts in one process or (the physics model) as member chunks on a Dask cluster.

    Member ``i`` of a forecast always gets the noise stream of global member
    ``offset + i``, so chunking never changes the result.
    """

    def __init__(self, model: EnsembleModel, client: object | None = None, chunks: int = 0) -> None:
        self.model = model
        self.client = client
        self.chunks = chunks

    def __call__(self, x: Tensor, seconds: float, *, seed: int | None, start_step: int, offset: int = 0) -> Tensor:
        """``x`` ``(k, 4, ny, nx)`` after ``seconds`` of model time."""
        if self.client is None or x.shape[0] < 2 or not isinstance(self.model, WurschCraig):
            return self.model.forecast(x, seconds, seed=seed, start_step=start_step, member_offset=offset)
        n_chunks = max(1, min(self.chunks or _n_workers(self.client), x.shape[0]))
        bounds = np.linspace(0, x.shape[0], n_chunks + 1).round().astype(int)
        device = x.device
        futures = [
            self.client.submit(  # type: ignore[attr-defined]
                _forecast_chunk,
                self.model.config,
                x[a:b].cpu(),
                seconds,
                seed,
                start_step,
                offset + int(a),
                pure=False,
            )
            for a, b in zip(bounds[:-1], bounds[1:], strict=True)
            if b > a
        ]
        parts = self.client.gather(futures)  # type: ignore[attr-defined]
        return torch.cat(parts, 0).to(device)


def _forecast_chunk(
    config: object, x: Tensor, seconds: float, seed: int | None, start_step: int, offset: int
) -> Tensor:
    tune_malloc()  # the worker's allocator, as for tiles
    return WurschCraig(config).forecast(x, seconds, seed=seed, start_step=start_step, member_offset=offset)  # type: ignore[arg-type]


def _n_workers(client: object) -> int:
    info = client.scheduler_info()  # type: ignore[attr-defined]
    return max(1, len(info.get("workers", {})))


def initial_truth(config: BDAConfig, model: WurschCraig, device: torch.device) -> Tensor:
    """The spun-up truth ``(1, 4, ny, nx)`` valid before the first cycle (its own triggering noise)."""
    seeds = Seeds.of(config.seed)
    spin = config.spinup_minutes * 60.0
    truth = model.initial_state(1, seed=seeds.truth, dtype=torch_dtype(config), device=device)
    if spin <= 0:
        return truth
    return model.forecast(truth, spin, seed=seeds.truth, start_step=-round(spin / config.model.dt))


def initial_state(config: BDAConfig, model: WurschCraig, forecaster: Forecaster, device: torch.device) -> CycleState:
    """Spun-up truth and initial ensemble (time-lagged snapshots of ``ensemble_pool`` independent runs).

    Each pool run starts from the model's rest state with its own triggering
    noise, spins up for ``spinup_minutes``, then yields one member every
    ``ensemble_lag_minutes`` until ``members`` are collected. The truth is
    a separate run with its own noise: the ensemble knows where convection
    is only through the observations.
    """
    seeds = Seeds.of(config.seed)
    dtype = torch_dtype(config)
    spin = config.spinup_minutes * 60.0
    steps_spin = round(spin / config.model.dt)
    truth = initial_truth(config, model, device)
    pool_n = min(config.ensemble_pool, config.members)
    pool = model.initial_state(pool_n, seed=seeds.pool, dtype=dtype, device=device)
    step = -steps_spin - 10**7  # pool noise steps never meet the cycling steps
    pool = forecaster(pool, spin, seed=seeds.pool, start_step=step) if spin > 0 else pool
    step += steps_spin
    snaps = [pool]
    lag = config.ensemble_lag_minutes * 60.0
    while sum(s.shape[0] for s in snaps) < config.members:
        pool = forecaster(pool, lag, seed=seeds.pool, start_step=step)
        step += round(lag / config.model.dt)
        snaps.append(pool)
    ensemble = torch.cat(snaps, 0)[: config.members].contiguous()
    free = ensemble[: config.n_free_members].clone()
    return CycleState(cycle=0, truth=truth, ensemble=ensemble, free=free)


def observed_dbz_field(volume: tuple[Tensor, RadarOperator] | None, shape: tuple[int, int]) -> Tensor:
    """Reflectivity of a radar volume ``(y, operator)`` on the grid; NaN where none (or no volume): ``(ny, nx)`` dBZ."""
    out = torch.full(shape, float("nan"), dtype=torch.float64)
    if volume is None:
        return out
    y, op = volume
    sel = op.kind.cpu() == 0
    out.view(-1)[op.cell.cpu()[sel]] = y.cpu().double()[sel]
    return out


def extended_forecast(
    config: BDAConfig,
    model: WurschCraig,
    forecaster: Forecaster,
    state: CycleState,
    *,
    volume: tuple[Tensor, RadarOperator] | None,
    cycle: int,
    seeds: Seeds,
) -> dict:
    """A ``forecast_minutes`` forecast from the analysis of ``cycle``, scored every minute.

    The deterministic forecast starts from the analysis mean (no triggering
    noise), the ensemble forecast from the first ``forecast_members`` members;
    both run the ensemble's model (``forecaster.model``), the truth runs ``model``.
    Both are verified against the truth's reflectivity on the radar's
    coverage, with persistence of the latest observed reflectivity (``volume``,
    which is older than the analysis after an outage) as reference.

    Returns:
        A dict with ``lead_minutes`` and contingency counts per lead
        (``counts_forecast``, ``counts_persistence``, ``counts_ensemble_prob``: the
        ensemble's P(dBZ > 30) >= 0.5), plus ``probability`` maps, truth and
        forecast reflectivity ``(lead, ny, nx)`` (CPU float32) at 0, 10, 20, 30 minutes.
    """
    n_leads = round(config.forecast_minutes * 60.0 / LEAD_STEP_SECONDS)
    observed = observed_dbz_field(volume, (config.grid, config.grid))
    coverage = radar_mask(config.model, config.radar)
    if volume is not None:
        coverage &= ~torch.isnan(observed)  # the cells the radar reported
    start = (cycle + 1) * config.steps_per_cycle
    lead_steps = round(LEAD_STEP_SECONDS / config.model.dt)
    truth = state.truth.clone()
    det = state.ensemble.mean(0, keepdim=True)
    members = state.ensemble[: config.n_forecast_members].clone()
    truth_dbz, det_dbz, probs = [state_dbz(config, truth[0])], [state_dbz(config, det[0])], [_prob(config, members)]
    for j in range(n_leads):
        s = start + j * lead_steps
        truth = model.forecast(truth, LEAD_STEP_SECONDS, seed=seeds.truth, start_step=s)
        det = forecaster.model.forecast(det, LEAD_STEP_SECONDS, seed=None, start_step=s)
        members = forecaster(members, LEAD_STEP_SECONDS, seed=seeds.pool, start_step=s)
        truth_dbz.append(state_dbz(config, truth[0]))
        det_dbz.append(state_dbz(config, det[0]))
        probs.append(_prob(config, members))
    t = torch.stack(truth_dbz).cpu().double()
    f = torch.stack(det_dbz).cpu().double()
    p = torch.stack(probs).cpu().double()
    persist = observed.expand_as(t)
    tables = {
        "forecast": contingency(f, t, THRESHOLD_DBZ, mask=coverage),
        "persistence": contingency(persist, t, THRESHOLD_DBZ, mask=coverage),
        "ensemble_prob": contingency(p, t > THRESHOLD_DBZ, 0.4999, mask=coverage),
    }
    out: dict = {"cycle": cycle + 1, "lead_minutes": [j * LEAD_STEP_SECONDS / 60.0 for j in range(n_leads + 1)]}
    for name, table in tables.items():
        out[f"counts_{name}"] = {key: getattr(table, key).tolist() for key in COUNT_KEYS}
    snaps = [i for i in range(n_leads + 1) if (i * LEAD_STEP_SECONDS / 60.0) % 10 == 0]
    out["map_leads"] = [i * LEAD_STEP_SECONDS / 60.0 for i in snaps]
    out["probability"] = p[snaps].float()
    out["truth_dbz"] = t[snaps].float()
    out["forecast_dbz"] = f[snaps].float()
    out["coverage"] = coverage
    return out


def state_dbz(config: BDAConfig, x: Tensor) -> Tensor:
    """Reflectivity of states ``(..., 4, ny, nx)`` -> ``(..., ny, nx)`` dBZ (the radar's power law)."""
    radar = config.radar
    return reflectivity_dbz(x[..., VARS.index("r"), :, :], rain_to_rhoqr=radar.rain_to_rhoqr, floor_dbz=radar.floor_dbz)


def _prob(config: BDAConfig, members: Tensor) -> Tensor:
    """Fraction of members above 30 dBZ, ``(ny, nx)``."""
    return (state_dbz(config, members) > THRESHOLD_DBZ).double().mean(0)


def threat_scores(forecasts: list[dict]) -> dict[str, list[float]]:
    """Threat score (CSI) at 30 dBZ per lead, pooled over every extended forecast, per method."""
    if not forecasts:
        return {}
    out: dict[str, list[float]] = {"lead_minutes": forecasts[0]["lead_minutes"]}
    for name in ("forecast", "persistence", "ensemble_prob"):
        out[name] = pooled_csi([f[f"counts_{name}"] for f in forecasts])
    return out


__all__ = [
    "LEAD_STEP_SECONDS",
    "THRESHOLD_DBZ",
    "VARS",
    "CycleState",
    "EnsembleModel",
    "Forecaster",
    "Seeds",
    "extended_forecast",
    "initial_state",
    "initial_truth",
    "obs_generator",
    "observed_dbz_field",
    "state_dbz",
    "threat_scores",
    "torch_dtype",
]
