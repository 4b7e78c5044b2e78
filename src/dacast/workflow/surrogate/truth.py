"""The truth, the observations and the forecast scores of one surrogate experiment.

Every random draw comes from a generator seeded by ``(seed, purpose, iteration)``
(`dacast.workflow.runtime.torch_generator`), so a resumed run equals an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from dacast.ml.surrogate import SurrogateNet
from dacast.models import Model, advance
from dacast.verify import valid_time
from dacast.workflow.runtime import torch_generator
from dacast.workflow.surrogate.config import SurrogateConfig
from dacast.workflow.twin.config import build_model

#: Forecast leads (analysis intervals) whose RMSE the summary reports.
N_LEADS = 4
#: Model time (time units) of the spin-up onto the attractor, and of the gap before the test segment.
SPINUP_TIME = 10.0
DECORRELATION_TIME = 5.0


@dataclass(frozen=True)
class TruthData:
    """Truth and observations of one experiment (CPU, float64).

    Attributes:
        truth: full truth state at analysis times, shape ``(cycles, n_truth)``.
        observations: shape ``(cycles, n_obs)``.
        test: independent truth segment after the DA period, shape ``(test_cycles, n_truth)``.
        obs_indices: observed modelled variables.
        clim_std: ``sqrt(mean_var var_t(test))`` of the modelled variables.
    """

    truth: Tensor
    observations: Tensor
    test: Tensor
    obs_indices: list[int]
    clim_std: float


def make_truth(config: SurrogateConfig) -> TruthData:
    """Spin the truth up onto its attractor, run it, observe it, and run an independent test segment."""
    model = build_model(config.truth)
    x = model.default_initial_state(dtype=torch.float64)  # type: ignore[attr-defined]
    x = x + torch.randn(x.shape, generator=torch_generator(config.seed, 0), dtype=torch.float64)
    x = advance(model, x, int(round(SPINUP_TIME / config.dt)), config.dt)

    def run(x: Tensor, n: int) -> tuple[Tensor, Tensor]:
        out = torch.empty((n, x.shape[-1]), dtype=torch.float64)
        for c in range(n):
            x = advance(model, x, config.obs_every, config.dt)
            out[c] = x
        return out, x

    truth, x = run(x, config.cycles)
    x = advance(model, x, int(round(DECORRELATION_TIME / config.dt)), config.dt)
    test, _ = run(x, config.test_cycles)
    idx = config.obs.state_indices(config.n_var)
    std = torch.as_tensor(config.obs.error_std, dtype=torch.float64)
    gen = torch_generator(config.seed, 1)
    noise = torch.randn((config.cycles, len(idx)), generator=gen, dtype=torch.float64)
    obs = truth[:, idx] + noise * std
    clim = float(test[:, : config.n_var].var(0).mean().sqrt())
    return TruthData(truth, obs, test, idx, clim)


def free_forecasts(model: Model, initial: Tensor, n_leads: int, *, steps_per_lead: int, dt: float) -> Tensor:
    """Free forecasts from a batch of initial states.

    Args:
        model: forecast model.
        initial: shape ``(starts, model.n_state)``.
        n_leads: number of leads (each ``steps_per_lead`` model steps of ``dt``).

    Returns:
        States at leads ``1..n_leads``, shape ``(n_leads, starts, model.n_state)``.
    """
    out = []
    x = initial
    with torch.no_grad():
        for lead in range(n_leads):
            x = advance(model, x, steps_per_lead, dt, t0=lead * steps_per_lead * dt)
            out.append(x)
    return torch.stack(out)


def forecast_scores(config: SurrogateConfig, data: TruthData, model: Model) -> dict[str, Any]:
    """Forecast scores of ``model`` from true initial states of the test segment.

    Returns:
        ``rmse`` (``N_LEADS`` values, steps 1-4), ``error`` per start and lead
        ``(starts, N_LEADS)``, ``start_state`` ``(starts, n_var)``, ``nrmse``
        (``free_leads`` values: RMSE over starts / climatological std), ``valid_time``.
    """
    w = config.net.window if isinstance(model, SurrogateNet) else 1
    test = data.test[:, : config.n_var]
    last = config.test_cycles - config.free_leads - 1
    starts = torch.linspace(w - 1, max(w - 1, last), config.test_starts).round().long().unique()
    leads = config.free_leads
    if isinstance(model, SurrogateNet):
        hist = test[starts[:, None] + torch.arange(-w + 1, 1)]  # (S, w, n_var)
        init = model.embed(hist)
        fc = free_forecasts(model, init, leads, steps_per_lead=1, dt=config.step)[..., model.view]
    else:
        fc = free_forecasts(model, test[starts], leads, steps_per_lead=config.obs_every, dt=config.dt)
    idx = (starts[None, :] + torch.arange(1, leads + 1)[:, None]).clamp_max(config.test_cycles - 1)
    err = (fc - test[idx]).pow(2).mean(-1)  # (leads, S)
    err = torch.where(torch.isfinite(err), err, torch.full_like(err, 1e6))
    nrmse = err.mean(1).sqrt().numpy() / data.clim_std
    return {
        "rmse": err[:N_LEADS].mean(1).sqrt().tolist(),
        "error": err[:N_LEADS].sqrt().T.numpy(),
        "start_state": test[starts].numpy(),
        "nrmse": nrmse,
        "valid_time": valid_time(nrmse, config.step),
    }


__all__ = ["N_LEADS", "TruthData", "forecast_scores", "free_forecasts", "make_truth"]
