"""The twin-experiment cycle: truth run, synthetic observations, forecast/analysis.

`run_twin` is DAPPER's ``HMM.simulate`` followed by ``xp.assimilate`` for one
method, batched over members (and, in the LETKF, over grid points). It never
raises on a diverging filter: the run stops, is flagged ``diverged`` and the
remaining analysis times hold NaN.

Randomness comes from three `torch.Generator`s spawned from ``config.seed``
(`numpy.random.SeedSequence`): initial states, observation noise and filter
perturbations. The truth and the observations are computed on the CPU in
float64, so they are identical for every filter, ensemble size, device and
dtype that share a seed.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import numpy as np
import torch
import xarray as xr
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import Tensor

import dacast
from dacast.da import LETKFConfig, analyse, local_neighbours
from dacast.models import Model
from dacast.obs import IndexObs, observe
from dacast.workflow.twin.config import (
    TwinConfig,
    build_model,
    build_operator,
    config_to_dict,
    default_divergence_threshold,
    model_grid,
    resolve_device,
)

STATE_UNITS = "1"  # the Lorenz models are non-dimensional
TIME_UNITS = "model time units"


def generators(seed: int) -> tuple[torch.Generator, torch.Generator, torch.Generator]:
    """Independent CPU generators ``(initial, observations, filter)`` spawned from ``seed``."""
    states = np.random.SeedSequence(seed).generate_state(3, dtype=np.uint64)
    return tuple(torch.Generator().manual_seed(int(s) & 0x7FFF_FFFF_FFFF_FFFF) for s in states)  # type: ignore[return-value]


def initial_states(config: TwinConfig, model: Model, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Truth and ensemble drawn from ``N(mean, initial_std**2 I)`` (DAPPER's ``X0``).

    Returns:
        ``(truth0, ensemble0)`` of shapes ``(n_state,)`` and ``(members, n_state)``, CPU float64.
    """
    if config.initial_mean is not None:
        mean = torch.tensor(config.initial_mean, dtype=torch.float64)
    else:
        mean = model.default_initial_state(dtype=torch.float64)  # type: ignore[attr-defined]
    n = config.n_state
    truth0 = mean + config.initial_std * torch.randn(n, generator=generator, dtype=torch.float64)
    ens0 = mean + config.initial_std * torch.randn((config.members, n), generator=generator, dtype=torch.float64)
    return truth0, ens0


def simulate_truth(config: TwinConfig, model: Model, truth0: Tensor) -> Tensor:
    """The true state at every analysis time, shape ``(cycles, n_state)`` (CPU float64).

    The truth is integrated ``obs_every`` steps of ``dt`` between analyses; the
    initial state (time 0) is not an analysis time.
    """
    out = torch.empty((config.cycles, config.n_state), dtype=torch.float64)
    x = truth0
    step = 0
    for c in range(config.cycles):
        for _ in range(config.obs_every):
            x = model.step(x, step * config.dt, config.dt)
            step += 1
        out[c] = x
    return out


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]cycling[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        disable=not enabled,
    )


