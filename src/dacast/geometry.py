"""Grid coordinates, periodic distances and the k-d tree neighbour search used by localization.

Shared by the models (their grids), the observation operators (their locations)
and the filters (localization). It imports nothing else from the package, so
``dacast.models`` and ``dacast.obs`` need not import each other for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True, kw_only=True)
class Grid:
    """Coordinates of the state's grid points.

    Attributes:
        coords: shape ``(n_points, ndim)``, in grid units (e.g. grid spacings or km).
        period: one entry per dimension: the domain length where that
            dimension is periodic, ``None`` where it is not.
    """

    coords: Tensor
    period: tuple[float | None, ...]

    def __post_init__(self) -> None:
        if self.coords.ndim != 2:
            raise ValueError(f"coords must have shape (n_points, ndim), got {tuple(self.coords.shape)}")
        if len(self.period) != self.coords.shape[1]:
            raise ValueError(f"period has {len(self.period)} entries but coords have {self.coords.shape[1]} dimensions")

    @property
    def n_points(self) -> int:
        """Number of grid points."""
        return int(self.coords.shape[0])

    @property
    def ndim(self) -> int:
        """Number of spatial dimensions."""
        return int(self.coords.shape[1])

    @staticmethod
    def ring(n: int, spacing: float = 1.0) -> Grid:
        """A periodic 1-D grid of ``n`` points ``0, spacing, ..., (n-1) spacing``."""
        coords = torch.arange(n, dtype=torch.float64)[:, None] * spacing
        return Grid(coords=coords, period=(n * spacing,))

    @staticmethod
    def cartesian(shape: tuple[int, ...], spacing: float = 1.0, periodic: bool = False) -> Grid:
        """A regular 1-D/2-D/3-D grid in C order; coordinates in units of ``spacing``."""
        axes = [torch.arange(n, dtype=torch.float64) * spacing for n in shape]
        mesh = torch.meshgrid(*axes, indexing="ij")
        coords = torch.stack([m.reshape(-1) for m in mesh], dim=-1)
        period = tuple(n * spacing if periodic else None for n in shape)
        return Grid(coords=coords, period=period)


def pairwise_distances(a: Tensor, b: Tensor, period: tuple[float | None, ...]) -> Tensor:
    """Euclidean distances between point sets, periodic where ``period`` says so.

    Dense: use for small sets only; `neighbours` is the scalable search.

    Args:
        a: shape ``(n_a, ndim)``.
        b: shape ``(n_b, ndim)``.
        period: per-dimension domain length or ``None``.

    Returns:
        Distances, shape ``(n_a, n_b)``, in the coordinates' units.
    """
    d = (a[:, None, :] - b[None, :, :]).abs()
    for axis, p in enumerate(period):
        if p is not None:
            d[..., axis] = torch.minimum(d[..., axis] % p, p - d[..., axis] % p)
    return torch.sqrt((d * d).sum(-1))


@dataclass(frozen=True)
class Neighbours:
    """Observations near each grid point, padded to a common width.

    Attributes:
        index: shape ``(n_points, width)``, observation indices; padding
            entries point at observation 0 and have ``distance = inf``.
        distance: shape ``(n_points, width)``, sorted ascending per point.
    """

    index: Tensor
    distance: Tensor

    @property
    def count(self) -> Tensor:
        """Number of real neighbours per point, shape ``(n_points,)``."""
        return torch.isfinite(self.distance).sum(-1)


def _wrap(x: np.ndarray, box: np.ndarray) -> np.ndarray:
    """``x mod box`` in ``[0, box)``: np.mod rounds a tiny negative ``x`` up to ``box`` itself."""
    m = np.mod(x, box)
    return np.where(m >= box, 0.0, m)


def neighbours(grid: Grid, obs_coords: Tensor, cutoff: float, max_obs: int | None = None) -> Neighbours:
    """All observations within ``cutoff`` of each grid point, via a k-d tree.

    Never builds the dense ``n_points x n_obs`` distance matrix: memory is
    ``O(n_points * width)`` where width is the largest neighbour count
    (or ``max_obs`` when given, keeping the nearest ones).

    Args:
        grid: state grid with ``n_points`` points.
        obs_coords: observation coordinates, shape ``(n_obs, ndim)``, same units as the grid.
        cutoff: search radius (observations at distance < cutoff are kept).
        max_obs: optional cap on observations per point (the nearest are kept).

    Returns:
        `Neighbours` with index/distance arrays of shape ``(n_points, width)``.
    """
    from scipy.spatial import cKDTree  # here, not at the top: the models import this module for `Grid` alone

    if obs_coords.ndim != 2 or obs_coords.shape[1] != grid.ndim:
        raise ValueError(f"observation coordinates must have shape (n_obs, {grid.ndim}), got {tuple(obs_coords.shape)}")
    if cutoff <= 0:
        raise ValueError(f"cutoff must be positive, got {cutoff}")
    pts = grid.coords.detach().cpu().numpy().astype(np.float64)
    obs = obs_coords.detach().cpu().numpy().astype(np.float64)
    n_points = pts.shape[0]
    if obs.shape[0] == 0:
        empty = torch.zeros((n_points, 0))
        return Neighbours(index=empty.long(), distance=empty.double())
    # cKDTree's periodic boxes need every dimension periodic: give the
    # non-periodic ones a box so wide that nothing wraps within the cutoff.
    lo = np.minimum(pts.min(0), obs.min(0))
    hi = np.maximum(pts.max(0), obs.max(0))
    # No two points are farther apart than the domain's diameter: clamp the
    # cutoff there so an infinite one (no localization) keeps the boxes finite.
    span = np.array([p / 2.0 if p is not None else hi[i] - lo[i] for i, p in enumerate(grid.period)])
    cutoff = min(float(cutoff), 2.0 * float(np.sqrt((span * span).sum())) + 1.0)
    box = np.array([p if p is not None else (hi[i] - lo[i]) + 2.0 * cutoff + 1.0 for i, p in enumerate(grid.period)])
    lo = np.where([p is None for p in grid.period], lo, 0.0)
    tree = cKDTree(_wrap(obs - lo, box), boxsize=box)
    query_pts = _wrap(pts - lo, box)
    counts = tree.query_ball_point(query_pts, r=cutoff, return_length=True)
    width = int(counts.max()) if counts.size else 0
    if max_obs is not None:
        width = min(width, int(max_obs))
    if width == 0:
        empty = torch.zeros((n_points, 0))
        return Neighbours(index=empty.long(), distance=empty.double())
    dist, idx = tree.query(query_pts, k=width, distance_upper_bound=cutoff)
    dist = np.asarray(dist, dtype=np.float64).reshape(n_points, width)
    idx = np.asarray(idx).reshape(n_points, width)
    missing = ~np.isfinite(dist)
    idx[missing] = 0
    return Neighbours(index=torch.from_numpy(idx.astype(np.int64)), distance=torch.from_numpy(dist))
