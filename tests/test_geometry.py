"""Grids, periodic distances and the k-d tree neighbour search against a brute-force dense search."""

from __future__ import annotations

import math
import tracemalloc

import pytest
import torch

import dacast.obs
from dacast.geometry import Grid, Neighbours, neighbours, pairwise_distances


def _brute_force(grid: Grid, obs: torch.Tensor, cutoff: float) -> list[dict[int, float]]:
    """Per grid point: {obs index: distance} for every observation closer than ``cutoff``."""
    dense = pairwise_distances(grid.coords, obs, grid.period)
    return [{j: float(dense[i, j]) for j in range(obs.shape[0]) if dense[i, j] < cutoff} for i in range(grid.n_points)]


def _as_dicts(grid: Grid, obs: torch.Tensor, cutoff: float, max_obs: int | None = None) -> list[dict[int, float]]:
    nb = neighbours(grid, obs, cutoff, max_obs)
    assert nb.index.shape == nb.distance.shape
    assert nb.index.shape[0] == grid.n_points
    assert nb.index.dtype == torch.int64 and nb.distance.dtype == torch.float64
    out = []
    for i in range(grid.n_points):
        dist = nb.distance[i]
        finite = torch.isfinite(dist)
        # Real neighbours first, sorted ascending; padding points at obs 0.
        assert bool((dist[:-1] <= dist[1:]).all())
        assert bool((nb.index[i][~finite] == 0).all())
        assert int(nb.count[i]) == int(finite.sum())
        entries = {int(j): float(d) for j, d in zip(nb.index[i][finite], dist[finite], strict=True)}
        assert len(entries) == int(finite.sum())  # no duplicates
        out.append(entries)
    return out


def _assert_same(found: list[dict[int, float]], expected: list[dict[int, float]]) -> None:
    for i, (f, e) in enumerate(zip(found, expected, strict=True)):
        assert f.keys() == e.keys(), (i, sorted(f), sorted(e))
        for j in e:
            assert math.isclose(f[j], e[j], rel_tol=1e-12, abs_tol=1e-12), (i, j, f[j], e[j])