def run_twin(config: TwinConfig, *, progress: bool = True) -> xr.Dataset:
    """Run one twin experiment and return every result as an `xarray.Dataset`.

    Args:
        config: the experiment.
        progress: show a Rich progress bar over the cycles.

    Returns:
        Dataset with dimensions ``time`` (analysis times, ``cycles``), ``state``
        and ``obs``: ``truth``, ``observations``, ``forecast_mean``,
        ``forecast_spread``, ``analysis_mean``, ``analysis_spread`` (time, state),
        ``innovation`` (time, obs), and the time series ``rmse_forecast``,
        ``rmse_analysis``, ``spread_forecast``, ``spread_analysis`` (time).
        RMSE is ``sqrt(mean_state((ensemble mean - truth)**2))``; spread is
        ``sqrt(mean_state(ensemble variance, ddof=1))`` (DAPPER's ``rmv``).
        The settings, divergence flag, wall time and provenance are attributes.

    Raises:
        ConfigError: only for a device that is not available.
    """
    start = time.perf_counter()
    device = resolve_device(config.device)
    dtype = getattr(torch, config.dtype)
    model = build_model(config.model)
    operator = build_operator(config)
    grid = model_grid(config.model)
    local = None
    if isinstance(config.filter, LETKFConfig):
        assert grid is not None
        local = local_neighbours(grid, operator, config.filter.localization)
    gen_init, gen_obs, gen_filter = generators(config.seed)
    threshold = config.divergence_threshold or default_divergence_threshold(config.model)

    truth0, ens0 = initial_states(config, model, gen_init)
    truth = simulate_truth(config, model, truth0)
    obs = observe(truth, operator, gen_obs)

    n_cyc, n, p = config.cycles, config.n_state, operator.n_obs
    nan = float("nan")
    fields = {
        name: torch.full((n_cyc, n), nan, dtype=dtype, device=device)
        for name in ("forecast_mean", "forecast_spread", "analysis_mean", "analysis_spread")
    }
    innovation = torch.full((n_cyc, p), nan, dtype=dtype, device=device)
    series = torch.full((n_cyc, 4), nan, dtype=torch.float64, device=device)  # rmse_f, rmse_a, spread_f, spread_a
    truth_d = truth.to(device=device, dtype=dtype)
    obs_d = obs.to(device=device, dtype=dtype)

    ens = ens0.to(device=device, dtype=dtype)
    diverged_cycle = -1
    reason = ""
    step = 0
    with _progress(progress) as bar:
        task = bar.add_task("", total=n_cyc)
        for c in range(n_cyc):
            for _ in range(config.obs_every):
                ens = model.step(ens, step * config.dt, config.dt)
                step += 1
            fields["forecast_mean"][c] = ens.mean(0)
            fields["forecast_spread"][c] = ens.std(0)
            try:
                result = analyse(config.filter, ens, obs_d[c], operator, grid=grid, local=local, generator=gen_filter)
            except torch.linalg.LinAlgError:
                diverged_cycle, reason = c, "the analysis failed (non-finite ensemble)"
                series[c, 0] = _rmse(fields["forecast_mean"][c], truth_d[c])
                break
            ens = result.ensemble
            fields["analysis_mean"][c] = result.mean
            fields["analysis_spread"][c] = result.spread
            innovation[c] = result.innovation
            stats = torch.stack(
                (
                    _rmse(fields["forecast_mean"][c], truth_d[c]),
                    _rmse(result.mean, truth_d[c]),
                    fields["forecast_spread"][c].pow(2).mean().sqrt(),
                    result.spread.pow(2).mean().sqrt(),
                )
            ).double()
            series[c] = stats
            rmse_f, rmse_a, _, _ = stats.tolist()  # the one device sync per cycle
            bar.update(task, advance=1, description=f"rmse.a {rmse_a:.3g}")
            if not (np.isfinite(rmse_f) and np.isfinite(rmse_a) and bool(torch.isfinite(ens).all())):
                diverged_cycle, reason = c, "non-finite values in the ensemble or the truth"
            elif max(rmse_f, rmse_a) > threshold:
                diverged_cycle, reason = c, f"RMSE {max(rmse_f, rmse_a):.3g} exceeds the threshold {threshold:.3g}"
            if diverged_cycle >= 0:
                break
    if diverged_cycle >= 0:
        # Rows after the divergence stay NaN; the failing row keeps what was computed.
        for tensor in (*fields.values(), innovation):
            tensor[diverged_cycle + 1 :] = nan
    wall = time.perf_counter() - start
    return _dataset(
        config, operator, truth, obs, fields, innovation, series, threshold, diverged_cycle, reason, wall, device
    )


