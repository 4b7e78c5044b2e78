"""Domain tiles: windows cover exactly the halo around each tile (periodic), owners, and tile neighbour tables."""

from __future__ import annotations

import pytest
import torch
from test_gridded_letkf import DX, gridded_problem

from dacast.da import GriddedLETKFConfig
from dacast.da.gridded import prepare
from dacast.da.tiles import TileLayout, halo_reach, localise, tile_table


@pytest.mark.parametrize(
    ("shape", "parts", "stride"), [((32, 48), (2, 3), 1), ((64, 64), (4, 4), 2), ((40, 24), (1, 2), 4)]
)
def test_pieces_fill_each_window_from_the_owning_tiles(
    shape: tuple[int, int], parts: tuple[int, int], stride: int
) -> None:
    layout = TileLayout(shape, parts, stride, halo=5)
    grid = torch.arange(shape[0] * shape[1]).reshape(shape)
    tiles = [grid[slice(*layout.box(t)[0]), slice(*layout.box(t)[1])] for t in range(layout.n_tiles)]
    for t in range(layout.n_tiles):
        (oy, ox), (wy, wx) = layout.window(t)
        want = grid[(torch.arange(wy) + oy) % shape[0]][:, (torch.arange(wx) + ox) % shape[1]]
        got = torch.full((wy, wx), -1)
        for p in layout.pieces(t):
            got[p.dst] = tiles[p.source][p.src]
        assert torch.equal(got, want)
    assert torch.equal(layout.owner(grid.reshape(-1)).reshape(shape)[0, 0], torch.tensor(0))
    owners = layout.owner(grid.reshape(-1)).reshape(shape)
    for t in range(layout.n_tiles):
        (y0, y1), (x0, x1) = layout.box(t)
        assert (owners[y0:y1, x0:x1] == t).all()


@pytest.mark.parametrize(("shape", "parts"), [((32, 48), (2, 3)), ((40, 24), (1, 2)), ((30, 30), (3, 1))])
def test_per_variable_halos_fill_only_each_variable_s_own_reach(shape: tuple[int, int], parts: tuple[int, int]) -> None:
    reach = ((2, 3, 1, 0), (2, 3, 1, 0), (4, 1, 2, 5), (0, 0, 0, 0))  # (south, north, west, east) per variable
    layout = TileLayout(shape, parts, 1, halo=reach)
    assert [g for g, _ in layout.groups()] == [slice(0, 2), slice(2, 3), slice(3, 4)]
    assert layout.pads(0) == ((4, 3) if parts[0] > 1 else (0, 0))
    assert layout.pads(1) == ((2, 5) if parts[1] > 1 else (0, 0))
    grid = torch.arange(4 * shape[0] * shape[1]).reshape(4, *shape)
    tiles = [grid[:, slice(*layout.box(t)[0]), slice(*layout.box(t)[1])] for t in range(layout.n_tiles)]
    for t in range(layout.n_tiles):
        (oy, ox), (wy, wx) = layout.window(t)
        want = grid[:, (torch.arange(wy) + oy) % shape[0]][:, :, (torch.arange(wx) + ox) % shape[1]]
        got = torch.full((4, wy, wx), -1)
        for p in layout.pieces(t):
            assert (got[p.var, p.dst[0], p.dst[1]] == -1).all()  # no cell twice
            got[p.var, p.dst[0], p.dst[1]] = tiles[p.source][p.var, p.src[0], p.src[1]]
        (ly, hy), (lx, hx) = layout.pads(0), layout.pads(1)
        for v, (s, n, w, e) in enumerate(reach):
            rows = slice(0, wy) if parts[0] == 1 else slice(ly - s, wy - hy + n)
            cols = slice(0, wx) if parts[1] == 1 else slice(lx - w, wx - hx + e)
            assert torch.equal(got[v, rows, cols], want[v, rows, cols])
            got[v, rows, cols] = -1
        assert (got == -1).all()  # nothing outside a variable's own reach