def _random_obs(lo: list[float], hi: list[float], n: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    u = torch.rand((n, len(lo)), generator=gen, dtype=torch.float64)
    return torch.tensor(lo, dtype=torch.float64) + u * (torch.tensor(hi) - torch.tensor(lo)).double()


def test_grid_constructors() -> None:
    ring = Grid.ring(8, spacing=0.5)
    assert ring.n_points == 8 and ring.ndim == 1 and ring.period == (4.0,)
    assert ring.coords.squeeze(-1).tolist() == [0.5 * i for i in range(8)]
    cart = Grid.cartesian((3, 4), spacing=2.0)
    assert cart.coords.shape == (12, 2) and cart.period == (None, None)
    assert cart.coords[5].tolist() == [2.0, 2.0]  # C order: index 5 = (1, 1)
    assert Grid.cartesian((3, 4, 5), periodic=True).period == (3.0, 4.0, 5.0)
    with pytest.raises(ValueError, match="n_points, ndim"):
        Grid(coords=torch.zeros(5), period=(None,))
    with pytest.raises(ValueError, match="period has"):
        Grid(coords=torch.zeros((5, 2)), period=(None,))


def test_pairwise_distances_periodic_values() -> None:
    a = torch.arange(4, dtype=torch.float64)[:, None]
    expected = torch.tensor([[0, 1, 2, 1], [1, 0, 1, 2], [2, 1, 0, 1], [1, 2, 1, 0]], dtype=torch.float64)
    torch.testing.assert_close(pairwise_distances(a, a, (4.0,)), expected)
    torch.testing.assert_close(pairwise_distances(a, a, (None,)), (a - a.T).abs())
    p = torch.tensor([[0.5, 0.5]], dtype=torch.float64)
    q = torch.tensor([[9.5, 3.5], [-0.5, 4.5]], dtype=torch.float64)
    torch.testing.assert_close(
        pairwise_distances(p, q, (10.0, None)), torch.tensor([[math.hypot(1, 3), math.hypot(1, 4)]]).double()
    )


@pytest.mark.parametrize("cutoff", [0.7, 3.3, 5.5, 25.0])
def test_ring_equals_brute_force(cutoff: float) -> None:
    grid = Grid.ring(40)
    obs = torch.cat([_random_obs([0.0], [40.0], 30, seed=1), torch.tensor([[0.0], [39.0], [-2.25], [41.5]]).double()])
    _assert_same(_as_dicts(grid, obs, cutoff), _brute_force(grid, obs, cutoff))


@pytest.mark.parametrize("periodic", [False, True])
@pytest.mark.parametrize("cutoff", [1.6, 3.2])
def test_2d_grid_equals_brute_force(periodic: bool, cutoff: float) -> None:
    grid = Grid.cartesian((12, 9), spacing=1.0, periodic=periodic)
    # Non-periodic: some observations outside the grid's extent too.
    lo, hi = ([0.0, 0.0], [12.0, 9.0]) if periodic else ([-2.0, -1.5], [13.0, 10.0])
    obs = _random_obs(lo, hi, 60, seed=2)
    _assert_same(_as_dicts(grid, obs, cutoff), _brute_force(grid, obs, cutoff))


@pytest.mark.parametrize("periodic", [False, True])
def test_3d_grid_equals_brute_force(periodic: bool) -> None:
    grid = Grid.cartesian((6, 5, 4), spacing=2.0, periodic=periodic)
    obs = _random_obs([0.0, 0.0, 0.0], [12.0, 10.0, 8.0], 50, seed=3)
    _assert_same(_as_dicts(grid, obs, 4.1), _brute_force(grid, obs, 4.1))


def test_periodic_wrap_is_used() -> None:
    """On a ring of 40, points 0 and 39 are 1 apart; on a line they are 39 apart."""
    obs = torch.tensor([[39.0]], dtype=torch.float64)
    nb = neighbours(Grid.ring(40), obs, 1.5)
    assert float(nb.distance[0, 0]) == 1.0
    assert int(nb.count[0]) == 1 and int(nb.count[20]) == 0
    nb_line = neighbours(Grid.cartesian((40,)), obs, 1.5)
    assert int(nb_line.count[0]) == 0 and int(nb_line.count[38]) == 1


@pytest.mark.parametrize(("grid", "cutoff"), [(Grid.ring(40), 9.5), (Grid.cartesian((8, 7), periodic=False), 4.5)])
def test_max_obs_keeps_nearest(grid: Grid, cutoff: float) -> None:
    obs = _random_obs([0.0] * grid.ndim, [8.0] * grid.ndim, 70, seed=4)
    max_obs = 5
    nb = neighbours(grid, obs, cutoff, max_obs=max_obs)
    assert nb.index.shape == (grid.n_points, max_obs)
    dense = pairwise_distances(grid.coords, obs, grid.period)
    for i in range(grid.n_points):
        near = torch.sort(dense[i][dense[i] < cutoff]).values[:max_obs]
        got = nb.distance[i][torch.isfinite(nb.distance[i])]
        torch.testing.assert_close(got, near, rtol=1e-12, atol=1e-12)
        # The indices really are those observations.
        idx = nb.index[i][: got.numel()]
        torch.testing.assert_close(dense[i][idx], got, rtol=1e-12, atol=1e-12)


def test_infinite_cutoff_keeps_every_observation() -> None:
    """No localization: every observation is a neighbour of every point, periodic or not."""
    for grid in (Grid.ring(20), Grid.cartesian((5, 4)), Grid.cartesian((4, 3, 2), periodic=True)):
        obs = grid.coords[::3] + 0.25
        nb = neighbours(grid, obs, math.inf)
        assert nb.index.shape == (grid.n_points, obs.shape[0])
        assert bool((nb.count == obs.shape[0]).all())
        _assert_same(_as_dicts(grid, obs, math.inf), _brute_force(grid, obs, math.inf))


def test_coordinates_at_the_period_edge() -> None:
    """Rounding in ``x mod period`` must not push a coordinate onto the box edge."""
    obs = torch.tensor([[-1e-18], [40.0], [-40.0]], dtype=torch.float64)
    nb = neighbours(Grid.ring(40), obs, 1.5)
    assert nb.distance[0].tolist() == [0.0, 0.0, 0.0]
    assert sorted(nb.index[0].tolist()) == [0, 1, 2]


def test_empty_and_invalid() -> None:
    grid = Grid.ring(10)
    nb = neighbours(grid, torch.zeros((0, 1), dtype=torch.float64), 3.0)
    assert nb.index.shape == (10, 0) and bool((nb.count == 0).all())
    far = neighbours(Grid.cartesian((10,)), torch.tensor([[100.0]], dtype=torch.float64), 3.0)
    assert far.index.shape == (10, 0)
    with pytest.raises(ValueError, match="observation coordinates"):
        neighbours(grid, torch.zeros((3, 2)), 3.0)
    with pytest.raises(ValueError, match="cutoff"):
        neighbours(grid, torch.zeros((3, 1)), 0.0)


def test_large_problem_is_memory_light() -> None:
    """200,000 grid points x 20,000 obs: a dense distance matrix would need 32 GB."""
    grid = Grid.cartesian((500, 400), periodic=True)
    obs = _random_obs([0.0, 0.0], [500.0, 400.0], 20_000, seed=5)
    tracemalloc.start()
    try:
        nb = neighbours(grid, obs, 4.0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert nb.index.shape[0] == 200_000
    width = nb.index.shape[1]
    assert 3 <= width < 40  # expected count π 4² / 10 ≈ 5
    assert peak < 300 * 2**20, peak  # numpy allocations stay O(n_points * width)
    mean_count = float(nb.count.double().mean())
    assert abs(mean_count - math.pi * 16 / 10) < 0.2
    # Spot check a few points against brute force.
    rows = torch.tensor([0, 12345, 199_999])
    dense = pairwise_distances(grid.coords[rows], obs, grid.period)
    for r, i in enumerate(rows.tolist()):
        expected = torch.sort(dense[r][dense[r] < 4.0]).values
        got = nb.distance[i][torch.isfinite(nb.distance[i])]
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_obs_re_exports_the_geometry() -> None:
    """``dacast.obs`` keeps offering the grid and the neighbour search (same objects)."""
    assert dacast.obs.Grid is Grid
    assert dacast.obs.Neighbours is Neighbours
    assert dacast.obs.neighbours is neighbours
    assert dacast.obs.pairwise_distances is pairwise_distances
