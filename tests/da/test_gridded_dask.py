"""The gridded LETKF as domain tiles with halos on a Dask LocalCluster equals the single-process analysis."""

from __future__ import annotations

import pytest
import torch
from dask.distributed import Client
from test_gridded_letkf import DX, gridded_problem, keep_obs

from dacast.da import GriddedLETKFConfig, gridded_letkf, gridded_letkf_dask
from dacast.da.gridded_dask import tile_bounds


@pytest.fixture
def client(inprocess_dask: Client) -> Client:
    return inprocess_dask


@pytest.mark.parametrize(
    ("stride", "tiles"), [(1, (2, 2)), (1, (3, 1)), (2, (2, 2)), (2, (1, 3)), (4, (2, 1))], ids=str
)
def test_tiles_equal_single_process(client: Client, stride: int, tiles: tuple[int, int]) -> None:
    prior, y, op = gridded_problem(shape=(24, 32), seed=7)
    cfg = GriddedLETKFConfig(localization=1.0, max_obs=30, rtpp=0.6, rtps=0.2, weight_stride=stride)
    single = gridded_letkf(prior, y, op, cfg, dx_km=DX)
    result = gridded_letkf_dask(client, prior, y, op, cfg, dx_km=DX, tiles=tiles)
    tiled = result.ensemble
    torch.testing.assert_close(tiled, single.ensemble, rtol=0, atol=1e-12)
    torch.testing.assert_close(result.innovation, single.innovation, rtol=0, atol=0)
    torch.testing.assert_close(result.mean, tiled.mean(0), rtol=0, atol=0)
    assert (tiled.mean(0) - prior.mean(0)).abs().max() > 0.1


def test_tile_without_observations_in_reach(client: Client) -> None:
    """A tile whose halo holds no observation gets its prior back (relaxed identically)."""
    prior, y, op = gridded_problem(shape=(32, 32), frac=1.0, seed=8)
    near = ((op.locations >= 1.0) & (op.locations < 3.0)).all(-1)  # a 2 km square
    part = keep_obs(op, near)
    cfg = GriddedLETKFConfig(localization=0.5, weight_stride=2)
    single = gridded_letkf(prior, y[near], part, cfg, dx_km=DX).ensemble
    tiled = gridded_letkf_dask(client, prior, y[near], part, cfg, dx_km=DX, tiles=(4, 4)).ensemble
    torch.testing.assert_close(tiled, single, rtol=0, atol=1e-12)
    # tile (2, 2) spans 8-12 km and its halo of coarse points reaches 12 km: > 3.65 L from 1-3 km (periodic 16 km)
    torch.testing.assert_close(tiled[..., 16:24, 16:24], prior[..., 16:24, 16:24], rtol=0, atol=1e-12)
    assert (tiled[..., 2:6, 2:6] - prior[..., 2:6, 2:6]).abs().max() > 0.1


def test_no_observations_returns_the_prior(client: Client) -> None:
    prior, _, op = gridded_problem(shape=(8, 8))
    empty = keep_obs(op, torch.zeros(op.n_obs, dtype=torch.bool))
    result = gridded_letkf_dask(client, prior, torch.zeros(0), empty, GriddedLETKFConfig(), dx_km=DX)
    torch.testing.assert_close(result.ensemble, prior, rtol=0, atol=0)
    assert result.innovation.shape == (0,)


def test_tile_bounds_align_with_the_weight_grid() -> None:
    assert tile_bounds(256, 3, 4) == [(0, 84), (84, 172), (172, 256)]
    assert tile_bounds(10, 3, 1) == [(0, 3), (3, 7), (7, 10)]
    with pytest.raises(ValueError, match="cannot split"):
        tile_bounds(8, 5, 2)
