"""The observing system of the radiance twin: truth runs, radiosondes, the AMSU-A swath and its operators.

Truth and observations of one seed are drawn once and shared by every
experiment of that seed. Radiosonde T and q are the truth at their levels plus
Gaussian errors; AMSU-A radiances are the physical operator's brightness
temperatures of the truth, plus the true bias of `dacast.obs.satellite.amsua_true_bias`
(evaluated on the truth profiles), plus Gaussian errors of ``satellite.error_std``.

Observation locations for localization are ``(column, vertical coordinate)``
in the units of `ColumnAtmosphere.grid`: a radiance sits at the peak of its
channel's weighting function (computed once on the climatological columns),
as operational LETKFs place radiances for vertical localization.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from dacast.models import advance
from dacast.models.column import ColumnAtmosphere
from dacast.obs import IndexObs, subset
from dacast.obs.microwave import MicrowaveOperator, brightness_temperature, weighting_functions
from dacast.obs.satellite import amsua_true_bias, bias_predictors, scan_angles, swath_columns, zenith_angle
from dacast.workflow.radiance.config import RadianceConfig


@dataclass(frozen=True)
class Swath:
    """What AMSU-A sees at one analysis time.

    Attributes:
        columns: observed columns, shape ``(n_fov,)`` long.
        scan_deg: scan angles, shape ``(n_fov,)`` (deg).
        zenith_deg: local zenith angles, shape ``(n_fov,)`` (deg).
    """

    columns: Tensor
    scan_deg: Tensor
    zenith_deg: Tensor


@dataclass(frozen=True)
class TwinData:
    """Truth and observations of one seed.

    Attributes:
        truth: shape ``(cycles + 1, n_state)``; row ``c`` is valid at analysis time ``c`` (row 0: the start).
        conventional: radiosonde observations per cycle, shape ``(cycles + 1, n_conv)``; rows of cycles
            without soundings are NaN.
        radiances: raw (biased, noisy) brightness temperatures, shape ``(cycles + 1, n_fov, C)`` (K).
        true_bias: the bias in them, shape ``(cycles + 1, n_fov, C)`` (K).
    """

    truth: Tensor
    conventional: Tensor
    radiances: Tensor
    true_bias: Tensor


def swath(config: RadianceConfig, cycle: int) -> Swath:
    """The fields of view of analysis time ``cycle``."""
    scan = scan_angles(config.satellite.fovs)
    columns = swath_columns(cycle, config.model.n_columns, config.satellite.fovs, config.satellite.step)
    return Swath(columns=columns, scan_deg=scan, zenith_deg=zenith_angle(scan))


def nearest_levels(model: ColumnAtmosphere, pressures: tuple[float, ...]) -> list[int]:
    """Model level indices nearest (in ln p) to ``pressures`` (hPa), duplicates dropped, bottom first."""
    lnp = torch.log(model.pressure)
    picked = {int(torch.argmin((lnp - torch.log(torch.tensor(p, dtype=torch.float64))).abs())) for p in pressures}
    return sorted(picked)


def conventional_operator(model: ColumnAtmosphere, config: RadianceConfig) -> IndexObs:
    """Radiosondes: T at the chosen levels, q at those at or below ``humidity_top_hpa``, at evenly spaced columns.

    Errors: ``t_error`` K for T, ``q_error`` times the climatological q (g/kg) for q.
    """
    spec = config.conventional
    stations = sorted({round(i * model.n_columns / spec.stations) % model.n_columns for i in range(spec.stations)})
    levels = nearest_levels(model, spec.levels_hpa)
    wet = [k for k in levels if float(model.pressure[k]) >= spec.humidity_top_hpa - 1e-9]
    n_pts = model.n_points
    idx, err = [], []
    for col in stations:
        for k in levels:
            idx.append(k * model.n_columns + col)
            err.append(spec.t_error)
        for k in wet:
            idx.append(n_pts + k * model.n_columns + col)
            err.append(spec.q_error * float(model.q_clim[k, col]))
    grid = model.grid(config.vertical_scale).coords
    coords = torch.cat([grid, grid])  # the q entries sit on the same points
    return subset(model.n_state, idx, torch.tensor(err, dtype=torch.float64), grid_coords=coords)


def channel_heights(model: ColumnAtmosphere, config: RadianceConfig) -> Tensor:
    """Vertical coordinate of each channel's weighting-function peak on the climatological columns, shape ``(C,)``.

    In the units of `ColumnAtmosphere.grid` (``vertical_scale · ln(p_bottom / p_peak)``),
    averaged over the columns at nadir.
    """
    t, q = model.t_clim.T, model.q_clim.T  # (N, L)
    zen = torch.zeros(model.n_columns, dtype=torch.float64)
    w = weighting_functions(t, q, model.pressure, zen, channels=config.satellite.channels)  # (N, C, L)
    z = model.scale_height(model.pressure)
    peak = z[w.argmax(-1)].mean(0)
    return config.vertical_scale * peak


def radiance_locations(view: Swath, heights: Tensor) -> Tensor:
    """``(n_fov · C, 2)`` locations, FOV-major and channel-minor like the operators' output.

    Args:
        view: the swath.
        heights: each channel's vertical coordinate, shape ``(C,)`` (`channel_heights`).
    """
    n_c = heights.numel()
    col = view.columns.to(torch.float64).repeat_interleave(n_c)
    return torch.stack([col, heights.repeat(view.columns.numel())], dim=-1)


def radiance_errors(config: RadianceConfig, n_fov: int) -> Tensor:
    """Error standard deviations ``(n_fov · C,)`` (K), FOV-major."""
    return torch.tensor(config.satellite.error_std, dtype=torch.float64).repeat(n_fov)


def physical_factory(model: ColumnAtmosphere, config: RadianceConfig) -> Callable[[Swath], MicrowaveOperator]:
    """``view -> MicrowaveOperator``: the torch radiative-transfer operator of a swath (channel heights found once)."""
    heights = channel_heights(model, config)

    def operator(view: Swath) -> MicrowaveOperator:
        return MicrowaveOperator(
            model=model,
            columns=view.columns,
            zenith_deg=view.zenith_deg,
            channels=config.satellite.channels,
            error_std=radiance_errors(config, view.columns.numel()),
            locations=radiance_locations(view, heights),
        )

    return operator


def profiles_predictors(model: ColumnAtmosphere, x: Tensor, view: Swath) -> Tensor:
    """Bias predictors ``(n_fov, 5)`` of the swath's columns of one state ``x`` ``(n_state,)``."""
    t, q = model.profiles(x, view.columns)
    return bias_predictors(view.scan_deg, t, q, model.pressure)


