"""Observation operators: map states ``(*batch, n_state)`` to ``(*batch, n_obs)``.

Every operator carries its observation locations (for localization) and
observation-error standard deviations, and meets the `ObsOperator` protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor


@runtime_checkable
class ObsOperator(Protocol):
    """Maps an ensemble to observation space.

    Attributes:
        n_state: length of the state vector it reads.
        locations: shape ``(n_obs, ndim)``, observation coordinates in grid units.
        error_std: shape ``(n_obs,)``, observation-error standard deviations
            (observation units). Errors are uncorrelated (diagonal R).
    """

    n_state: int
    locations: Tensor
    error_std: Tensor

    def __call__(self, x: Tensor) -> Tensor:
        """``(*batch, n_state)`` -> ``(*batch, n_obs)``."""
        ...


def _as_std(error_std: float | Tensor, n_obs: int) -> Tensor:
    std = torch.as_tensor(error_std, dtype=torch.float64)
    if std.ndim == 0:
        std = std.expand(n_obs).clone()
    if std.shape != (n_obs,):
        raise ValueError(f"error_std must be a scalar or have shape ({n_obs},), got {tuple(std.shape)}")
    if not bool((std > 0).all()):
        raise ValueError("observation error standard deviations must be positive")
    return std


@dataclass(frozen=True, eq=False)
class IndexObs:
    """Observes a subset of state entries directly: ``y = x[..., indices]``.

    Build with `identity`, `subset` or `every_kth`.
    """

    n_state: int
    indices: Tensor
    error_std: Tensor
    locations: Tensor

    def __post_init__(self) -> None:
        if self.indices.ndim != 1:
            raise ValueError("indices must be 1-D")
        if self.indices.numel() and (int(self.indices.min()) < 0 or int(self.indices.max()) >= self.n_state):
            raise ValueError(
                f"observation indices must lie in [0, {self.n_state - 1}], "
                f"got min {int(self.indices.min())}, max {int(self.indices.max())}"
            )

    @property
    def n_obs(self) -> int:
        """Number of observations."""
        return int(self.indices.numel())

    def __call__(self, x: Tensor) -> Tensor:
        """``(*batch, n_state)`` -> ``(*batch, n_obs)``."""
        return x[..., self.indices.to(x.device)]

    def matrix(self) -> Tensor:
        """The equivalent dense H, shape ``(n_obs, n_state)``."""
        h = torch.zeros((self.n_obs, self.n_state), dtype=torch.float64)
        h[torch.arange(self.n_obs), self.indices] = 1.0
        return h


def _grid_locations(indices: Tensor, grid_coords: Tensor | None) -> Tensor:
    if grid_coords is None:
        return indices.to(torch.float64)[:, None]
    return grid_coords[indices]


def subset(
    n_state: int, indices: list[int] | Tensor, error_std: float | Tensor, grid_coords: Tensor | None = None
) -> IndexObs:
    """Observe ``x[indices]`` with error ``error_std``.

    Args:
        n_state: state length.
        indices: observed state indices, shape ``(n_obs,)``.
        error_std: scalar or shape ``(n_obs,)``.
        grid_coords: optional grid coordinates ``(n_state, ndim)``; default: the index itself.
    """
    idx = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= n_state):
        raise ValueError(
            f"observation indices must lie in [0, {n_state - 1}], got min {int(idx.min())}, max {int(idx.max())}"
        )
    return IndexObs(
        n_state=n_state,
        indices=idx,
        error_std=_as_std(error_std, idx.numel()),
        locations=_grid_locations(idx, grid_coords),
    )


def identity(n_state: int, error_std: float | Tensor, grid_coords: Tensor | None = None) -> IndexObs:
    """Observe every state entry."""
    return subset(n_state, torch.arange(n_state), error_std, grid_coords)


def every_kth(
    n_state: int, k: int, error_std: float | Tensor, offset: int = 0, grid_coords: Tensor | None = None
) -> IndexObs:
    """Observe entries ``offset, offset + k, offset + 2k, ...``."""
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    return subset(n_state, torch.arange(offset, n_state, k), error_std, grid_coords)


@dataclass(frozen=True, eq=False)
class MatrixObs:
    """Any linear operator ``y = H x`` with a dense ``H`` of shape ``(n_obs, n_state)``."""

    h: Tensor
    error_std: Tensor
    locations: Tensor
    n_state: int = field(init=False)

    def __post_init__(self) -> None:
        if self.h.ndim != 2:
            raise ValueError(f"H must be 2-D, got shape {tuple(self.h.shape)}")
        object.__setattr__(self, "n_state", int(self.h.shape[1]))
        if self.locations.shape[0] != self.h.shape[0]:
            raise ValueError("locations must have one row per observation")

    @property
    def n_obs(self) -> int:
        """Number of observations."""
        return int(self.h.shape[0])

    def __call__(self, x: Tensor) -> Tensor:
        """``(*batch, n_state)`` -> ``(*batch, n_obs)``."""
        return x @ self.h.to(dtype=x.dtype, device=x.device).T

    def matrix(self) -> Tensor:
        """H itself, shape ``(n_obs, n_state)``."""
        return self.h


def matrix(h: Tensor, error_std: float | Tensor, locations: Tensor | None = None) -> MatrixObs:
    """A dense linear operator; default locations: the H-weighted mean grid index of each row."""
    h = torch.as_tensor(h, dtype=torch.float64)
    if locations is None:
        w = h.abs()
        idx = torch.arange(h.shape[1], dtype=torch.float64)
        locations = ((w @ idx) / w.sum(1).clamp_min(1e-300))[:, None]
    return MatrixObs(h=h, error_std=_as_std(error_std, h.shape[0]), locations=locations)


@dataclass(frozen=True, eq=False)
class PointwiseObs:
    """A function of directly observed entries, ``y = transform(x[indices])``; the base of the nonlinear ones.

    Locations and error standard deviations are the base `IndexObs`'s.
    """

    base: IndexObs

    @property
    def n_state(self) -> int:
        return self.base.n_state

    @property
    def locations(self) -> Tensor:
        return self.base.locations

    @property
    def error_std(self) -> Tensor:
        return self.base.error_std

    @property
    def n_obs(self) -> int:
        """Number of observations."""
        return self.base.n_obs

    def transform(self, v: Tensor) -> Tensor:
        """The observed function of ``v = x[..., indices]``, ``(*batch, n_obs)`` -> ``(*batch, n_obs)``."""
        return v

    def __call__(self, x: Tensor) -> Tensor:
        """``(*batch, n_state)`` -> ``(*batch, n_obs)``."""
        return self.transform(self.base(x))


@dataclass(frozen=True, eq=False)
class SquareObs(PointwiseObs):
    """Nonlinear: observes ``x[indices]**2 / scale`` (a quadratic, intensity-like operator)."""

    scale: float = 1.0

    def transform(self, v: Tensor) -> Tensor:
        """``v**2 / scale``."""
        return v**2 / self.scale


@dataclass(frozen=True, eq=False)
class ArctanObs(PointwiseObs):
    """Nonlinear and saturating: observes ``arctan(x[indices])`` (radians), the usual nonlinear test operator
    of Lorenz-96 score-filter studies (Bao et al. 2024): large values are nearly unobservable."""

    def transform(self, v: Tensor) -> Tensor:
        """``arctan(v)``."""
        return torch.atan(v)


@dataclass(frozen=True, eq=False)
class StackedObs:
    """Several operators on the same state as one: ``y = concat(part(x) for part in parts)``.

    How an observing system of several instruments (radiosondes and a satellite)
    reaches a filter in one analysis. Build with `stacked`.
    """

    parts: tuple[ObsOperator, ...]

    def __post_init__(self) -> None:
        if not self.parts:
            raise ValueError("stacked needs at least one operator")
        sizes = {int(p.n_state) for p in self.parts}
        if len(sizes) != 1:
            raise ValueError(f"stacked operators read states of different lengths: {sorted(sizes)}")
        dims = {int(p.locations.shape[1]) for p in self.parts}
        if len(dims) != 1:
            raise ValueError(f"stacked operators have locations of different dimensions: {sorted(dims)}")

    @property
    def n_state(self) -> int:
        return int(self.parts[0].n_state)

    @property
    def locations(self) -> Tensor:
        return torch.cat([p.locations.to(torch.float64) for p in self.parts])

    @property
    def error_std(self) -> Tensor:
        return torch.cat([p.error_std.to(torch.float64) for p in self.parts])

    @property
    def n_obs(self) -> int:
        """Number of observations of all parts."""
        return int(sum(p.error_std.numel() for p in self.parts))

    def slices(self) -> tuple[slice, ...]:
        """Where each part's observations sit in ``y``, in the order of `parts`."""
        out, start = [], 0
        for p in self.parts:
            n = int(p.error_std.numel())
            out.append(slice(start, start + n))
            start += n
        return tuple(out)

    def __call__(self, x: Tensor) -> Tensor:
        """``(*batch, n_state)`` -> ``(*batch, n_obs)``, the parts' observations one after the other."""
        return torch.cat([p(x) for p in self.parts], dim=-1)


def stacked(*parts: ObsOperator) -> StackedObs:
    """One operator observing what every one of ``parts`` observes, in that order (see `StackedObs`)."""
    return StackedObs(parts=tuple(parts))