def test_halo_mask_is_the_union_of_what_a_worker_s_windows_read() -> None:
    reach = ((2, 3, 1, 0), (3, 1, 2, 2), (1, 1, 1, 1))
    layout = TileLayout((24, 32), (2, 2), 1, halo=reach)
    # tiles 0 and 1 side by side on one worker: from tile 2 (below them, periodic both ways) they read
    # every column of its first and last rows, each variable as far as its own reach
    mask = layout.halo_mask(2, [0, 1], 3)
    for v, (s, n, _, _) in enumerate(reach):
        want = torch.zeros(12, 16, dtype=torch.bool)
        want[:n] = True  # north of tiles 0, 1 ... is the first rows of tile 2
        want[12 - s :] = True  # ... south of them, across the periodic edge, its last rows
        assert torch.equal(mask[v], want), v
    # tile 0 (above tile 2) reads all of it; tile 1 reads its corners again: sent once for both
    above, beside = layout.halo_mask(2, [0], 3), layout.halo_mask(2, [1], 3)
    assert torch.equal(above, mask) and (beside <= mask).all() and 0 < beside.sum() < mask.sum()
    assert not layout.halo_mask(0, [0], 3).any()  # a tile's own window reads it in place


def test_halo_reach_propagates_read_boxes_back_through_the_steps() -> None:
    reads = (((-1, 1, 0, 0), (0, 2, 0, 0)), ((0, 0, -1, 0), (0, 0, 0, 0)))  # reads[b][a], two variables
    assert halo_reach(reads, 0) == ((0, 0, 0, 0), (0, 0, 0, 0))
    assert halo_reach(reads, 1) == ((1, 1, 1, 0), (0, 2, 0, 0))
    # a step earlier: a is read where a or b is needed after it, b where a is
    assert halo_reach(reads, 2) == ((2, 2, 1, 0), (1, 3, 1, 0))
    assert halo_reach(reads, 1, ((0, 0, 0, 0), (3, 0, 0, 0))) == ((3, 1, 1, 0), (3, 2, 0, 0))
    with pytest.raises(ValueError, match="variables"):
        halo_reach(reads, 1, ((0, 0, 0, 0),))
    with pytest.raises(ValueError, match="halo"):
        TileLayout((32, 32), (2, 2), 1, halo=((1, 1, 1, -1),))


def test_one_tile_along_an_axis_needs_no_halo_there() -> None:
    layout = TileLayout((32, 32), (1, 4), 1, halo=6)
    assert layout.window(1) == ((0, 8 - 6), (32, 8 + 12))
    assert layout.ring(0) == 0 and layout.ring(1) == 1


def test_too_many_tiles_for_the_halo_is_refused() -> None:
    with pytest.raises(ValueError, match="use fewer tiles"):
        TileLayout((16, 16), (2, 1), 1, halo=6)  # 8 + 12 > 16
    with pytest.raises(ValueError, match="cannot split"):
        TileLayout((16, 16), (1, 9), 2, halo=1)


@pytest.mark.parametrize("stride", [1, 2])
def test_tile_table_is_the_global_table_of_its_weight_points(stride: int) -> None:
    prior, y, op = gridded_problem(shape=(24, 32), seed=3)
    cfg = GriddedLETKFConfig(localization=1.0, max_obs=30, weight_stride=stride)
    _, _, index, sqrt_w, _ = prepare(prior, y, op, cfg, DX, None)
    layout = TileLayout((24, 32), (2, 2), stride, halo=2)
    for t in range(4):
        (y0, y1), (x0, x1) = layout.box(t)
        idx, sw = tile_table(layout, t, op.locations, cfg, DX, prior.dtype)
        rows = torch.arange(y0 // stride, y1 // stride + (stride > 1)) % (24 // stride)
        cols = torch.arange(x0 // stride, x1 // stride + (stride > 1)) % (32 // stride)
        g_idx, g_sw = index[rows][:, cols], sqrt_w[rows][:, cols]
        width = sw.shape[-1]
        assert torch.equal(sw, g_sw[..., :width]) and (g_sw[..., width:] == 0).all()
        live = sw > 0
        assert torch.equal(idx[live], g_idx[..., :width][live])


def test_localise_reindexes_into_the_used_observations() -> None:
    index = torch.tensor([[5, 2, 9], [2, 7, 0]])
    sqrt_w = torch.tensor([[1.0, 0.5, 0.0], [0.3, 0.2, 0.0]])
    used, local = localise(index, sqrt_w)
    assert used.tolist() == [2, 5, 7]
    assert torch.equal(used[local][sqrt_w > 0], index[sqrt_w > 0])
    used, _ = localise(index, torch.zeros_like(sqrt_w))
    assert used.tolist() == [0]
