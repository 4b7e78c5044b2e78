"""A learned observation operator for microwave radiances (Liang, Terasaki & Miyoshi 2023).

Liang, J., K. Terasaki and T. Miyoshi, 2023: A machine learning approach to the
observation operator for satellite radiance data assimilation. *J. Meteor. Soc.
Japan*, **101**, 79–95, doi:10.2151/jmsj.2023-005.

The paper's setup: NICAM with the LETKF, assimilating clear-sky AMSU-A
brightness temperatures (channels 6 and 7 over the ocean, channel 8 over land
and ocean). One fully connected network per channel maps 205 inputs (the model
column of temperature and humidity, surface fields, and the geometry of the
field of view: scan angle, zenith angle, latitude) through 4 hidden layers of
300 ReLU units to the brightness temperature (K). The networks are trained with
a learning rate of 1e-6 on one month of the reference system's DA background
forecasts paired with the *observations* (not with RTTOV output), so they learn
the radiative transfer and the observation bias together; the DA cycle then
needs no separate bias correction.

The twin's version (`dacast.models.column.ColumnAtmosphere`): the inputs are
``T`` (K) and ``ln q`` (q in g/kg) on the model's ``L`` levels, then scan angle,
zenith angle and latitude (deg), ``2L + 3`` features (`radiance_features`,
`feature_names`); the twin has no separate surface fields, so the lowest level
plays their part. `RadianceNetwork` holds one MLP per channel (default 4 × 300
ReLU, as in the paper) with input and output standardisation in buffers, and
`LearnedRadianceOperator` wraps it as a `dacast.obs.ObsOperator` over chosen
columns. Training, checkpoints and loading are in `dacast.ml.obsop_train`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dacast.models.column import ColumnAtmosphere

#: The AMSU-A channels of the paper (temperature sounding, mid-troposphere to lower stratosphere).
AMSU_CHANNELS: tuple[int, ...] = (6, 7, 8)
#: Humidity floor (g/kg) before the logarithm: ``ln(max(q, Q_TINY))``.
Q_TINY = 1e-6
#: Geometry features after the ``2L`` profile features.
GEOMETRY_FEATURES: tuple[str, ...] = ("scan_deg", "zenith_deg", "lat_deg")


def feature_names(n_levels: int, humidity_levels: int | None = None) -> list[str]:
    """Names of the ``L + Lq + 3`` features of `radiance_features`, in order.

    ``T_00 ... T_{L-1}`` (K, level 0 = bottom), ``lnq_00 ... lnq_{Lq-1}`` (ln of g/kg;
    ``Lq = humidity_levels``, default all ``L``), then ``scan_deg``, ``zenith_deg``, ``lat_deg``.
    """
    n_q = check_humidity_levels(n_levels, humidity_levels)
    width = max(2, len(str(n_levels - 1)))
    levels = [f"{k:0{width}d}" for k in range(n_levels)]
    return [*(f"T_{k}" for k in levels), *(f"lnq_{k}" for k in levels[:n_q]), *GEOMETRY_FEATURES]


def check_humidity_levels(n_levels: int, humidity_levels: int | None) -> int:
    """``Lq``, the humidity levels among the features (``humidity_levels``, default all ``n_levels``)."""
    if n_levels < 1:
        raise ValueError(f"n_levels must be >= 1, got {n_levels}")
    n_q = n_levels if humidity_levels is None else int(humidity_levels)
    if not 0 <= n_q <= n_levels:
        raise ValueError(f"humidity_levels must lie in [0, {n_levels}], got {humidity_levels}")
    return n_q


def radiance_features(
    t: Tensor,
    q: Tensor,
    scan_deg: Tensor,
    zenith_deg: Tensor,
    lat_deg: Tensor,
    humidity_levels: int | None = None,
) -> Tensor:
    """Network inputs from a column and its viewing geometry.

    Args:
        t: temperature, shape ``(*batch, L)`` (K), bottom level first.
        q: specific humidity, shape ``(*batch, L)`` (g/kg); its lowest ``humidity_levels``
            levels (default all) enter as ``ln(max(q, Q_TINY))``, as the paper feeds humidity on
            the lower 40 of its 78 levels only.
        scan_deg: scan angle, shape ``(*batch,)`` or broadcastable to it (deg).
        zenith_deg: satellite zenith angle, shape ``(*batch,)`` or broadcastable (deg).
        lat_deg: latitude, shape ``(*batch,)`` or broadcastable (deg north).

    Returns:
        Features ``(*batch, L + Lq + 3)`` in ``t``'s dtype and device, ordered as `feature_names`.
    """
    if t.shape != q.shape or t.ndim < 1:
        raise ValueError(f"t and q must have the same shape (*batch, L), got {tuple(t.shape)} and {tuple(q.shape)}")
    batch = t.shape[:-1]
    kw = {"dtype": t.dtype, "device": t.device}
    try:
        geometry = [torch.as_tensor(g, **kw).expand(batch) for g in (scan_deg, zenith_deg, lat_deg)]
    except RuntimeError:
        shapes = [tuple(torch.as_tensor(g).shape) for g in (scan_deg, zenith_deg, lat_deg)]
        raise ValueError(
            f"scan/zenith/latitude shapes {shapes} do not broadcast to the batch shape {tuple(batch)}"
        ) from None
    n_q = check_humidity_levels(t.shape[-1], humidity_levels)
    lnq = torch.log(q[..., :n_q].to(**kw).clamp_min(Q_TINY))
    return torch.cat([t, lnq, torch.stack(geometry, dim=-1)], dim=-1)


def _degenerate_std(mean: Tensor, std: Tensor) -> Tensor:
    """``std`` with (near-)constant entries (std < 1e-6 (1 + |mean|)) set to 1, so new values stay finite."""
    return torch.where(std < 1e-6 * (1 + mean.abs()), torch.ones_like(std), std)


class RadianceNetwork(nn.Module):
    """One MLP per channel: standardised features ``(*batch, F)`` -> brightness temperatures ``(*batch, C)`` (K).

    Each channel's MLP has ``depth`` hidden layers of ``hidden`` ReLU units and a
    linear output; inputs are standardised with ``input_mean``/``input_std`` and
    outputs mapped back with ``output_mean``/``output_std`` (buffers, saved in the
    ``state_dict``). Weights are drawn from ``generator`` (He-uniform for the hidden
    layers, zero biases), never from the global RNG. Float32 on the CPU after
    construction; move it with ``.to(device, dtype)``.

    Args:
        n_inputs: F, features per sample (``L + Lq + 3`` for `radiance_features`).
        channels: channel numbers, one network each (``C`` of them, distinct).
        hidden: units per hidden layer.
        depth: hidden layers per channel (>= 1).
        input_mean, input_std: feature statistics, shape ``(F,)`` (feature units);
            default 0 and 1. A (near-)constant feature's std is replaced by 1.
        output_mean, output_std: target statistics, shape ``(C,)`` (K); default 0 and 1.
        generator: source of the initial weights; default a generator seeded with 0.
        humidity_levels: Lq, the humidity levels among the features (``None``: all, ``F = 2L + 3``).
    """

    def __init__(
        self,
        n_inputs: int,
        channels: Sequence[int] = AMSU_CHANNELS,
        hidden: int = 300,
        depth: int = 4,
        *,
        input_mean: Tensor | None = None,
        input_std: Tensor | None = None,
        output_mean: Tensor | None = None,
        output_std: Tensor | None = None,
        generator: torch.Generator | None = None,
        humidity_levels: int | None = None,
    ) -> None:
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if n_inputs < 1 or hidden < 1 or depth < 1:
            raise ValueError(f"n_inputs, hidden and depth must be >= 1, got {n_inputs}, {hidden}, {depth}")
        if not channels or len(set(channels)) != len(channels):
            raise ValueError(f"channels must be distinct and at least one, got {channels}")
        self.n_inputs, self.channels, self.hidden, self.depth = n_inputs, channels, hidden, depth
        self.humidity_levels = humidity_levels
        if humidity_levels is not None and not 0 <= humidity_levels <= n_inputs - len(GEOMETRY_FEATURES) - 1:
            raise ValueError(f"humidity_levels {humidity_levels} does not fit {n_inputs} features")
        c = len(channels)

        def stat(value: Tensor | None, n: int, default: float, name: str) -> Tensor:
            out = torch.full((n,), default) if value is None else torch.as_tensor(value).detach().reshape(-1)
            if out.shape != (n,) or not bool(torch.isfinite(out).all()):
                raise ValueError(f"{name} must be finite with shape ({n},), got shape {tuple(out.shape)}")
            return out.to(torch.float64)

        in_mean, out_mean = stat(input_mean, n_inputs, 0.0, "input_mean"), stat(output_mean, c, 0.0, "output_mean")
        in_std = _degenerate_std(in_mean, stat(input_std, n_inputs, 1.0, "input_std").abs())
        out_std = _degenerate_std(out_mean, stat(output_std, c, 1.0, "output_std").abs())
        self.register_buffer("input_mean", in_mean.float())
        self.register_buffer("input_std", in_std.float())
        self.register_buffer("output_mean", out_mean.float())
        self.register_buffer("output_std", out_std.float())
        self.nets = nn.ModuleList(self._mlp() for _ in channels)
        self.reset_parameters(generator if generator is not None else torch.Generator().manual_seed(0))

    def _mlp(self) -> nn.Sequential:
        sizes = [self.n_inputs, *([self.hidden] * self.depth)]
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            layers += [nn.utils.skip_init(nn.Linear, a, b, dtype=torch.float32), nn.ReLU()]
        layers.append(nn.utils.skip_init(nn.Linear, self.hidden, 1, dtype=torch.float32))
        return nn.Sequential(*layers)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator) -> None:
        """Redraw every weight from ``generator`` (CPU generator; parameters may be on any device)."""
        for net in self.nets:
            linears = [m for m in net if isinstance(m, nn.Linear)]
            for i, lin in enumerate(linears):
                fan_in = lin.in_features
                # He-uniform for layers feeding a ReLU, PyTorch's default bound for the output layer
                bound = math.sqrt(6.0 / fan_in) if i < len(linears) - 1 else 1.0 / math.sqrt(fan_in)
                w = torch.empty(lin.weight.shape, dtype=torch.float64).uniform_(-bound, bound, generator=generator)
                lin.weight.copy_(w)
                lin.bias.zero_()

    @property
    def n_levels(self) -> int:
        """L, the temperature levels the features hold (``F - 3 - Lq``; ``(F - 3) / 2`` with all humidity levels)."""
        profile = self.n_inputs - len(GEOMETRY_FEATURES)
        return profile // 2 if self.humidity_levels is None else profile - self.humidity_levels

    @property
    def n_channels(self) -> int:
        """C, the number of channels."""
        return len(self.channels)

    def standardised(self, features: Tensor) -> Tensor:
        """Standardised outputs ``(*batch, C)`` (what the training loss sees) from features ``(*batch, F)``."""
        if features.shape[-1] != self.n_inputs:
            raise ValueError(f"the network reads {self.n_inputs} features, got {features.shape[-1]}")
        z = (features - self.input_mean) / self.input_std
        return torch.cat([net(z) for net in self.nets], dim=-1)

    def forward(self, features: Tensor) -> Tensor:
        """Brightness temperatures ``(*batch, C)`` (K) from features ``(*batch, F)`` (the network's dtype/device)."""
        return self.standardised(features) * self.output_std + self.output_mean


@dataclass(frozen=True, eq=False)
class LearnedRadianceOperator:
    """`RadianceNetwork` as a `dacast.obs.ObsOperator` on a `ColumnAtmosphere`.

    Observations are ordered fov-major, channel-minor: observation ``fov * C + c``
    is channel ``network.channels[c]`` of field of view ``fov``.

    Attributes:
        model: the twin model whose states are read.
        network: the trained network (its level count must be the model's).
        columns: observed column of each field of view, shape ``(n_fov,)``, integer.
        scan_deg: scan angle of each field of view, shape ``(n_fov,)`` (deg).
        zenith_deg: satellite zenith angle, shape ``(n_fov,)`` (deg).
        error_std: observation-error standard deviations, scalar or shape ``(n_obs,)`` (K).
        locations: observation coordinates for localization, shape ``(n_obs, ndim)``
            (e.g. ``(column, weighting-function height)``), given by the caller.
    """

    model: ColumnAtmosphere
    network: RadianceNetwork
    columns: Tensor
    scan_deg: Tensor
    zenith_deg: Tensor
    error_std: Tensor
    locations: Tensor

    def __post_init__(self) -> None:
        columns = torch.as_tensor(self.columns)
        if columns.ndim != 1 or columns.dtype.is_floating_point or columns.dtype == torch.bool:
            raise ValueError(f"columns must be a 1-D integer tensor, got shape {tuple(columns.shape)} {columns.dtype}")
        columns = columns.long().cpu()
        n_fov, n_col = columns.numel(), self.model.n_columns
        if n_fov and (int(columns.min()) < 0 or int(columns.max()) >= n_col):
            raise ValueError(
                f"columns must lie in [0, {n_col - 1}], got min {int(columns.min())}, max {int(columns.max())}"
            )
        object.__setattr__(self, "columns", columns)
        for name in ("scan_deg", "zenith_deg"):
            value = torch.as_tensor(getattr(self, name), dtype=torch.float64).cpu()
            if value.shape != (n_fov,):
                raise ValueError(f"{name} must have shape ({n_fov},) (one per column), got {tuple(value.shape)}")
            object.__setattr__(self, name, value)
        if self.network.n_levels != self.model.n_levels:
            raise ValueError(
                f"the network reads {self.network.n_inputs} features ({self.network.n_levels} levels), "
                f"the model has {self.model.n_levels} levels"
            )
        n_obs = self.n_obs
        std = torch.as_tensor(self.error_std, dtype=torch.float64)
        std = std.expand(n_obs).clone() if std.ndim == 0 else std
        if std.shape != (n_obs,) or not bool((std > 0).all()):
            raise ValueError(f"error_std must be positive, a scalar or shape ({n_obs},), got shape {tuple(std.shape)}")
        object.__setattr__(self, "error_std", std)
        object.__setattr__(self, "locations", torch.as_tensor(self.locations))
        if self.locations.ndim != 2 or self.locations.shape[0] != n_obs:
            raise ValueError(f"locations must have shape ({n_obs}, ndim), got {tuple(self.locations.shape)}")

    @property
    def n_state(self) -> int:
        """Length of the state vector read, ``model.n_state``."""
        return self.model.n_state

    @property
    def channels(self) -> tuple[int, ...]:
        """Channel numbers, in observation order within a field of view."""
        return self.network.channels

    @property
    def n_fov(self) -> int:
        """Fields of view."""
        return int(self.columns.numel())

    @property
    def n_obs(self) -> int:
        """Observations, ``n_fov * C``."""
        return self.n_fov * self.network.n_channels

    def __call__(self, x: Tensor) -> Tensor:
        """Brightness temperatures: states ``(*batch, n_state)`` -> ``(*batch, n_obs)`` (K), x's dtype and device.

        The network runs in its own dtype and device. Without a gradient on ``x``
        it runs under `torch.no_grad`; with one, the result is differentiable in ``x``.
        """
        if x.shape[-1] != self.n_state:
            raise ValueError(f"state length {x.shape[-1]} does not match the operator's {self.n_state}")
        param = next(self.network.parameters())
        kw = {"dtype": param.dtype, "device": param.device}
        with torch.set_grad_enabled(torch.is_grad_enabled() and x.requires_grad):
            t, q = self.model.profiles(x, self.columns)  # (*batch, n_fov, L)
            lat = self.model.latitude[self.columns]
            geometry = [g.to(**kw) for g in (self.scan_deg, self.zenith_deg, lat)]
            features = radiance_features(t.to(**kw), q.to(**kw), *geometry, self.network.humidity_levels)
            tb = self.network(features)  # (*batch, n_fov, C)
        return tb.reshape(*x.shape[:-1], self.n_obs).to(dtype=x.dtype, device=x.device)


__all__ = [
    "AMSU_CHANNELS",
    "GEOMETRY_FEATURES",
    "Q_TINY",
    "LearnedRadianceOperator",
    "RadianceNetwork",
    "check_humidity_levels",
    "feature_names",
    "radiance_features",
]