def make_truth(model: ColumnAtmosphere, config: RadianceConfig, seed: int, cycles: int) -> Tensor:
    """A truth run of ``cycles`` analysis intervals after a spin-up, shape ``(cycles + 1, n_state)``, float64."""
    gen = torch.Generator().manual_seed(seed)
    x = model.initial_state(gen, dt=config.dt)
    out = [x]
    for _ in range(cycles):
        x = advance(model, x, config.steps_per_cycle, config.dt)
        out.append(x)
    return torch.stack(out)


def observe_truth(model: ColumnAtmosphere, config: RadianceConfig, truth: Tensor, seed: int) -> TwinData:
    """Radiosonde and AMSU-A observations of ``truth`` ``(cycles + 1, n_state)`` (errors seeded by ``seed``)."""
    gen = torch.Generator().manual_seed(seed + 7_919)
    conv = conventional_operator(model, config)
    sat = config.satellite
    bias_model = amsua_true_bias(sat.channels)
    n = truth.shape[0]
    y_conv = conv(truth) + conv.error_std * torch.randn((n, conv.n_obs), generator=gen, dtype=torch.float64)
    y_conv[torch.arange(n) % config.conventional.every != 0] = float("nan")
    rad, bias = [], []
    errors = torch.tensor(sat.error_std, dtype=torch.float64)
    for c in range(n):
        view = swath(config, c)
        t, q = model.profiles(truth[c], view.columns)
        tb = brightness_temperature(t, q, model.pressure, view.zenith_deg, channels=sat.channels)
        b = bias_model(bias_predictors(view.scan_deg, t, q, model.pressure)) if sat.bias else torch.zeros_like(tb)
        noise = errors * torch.randn(tb.shape, generator=gen, dtype=torch.float64)
        rad.append(tb + b + noise)
        bias.append(b)
    return TwinData(truth=truth, conventional=y_conv, radiances=torch.stack(rad), true_bias=torch.stack(bias))


def initial_ensemble(model: ColumnAtmosphere, config: RadianceConfig, seed: int) -> Tensor:
    """``members`` independent states from the model's climate (spun-up random anomalies), ``(members, n_state)``."""
    gen = torch.Generator().manual_seed(seed + 104_729)
    return model.initial_state(gen, spin_up=5.0, dt=config.dt, members=config.members)


__all__ = [
    "Swath",
    "TwinData",
    "channel_heights",
    "conventional_operator",
    "initial_ensemble",
    "make_truth",
    "nearest_levels",
    "observe_truth",
    "physical_factory",
    "profiles_predictors",
    "radiance_errors",
    "radiance_locations",
    "swath",
]
