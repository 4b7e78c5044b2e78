"""One radiance experiment through the cycle engine: LETKF with radiosondes and (optionally) AMSU-A.

`run_experiment` hands `dacast.workflow.cycle.cycle` the column model's
forecast, an observation stream of radiosondes (every ``conventional.every``
cycles) and the swath's radiances through the experiment's operator, and
`RadianceAnalyser`, which adds to the LETKF (`dacast.da.letkf`, on the column grid) what radiances need:

1. the bias correction (``physical`` only): radiances are corrected with the
   current VarBC coefficients, the predictors taken from the background mean,
   and the coefficients are then updated from this cycle's departures
   (`dacast.obs.bias.BiasCorrection`), so no observation corrects itself;
2. a new neighbour table every cycle (the swath moves);
3. the humidity reset: analysed q is brought back into [q_floor · q_clim, q_sat(T)],
   as operational systems do, and the number of points reset is recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from dacast.da import Analysis, LETKFConfig, analyse, local_neighbours
from dacast.da.localization import Localization
from dacast.models.column import ColumnAtmosphere
from dacast.obs import ObsOperator, StackedObs, stacked
from dacast.obs.bias import BiasCorrection
from dacast.thermo import saturation_specific_humidity
from dacast.workflow.cycle import CycleStep, Observation, cycle, model_forecast
from dacast.workflow.radiance.config import RadianceConfig
from dacast.workflow.radiance.observing import (
    Swath,
    TwinData,
    conventional_operator,
    profiles_predictors,
    swath,
)

#: ``factory(view) -> ObsOperator``: an experiment's radiance operator for one swath.
OperatorFactory = Callable[[Swath], ObsOperator]
#: ``progress(done, total)``.
Progress = Callable[[int, int], None]


class BadObservation(ValueError):
    """An observation that cannot be assimilated (NaN or infinite): bad input, not a filter divergence."""


def check_radiances(y: Tensor, view: Swath, channels: tuple[int, ...], cycle_index: int) -> None:
    """Raise `BadObservation` naming the first non-finite radiance of ``y`` ``(n_fov, C)`` (K)."""
    bad = ~torch.isfinite(y)
    if bool(bad.any()):
        fov, ch = (int(i) for i in bad.nonzero()[0])
        raise BadObservation(
            f"cycle {cycle_index}: the radiance of field of view {fov} (model column {int(view.columns[fov])}), "
            f"channel {channels[ch]} is {float(y[fov, ch])}"
        )


@dataclass(frozen=True)
class RadianceObservation(Observation):
    """An `Observation` that knows which of its entries are radiances and what the satellite saw.

    Attributes:
        radiance: where the radiances sit in ``y`` (None: none this cycle).
        view: the swath (None without radiances).
    """

    radiance: slice | None = None
    view: Swath | None = None


def letkf_config(config: RadianceConfig) -> LETKFConfig:
    """The LETKF of every experiment: Gaspari-Cohn in (column, scaled ln p), inflation and RTPS."""
    return LETKFConfig(
        localization=Localization(length=config.localization), inflation=config.inflation, rtps=config.rtps
    )


def reset_humidity(model: ColumnAtmosphere, ensemble: Tensor) -> tuple[Tensor, int]:
    """Clamp q of ``(members, n_state)`` to [q_floor · q_clim, q_sat(T, p)].

    Returns:
        The ensemble and the number of values reset.
    """
    t, q = model.split(ensemble)
    q_clim = model.q_clim.to(q)
    low = model.q_floor * q_clim
    high = saturation_specific_humidity(t, model.pressure.to(q)[:, None])
    fixed = torch.minimum(torch.maximum(q, low), high)
    return model.join(t, fixed), int((fixed != q).sum())


@dataclass
class RadianceAnalyser:
    """LETKF analysis with VarBC for radiances (see the module docstring).

    Attributes:
        model: the column model (layout, humidity bounds).
        config: the experiment settings.
        bias: the VarBC state, ``None`` without bias correction.
        diagnostics: per analysed cycle: ``cycle``, ``y_used`` (the radiances as assimilated, bias-corrected
            with VarBC, ``(n_fov, C)`` K) and ``resets`` (humidity values reset).
    """

    model: ColumnAtmosphere
    config: RadianceConfig
    bias: BiasCorrection | None = None
    diagnostics: list[dict[str, object]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.grid = self.model.grid(self.config.vertical_scale)
        self.letkf = letkf_config(self.config)

    def __call__(self, prior: Tensor, obs: Observation, hx: Tensor | None, cycle_index: int) -> Analysis:
        """The analysis of ``prior`` ``(members, n_state)``."""
        y = obs.y.clone()
        record: dict[str, object] = {"cycle": cycle_index}
        rad = obs.radiance if isinstance(obs, RadianceObservation) else None
        if rad is not None:
            assert isinstance(obs, RadianceObservation) and obs.view is not None
            op = obs.operator.parts[-1] if isinstance(obs.operator, StackedObs) else obs.operator
            n_c = len(self.config.satellite.channels)
            if self.bias is not None:
                hx_rad = op(prior).reshape(prior.shape[0], -1, n_c)  # (members, n_fov, C)
                raw = y[rad].reshape(-1, n_c).clone()  # y is corrected in place below
                pred = profiles_predictors(self.model, prior.mean(0), obs.view)
                y[rad] = self.bias.correct(raw, pred).reshape(-1)
                variance = op.error_std.reshape(-1, n_c) ** 2 + hx_rad.var(0)
                self.bias = self.bias.update(pred, raw - hx_rad.mean(0), variance)
            record["y_used"] = y[rad].reshape(-1, n_c)
        local = local_neighbours(self.grid, obs.operator, self.letkf.localization)
        result = analyse(self.letkf, prior, y, obs.operator, grid=self.grid, local=local)
        ensemble, resets = reset_humidity(self.model, result.ensemble)
        record["resets"] = resets
        self.diagnostics.append(record)
        return Analysis.of(ensemble, result.innovation)


def observation_stream(
    model: ColumnAtmosphere,
    config: RadianceConfig,
    data: TwinData,
    radiance_operator: OperatorFactory | None,
) -> Callable[[int], RadianceObservation | None]:
    """``observations(c)`` for the cycle engine: radiosondes when due, radiances when an operator is given."""
    conv = conventional_operator(model, config)

    def stream(c: int) -> RadianceObservation | None:
        ops: list[ObsOperator] = []
        ys: list[Tensor] = []
        if c % config.conventional.every == 0:
            ops.append(conv)
            ys.append(data.conventional[c])
        view = None
        if radiance_operator is not None:
            view = swath(config, c)
            check_radiances(data.radiances[c], view, config.satellite.channels, c)
            ops.append(radiance_operator(view))
            ys.append(data.radiances[c].reshape(-1))
        if not ops:
            return None
        operator = stacked(*ops)
        rad = operator.slices()[-1] if view is not None else None  # the radiances are the last part
        return RadianceObservation(y=torch.cat(ys), operator=operator, radiance=rad, view=view)

    return stream


def level_rmse(model: ColumnAtmosphere, estimate: Tensor, truth: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """RMSE over columns per level of T (K) and q (g/kg): two arrays ``(L,)``."""
    te, qe = model.split(estimate)
    tt, qt = model.split(truth)
    return (
        (te - tt).pow(2).mean(-1).sqrt().numpy(),
        (qe - qt).pow(2).mean(-1).sqrt().numpy(),
    )


def _empty_scores(config: RadianceConfig, n_levels: int) -> dict[str, np.ndarray]:
    n, n_fov, n_c = config.cycles, config.satellite.fovs, len(config.satellite.channels)
    keys = ("rmse_t_a", "rmse_q_a", "rmse_t_b", "rmse_q_b", "spread_t_a", "spread_q_a")
    out = {k: np.full((n, n_levels), np.nan) for k in keys}
    out |= {k: np.full((n, n_fov, n_c), np.nan) for k in ("omb_raw", "omb", "oma")}
    out["bias_coefficients"] = np.full((n, n_c, 5), np.nan)
    out["resets"] = np.zeros(n)
    out["diverged_cycle"] = np.array(-1)
    out["diverged_reason"] = np.array("")
    return out


def _record(
    out: dict[str, np.ndarray],
    i: int,
    step: CycleStep,
    model: ColumnAtmosphere,
    config: RadianceConfig,
    data: TwinData,
    analyser: RadianceAnalyser,
    monitor: OperatorFactory | None,
) -> None:
    """Scores of cycle ``step`` into row ``i`` of ``out``."""
    c, truth, post = step.cycle, data.truth[step.cycle], step.posterior
    n_c = len(config.satellite.channels)
    out["rmse_t_b"][i], out["rmse_q_b"][i] = level_rmse(model, step.prior.mean(0), truth)
    out["rmse_t_a"][i], out["rmse_q_a"][i] = level_rmse(model, post.mean(0), truth)
    st, sq = model.split(post.std(0))
    out["spread_t_a"][i], out["spread_q_a"][i] = st.pow(2).mean(-1).sqrt().numpy(), sq.pow(2).mean(-1).sqrt().numpy()
    last = analyser.diagnostics[-1] if analyser.diagnostics else {}
    record = last if last.get("cycle") == c else {}
    if monitor is not None:
        op = monitor(swath(config, c))
        y_raw = data.radiances[c]
        used = record.get("y_used", y_raw)
        assert isinstance(used, Tensor)
        hxb, hxa = op(step.prior.mean(0)).reshape(-1, n_c), op(post.mean(0)).reshape(-1, n_c)
        out["omb_raw"][i], out["omb"][i], out["oma"][i] = (
            (y_raw - hxb).numpy(),
            (used - hxb).numpy(),
            (used - hxa).numpy(),
        )
    if analyser.bias is not None:
        out["bias_coefficients"][i] = analyser.bias.coefficients.numpy()
    resets = record.get("resets", 0)
    out["resets"][i] = float(resets) if isinstance(resets, int) else 0.0


def run_experiment(
    model: ColumnAtmosphere,
    config: RadianceConfig,
    data: TwinData,
    ensemble: Tensor,
    *,
    radiance_operator: OperatorFactory | None = None,
    bias_correction: bool = False,
    monitor: OperatorFactory | None = None,
    progress: Progress | None = None,
    on_step: Callable[[CycleStep], None] | None = None,
) -> dict[str, np.ndarray]:
    """Assimilate ``data`` for ``config.cycles`` cycles starting from ``ensemble`` ``(members, n_state)``.

    A filter that diverges (a non-finite analysis, or a state outside what the
    operators accept, e.g. 350 K at the surface) ends the experiment: the rows
    from that cycle on stay NaN and ``diverged_cycle``/``diverged_reason`` say why.
    A non-finite radiance observation raises `BadObservation` (bad input) instead.

    Args:
        radiance_operator: ``view -> ObsOperator`` for the radiances, ``None`` for radiosondes only.
        bias_correction: run VarBC on the radiances.
        monitor: ``view -> ObsOperator`` used passively to compute radiance O-B/O-A for the
            histograms (default: ``radiance_operator``); ``None`` with no radiances: none.
        progress: optional ``callable(done, total)``.
        on_step: called with every `CycleStep` (e.g. to collect backgrounds for training).

    Returns:
        Arrays: ``rmse_t_a``, ``rmse_q_a``, ``rmse_t_b``, ``rmse_q_b``, ``spread_t_a``, ``spread_q_a`` ``(cycles, L)``;
        ``omb_raw``, ``omb``, ``oma`` ``(cycles, n_fov, C)`` (NaN where not computed); ``bias_coefficients``
        ``(cycles, C, 5)`` (NaN without VarBC); ``resets`` ``(cycles,)``; ``diverged_cycle`` (-1: never)
        and ``diverged_reason``.
    """
    bias = None
    if bias_correction:
        sat = config.satellite
        n_c = len(sat.channels)
        bias = BiasCorrection.initial(n_c, 5, prior_std=sat.bias_prior_std, process_var=sat.bias_process_var)
    analyser = RadianceAnalyser(model=model, config=config, bias=bias)
    stream = observation_stream(model, config, data, radiance_operator)
    monitor = monitor or radiance_operator
    out = _empty_scores(config, model.n_levels)
    forecast = model_forecast(model, config.steps_per_cycle, config.dt)
    steps = cycle(
        ensemble, forecast=forecast, observations=stream, analyse=analyser, cycles=range(1, config.cycles + 1)
    )
    done = 0
    try:
        for step in steps:
            if step.failure:
                raise ValueError(step.failure)
            _record(out, done, step, model, config, data, analyser, monitor)
            if not np.isfinite(out["rmse_t_a"][done]).all():
                raise ValueError("the analysis is not finite")
            if on_step is not None:
                on_step(step)
            done += 1
            if progress is not None:
                progress(done, config.cycles)
    except BadObservation:
        raise
    except ValueError as err:  # a state the operators refuse, or a non-finite analysis: the filter diverged
        for key in ("rmse_t_a", "rmse_q_a", "rmse_t_b", "rmse_q_b", "spread_t_a", "spread_q_a"):
            out[key][done:] = np.nan
        out["diverged_cycle"] = np.array(done + 1)
        out["diverged_reason"] = np.array(str(err))
    return out


__all__ = [
    "BadObservation",
    "RadianceAnalyser",
    "RadianceObservation",
    "letkf_config",
    "observation_stream",
    "reset_humidity",
    "run_experiment",
]