def _rmse(mean: Tensor, truth: Tensor) -> Tensor:
    return (mean - truth).pow(2).mean().sqrt()


def _dataset(
    config: TwinConfig,
    operator: IndexObs,
    truth: Tensor,
    obs: Tensor,
    fields: dict[str, Tensor],
    innovation: Tensor,
    series: Tensor,
    threshold: float,
    diverged_cycle: int,
    reason: str,
    wall: float,
    device: torch.device,
) -> xr.Dataset:
    def np64(t: Tensor) -> np.ndarray:
        return t.detach().to(device="cpu", dtype=torch.float64).numpy()

    steps = np.arange(1, config.cycles + 1) * config.obs_every
    state_attrs = {"units": STATE_UNITS}
    long_names = {
        "forecast_mean": "ensemble mean of the forecast (prior)",
        "forecast_spread": "ensemble standard deviation of the forecast (ddof=1)",
        "analysis_mean": "ensemble mean of the analysis (posterior)",
        "analysis_spread": "ensemble standard deviation of the analysis (ddof=1)",
    }
    ser = np64(series)
    data_vars = {
        "truth": (("time", "state"), np64(truth), {"long_name": "true state", **state_attrs}),
        "observations": (("time", "obs"), np64(obs), {"long_name": "synthetic observations", **state_attrs}),
        **{
            name: (("time", "state"), np64(t), {"long_name": long_names[name], **state_attrs})
            for name, t in fields.items()
        },
        "innovation": (
            ("time", "obs"),
            np64(innovation),
            {"long_name": "observation minus forecast ensemble mean in observation space", **state_attrs},
        ),
        "rmse_forecast": ("time", ser[:, 0], {"long_name": "RMSE of the forecast mean vs truth", **state_attrs}),
        "rmse_analysis": ("time", ser[:, 1], {"long_name": "RMSE of the analysis mean vs truth", **state_attrs}),
        "spread_forecast": ("time", ser[:, 2], {"long_name": "sqrt(mean ensemble variance), forecast", **state_attrs}),
        "spread_analysis": ("time", ser[:, 3], {"long_name": "sqrt(mean ensemble variance), analysis", **state_attrs}),
    }
    coords = {
        "time": ("time", steps * config.dt, {"long_name": "analysis time", "units": TIME_UNITS}),
        "cycle": ("time", np.arange(1, config.cycles + 1), {"long_name": "analysis number (1-based)"}),
        "state": ("state", np.arange(config.n_state), {"long_name": "state index (grid point for Lorenz-96)"}),
        "obs": ("obs", np.arange(operator.n_obs), {"long_name": "observation number"}),
        "obs_state_index": ("obs", operator.indices.numpy(), {"long_name": "observed state index"}),
        "obs_error_std": ("obs", operator.error_std.numpy(), {"long_name": "observation error std", **state_attrs}),
    }
    diverged = diverged_cycle >= 0
    attrs = {
        "title": "dacast twin experiment",
        "model": config.model.name,
        "filter": config.filter_name,
        "members": config.members,
        "cycles": config.cycles,
        "dt": config.dt,
        "obs_every": config.obs_every,
        "seed": config.seed,
        "burn_in": config.effective_burn_in,
        "burn_in_requested": config.burn_in,
        "divergence_threshold": threshold,
        "diverged": int(diverged),
        "diverged_cycle": diverged_cycle + 1 if diverged else 0,
        "diverged_reason": reason,
        "cycles_completed": (diverged_cycle + 1) if diverged else config.cycles,
        "wall_time_s": wall,
        "device": str(device),
        "dtype": config.dtype,
        "settings": json.dumps(config_to_dict(config)),
        "dacast_version": dacast.__version__,
        "torch_version": torch.__version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "history": "dacast.workflow.run_twin",
    }
    return xr.Dataset(data_vars=data_vars, coords=coords, attrs=attrs)


__all__ = ["generators", "initial_states", "run_twin", "simulate_truth"]
