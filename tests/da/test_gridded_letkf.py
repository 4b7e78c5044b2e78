"""Gridded LETKF: equals the foundation LETKF at stride 1, coarse weights exact at the coarse
points and close elsewhere, one set of weights for all variables, tiles and radar outages."""

from __future__ import annotations

import pytest
import torch

from dacast.da import GriddedLETKFConfig, LETKFConfig, gridded_letkf, gridded_neighbours, letkf, transform_update
from dacast.da.analysis import Analysis, relax
from dacast.da.gridded import prepare
from dacast.da.gridded_factors import transform_factors
from dacast.da.letkf import live_first
from dacast.da.threads import single_threaded
from dacast.geometry import Grid
from dacast.obs.operators import IndexObs

DX = 0.5  # km


def gridded_problem(
    k: int = 16,
    n_var: int = 3,
    shape: tuple[int, int] = (24, 20),
    frac: float = 0.3,
    seed: int = 0,
    smooth: float = 40.0,
) -> tuple[torch.Tensor, torch.Tensor, IndexObs]:
    """Smooth random prior ``(k, n_var, ny, nx)`` (float64), a random subset of state entries
    observed with error 0.7 at their grid points, and observations near the truth."""
    ny, nx = shape
    gen = torch.Generator().manual_seed(seed)
    white = torch.randn((k, n_var, ny, nx), generator=gen, dtype=torch.float64)
    ky = torch.fft.fftfreq(ny, dtype=torch.float64)[:, None]
    kx = torch.fft.fftfreq(nx, dtype=torch.float64)[None, :]
    prior = 1.0 + 5.0 * torch.fft.ifft2(torch.fft.fft2(white) * torch.exp(-(ky**2 + kx**2) * smooth)).real
    n = ny * nx
    sel = torch.randperm(n_var * n, generator=gen)[: int(frac * n_var * n)].sort().values
    coords = Grid.cartesian(shape, spacing=DX, periodic=True).coords
    op = IndexObs(
        n_state=n_var * n,
        indices=sel,
        error_std=torch.full((sel.numel(),), 0.7, dtype=torch.float64),
        locations=coords[sel % n],
    )
    y = op(prior.reshape(k, -1)).mean(0) + 1.5 + torch.randn(sel.numel(), generator=gen, dtype=torch.float64)
    return prior, y, op


def keep_obs(op: IndexObs, keep: torch.Tensor) -> IndexObs:
    """The observations of ``op`` where ``keep`` (shape ``(n_obs,)``, bool) is true."""
    return IndexObs(
        n_state=op.n_state, indices=op.indices[keep], error_std=op.error_std[keep], locations=op.locations[keep]
    )


@pytest.mark.parametrize("max_obs", [6, 60], ids=["gram", "ensemble"])
@pytest.mark.parametrize(("inflation", "rtpp", "rtps"), [(1.0, 0.95, 0.0), (1.1, 0.5, 0.3)])
def test_stride_one_equals_foundation_letkf(max_obs: int, inflation: float, rtpp: float, rtps: float) -> None:
    prior, y, op = gridded_problem()
    k = prior.shape[0]
    cfg = GriddedLETKFConfig(localization=0.8, max_obs=max_obs, inflation=inflation, rtpp=rtpp, rtps=rtps)
    grid = Grid.cartesian(prior.shape[-2:], spacing=DX, periodic=True)
    ref = letkf(
        prior.reshape(k, -1),
        y,
        op,
        LETKFConfig(localization=cfg.taper, inflation=inflation, rtpp=rtpp, rtps=rtps),
        grid,
    ).ensemble
    before = prior.clone()
    post = gridded_letkf(prior, y, op, cfg, dx_km=DX).ensemble
    assert post.shape == prior.shape
    torch.testing.assert_close(post.reshape(k, -1), ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(prior, before, rtol=0, atol=0)  # input untouched
    assert (post.mean(0) - prior.mean(0)).abs().max() > 0.1  # the analysis did something


def test_stride_one_equals_foundation_letkf_with_padded_neighbour_tables() -> None:
    """Observations in one corner: most points have fewer than ``max_obs`` neighbours (padding)."""
    prior, y, op = gridded_problem(k=30, shape=(16, 16), frac=1.0, seed=9)
    near = (op.locations < 2.5).all(-1)
    part = keep_obs(op, near)
    k = prior.shape[0]
    cfg = GriddedLETKFConfig(localization=1.0, max_obs=20)
    grid = Grid.cartesian(prior.shape[-2:], spacing=DX, periodic=True)
    ref = letkf(prior.reshape(k, -1), y[near], part, LETKFConfig(localization=cfg.taper, rtpp=0.95), grid).ensemble
    post = gridded_letkf(prior, y[near], part, cfg, dx_km=DX).ensemble
    torch.testing.assert_close(post.reshape(k, -1), ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("form", ["gram", "ensemble"])
def test_factored_transform_equals_transform_update(form: str) -> None:
    gen = torch.Generator().manual_seed(1)
    b, p, k, nv = 5, 7, 9, 3
    yt = torch.randn((b, p, k), generator=gen, dtype=torch.float64)
    yt = yt - yt.mean(-1, keepdim=True)
    d = torch.randn((b, p), generator=gen, dtype=torch.float64)
    xp = torch.randn((b, k, nv), generator=gen, dtype=torch.float64)
    xp = xp - xp.mean(1, keepdim=True)
    xm = torch.randn((b, nv), generator=gen, dtype=torch.float64)
    f = transform_factors(yt, d, 1.3, form)
    q = f.v @ xp
    got = xm[:, None, :] + (f.g[:, None, :] @ q) + f.scale * xp + f.v.transpose(-1, -2) @ (f.coef[..., None] * q)
    torch.testing.assert_close(got, transform_update(yt, d, xp, xm, 1.3, form), rtol=0, atol=1e-12)


@pytest.mark.parametrize(("stride", "tolerance"), [(2, 0.05), (4, 0.12)])
def test_coarse_weights_exact_at_coarse_points_and_close_elsewhere(stride: int, tolerance: float) -> None:
    """The accuracy cost: RMS of the analysis-mean difference from stride 1, relative to the
    RMS mean increment, was 0.026 (stride 2) and 0.075 (stride 4) here (0.31 at stride 8)."""
    prior, y, op = gridded_problem(k=20, n_var=2, shape=(32, 32), frac=0.5, seed=2, smooth=80.0)
    base = dict(localization=2.0, max_obs=100, rtpp=0.5)
    full = gridded_letkf(prior, y, op, GriddedLETKFConfig(**base), dx_km=DX).ensemble
    coarse = gridded_letkf(prior, y, op, GriddedLETKFConfig(**base, weight_stride=stride), dx_km=DX).ensemble
    torch.testing.assert_close(coarse[..., ::stride, ::stride], full[..., ::stride, ::stride], rtol=0, atol=1e-12)
    increment = (full.mean(0) - prior.mean(0)).pow(2).mean().sqrt()
    error = (coarse.mean(0) - full.mean(0)).pow(2).mean().sqrt()
    assert error > 0  # interpolation is not a no-op between coarse points
    assert error < tolerance * increment  # L = 2 km against a 1-2 km weight spacing: close


@pytest.mark.parametrize("stride", [1, 2])
def test_one_set_of_weights_for_all_variables(stride: int) -> None:
    """A variable that is an affine function of another stays so after the analysis."""
    prior, y, op = gridded_problem(n_var=2, shape=(16, 16), seed=3)
    prior[:, 1] = 3.0 * prior[:, 0] - 2.0
    cfg = GriddedLETKFConfig(localization=1.0, max_obs=20, rtpp=0.3, rtps=0.4, weight_stride=stride)
    post = gridded_letkf(prior, y, op, cfg, dx_km=DX).ensemble
    torch.testing.assert_close(post[:, 1], 3.0 * post[:, 0] - 2.0, rtol=0, atol=1e-10)


def test_no_observations_returns_the_prior() -> None:
    prior, _, op = gridded_problem(shape=(8, 8))
    empty = keep_obs(op, torch.zeros(op.n_obs, dtype=torch.bool))
    for stride in (1, 2):
        result = gridded_letkf(prior, torch.zeros(0), empty, GriddedLETKFConfig(weight_stride=stride), dx_km=DX)
        torch.testing.assert_close(result.ensemble, prior, rtol=0, atol=0)
        assert result.ensemble.data_ptr() != prior.data_ptr()
        assert result.innovation.shape == (0,) and result.innovation.dtype == prior.dtype


@pytest.mark.parametrize("stride", [1, 2])
def test_result_is_an_analysis_with_innovation_mean_and_spread(stride: int) -> None:
    """Like every filter: ``innovation = y - mean(H(prior))``, ``mean``/``spread`` over members (ddof=1)."""
    prior, y, op = gridded_problem(k=10, n_var=2, shape=(16, 16), seed=14)
    k = prior.shape[0]
    cfg = GriddedLETKFConfig(localization=1.0, max_obs=20, weight_stride=stride)
    hx = op(prior.reshape(k, -1))
    result = gridded_letkf(prior, y, op, cfg, dx_km=DX, hx=hx)
    assert isinstance(result, Analysis)
    assert result.ensemble.shape == prior.shape
    torch.testing.assert_close(result.innovation, y - hx.mean(0), rtol=0, atol=0)
    torch.testing.assert_close(result.mean, result.ensemble.mean(0), rtol=0, atol=0)
    torch.testing.assert_close(result.spread, result.ensemble.std(0), rtol=0, atol=0)
    assert result.mean.shape == result.spread.shape == prior.shape[1:]
    # the same without hx (computed inside), and the innovation covers every observation for a tile too
    torch.testing.assert_close(gridded_letkf(prior, y, op, cfg, dx_km=DX).innovation, result.innovation)
    tile = gridded_letkf(prior, y, op, cfg, dx_km=DX, tile=(slice(0, 8), slice(4, 12)), hx=hx)
    torch.testing.assert_close(tile.innovation, result.innovation, rtol=0, atol=0)


def test_points_out_of_reach_keep_the_prior() -> None:
    """Observations in one corner only: far points (no observation within 3.65 L) are unchanged."""
    prior, y, op = gridded_problem(shape=(32, 32), frac=1.0, seed=4)
    near = (op.locations < 3.0).all(-1)  # a 3 km square in the corner
    part = keep_obs(op, near)
    cfg = GriddedLETKFConfig(localization=1.0, weight_stride=2)
    post = gridded_letkf(prior, y[near], part, cfg, dx_km=DX).ensemble
    far = slice(18, 26)  # 9-13 km from the corner in y and x, > 3.65 km from every observation
    torch.testing.assert_close(post[..., far, far], prior[..., far, far], rtol=0, atol=1e-12)
    assert (post[..., :4, :4] - prior[..., :4, :4]).abs().max() > 0.1


@pytest.mark.parametrize("stride", [1, 2])
def test_tile_is_a_piece_of_the_full_analysis(stride: int) -> None:
    prior, y, op = gridded_problem(seed=5)
    cfg = GriddedLETKFConfig(localization=1.0, max_obs=20, weight_stride=stride)
    local = gridded_neighbours(prior.shape[-2:], DX, op.locations, cfg)
    full = gridded_letkf(prior, y, op, cfg, dx_km=DX, local=local).ensemble
    tile = (slice(4, 24), slice(10, 20))
    part = gridded_letkf(prior, y, op, cfg, dx_km=DX, tile=tile).ensemble
    torch.testing.assert_close(part, full[:, :, tile[0], tile[1]], rtol=0, atol=1e-12)


def test_float32_close_to_float64() -> None:
    prior, y, op = gridded_problem(seed=6)
    cfg = GriddedLETKFConfig(localization=1.0, max_obs=20, weight_stride=2)
    ref = gridded_letkf(prior, y, op, cfg, dx_km=DX).ensemble
    got = gridded_letkf(prior.float(), y.float(), op, cfg, dx_km=DX).ensemble
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), ref, rtol=0, atol=1e-3)


def test_bad_inputs_are_refused() -> None:
    prior, y, op = gridded_problem(shape=(24, 20))
    with pytest.raises(ValueError, match="multiple of weight_stride"):
        gridded_letkf(prior, y, op, GriddedLETKFConfig(weight_stride=3), dx_km=DX)
    with pytest.raises(ValueError, match="members, n_var, ny, nx"):
        gridded_letkf(prior[:, 0], y, op, GriddedLETKFConfig(), dx_km=DX)
    with pytest.raises(ValueError, match="weight_stride"):
        gridded_letkf(prior, y, op, GriddedLETKFConfig(weight_stride=2), dx_km=DX, tile=(slice(1, 9), slice(0, 8)))
    with pytest.raises(ValueError, match="rtpp"):
        GriddedLETKFConfig(rtpp=1.5)
    with pytest.raises(ValueError, match="weight_stride"):
        GriddedLETKFConfig(weight_stride=0)


@pytest.mark.parametrize("stride", [1, 2])
def test_observations_without_spread_are_skipped_exactly(stride: int) -> None:
    """Clear air: observations where every member has the same value carry no information.

    Dropping them after the ``max_obs`` nearest were chosen gives the same
    analysis as the foundation LETKF (stride 1), which keeps them in its Gram
    matrices, and the result does not depend on their innovations.
    """
    prior, y, op = gridded_problem(k=24, n_var=2, shape=(16, 16), frac=0.6, seed=11)
    k = prior.shape[0]
    flat = prior.reshape(k, -1).clone()
    clear = op.indices[::2]  # half the observed entries: every member at the same value
    flat[:, clear] = 5.0
    prior = flat.reshape(prior.shape)
    cfg = GriddedLETKFConfig(localization=1.0, max_obs=15, rtpp=0.5, weight_stride=stride)
    post = gridded_letkf(prior, y, op, cfg, dx_km=DX).ensemble
    y2 = y.clone()
    y2[::2] += 3.0  # other innovations where there is no spread
    torch.testing.assert_close(gridded_letkf(prior, y2, op, cfg, dx_km=DX).ensemble, post, rtol=0, atol=1e-12)
    assert (post.mean(0) - prior.mean(0)).abs().max() > 0.1
    if stride == 1:
        grid = Grid.cartesian((16, 16), spacing=DX, periodic=True)
        ref = letkf(flat, y, op, LETKFConfig(localization=cfg.taper, rtpp=0.5), grid).ensemble
        torch.testing.assert_close(post.reshape(k, -1), ref, rtol=0, atol=1e-12)


def test_live_first_keeps_order_and_cuts_padding() -> None:
    index = torch.tensor([[3, 1, 2, 0], [2, 0, 1, 3]])
    sqrt_w = torch.tensor([[1.0, 0.75, 0.5, 0.0], [0.875, 0.75, 0.625, 0.25]])
    informative = torch.tensor([True, False, True, True])
    idx, sw = live_first(index, sqrt_w, informative)
    assert idx[0, :2].tolist() == [3, 2] and sw[0].tolist() == [1.0, 0.5, 0.0]
    assert idx[1].tolist() == [2, 0, 3] and sw[1].tolist() == [0.875, 0.75, 0.25]


def test_single_threaded_restores_the_thread_count() -> None:
    before = torch.get_num_threads()
    with single_threaded():
        with single_threaded():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("rtps", [0.0, 0.3])
def test_coarse_weights_equal_dense_interpolated_transforms(rtps: float) -> None:
    """Stride 2 equals interpolating dense k x k transforms and mean weights point by point."""
    prior, y, op = gridded_problem(k=12, n_var=2, shape=(12, 16), frac=0.5, seed=12)
    prior.reshape(12, -1)[:, op.indices[::3]] = 2.0  # some observations without spread
    k, n_var, ny, nx = prior.shape
    cfg = GriddedLETKFConfig(localization=1.0, max_obs=10, rtpp=0.4, rtps=rtps, inflation=1.1, weight_stride=2)
    ya_t, d, index, sqrt_w, _ = prepare(prior, y, op, cfg, DX, None)
    f = transform_factors(ya_t[index] * sqrt_w[..., None], d[index] * sqrt_w, cfg.inflation, "gram", pad=sqrt_w == 0)
    eye = torch.eye(k, dtype=prior.dtype)
    w_pert = f.scale * eye + f.v.transpose(-1, -2) @ (f.coef[..., None] * f.v)  # (cy, cx, k, k)
    w_mean = (f.v.transpose(-1, -2) @ f.g[..., None])[..., 0]  # (cy, cx, k)
    ref = torch.empty_like(prior)
    cy, cx = ny // 2, nx // 2
    for i in range(ny):
        for j in range(nx):
            i0, j0, ty, tx = i // 2, j // 2, (i % 2) / 2, (j % 2) / 2
            pert, mean = torch.zeros((k, k), dtype=prior.dtype), torch.zeros(k, dtype=prior.dtype)
            for ci, cj, b in (
                (i0, j0, (1 - ty) * (1 - tx)),
                (i0, (j0 + 1) % cx, (1 - ty) * tx),
                ((i0 + 1) % cy, j0, ty * (1 - tx)),
                ((i0 + 1) % cy, (j0 + 1) % cx, ty * tx),
            ):
                pert += b * w_pert[ci, cj]
                mean += b * w_mean[ci, cj]
            x = prior[:, :, i, j]
            xm = x.mean(0)
            ref[:, :, i, j] = xm + mean @ (x - xm) + pert @ (x - xm)
    ref = relax(prior, ref, cfg.rtpp, cfg.rtps)
    post = gridded_letkf(prior, y, op, cfg, dx_km=DX).ensemble
    torch.testing.assert_close(post, ref, rtol=0, atol=1e-11)


def test_eigh_falls_back_to_float64(monkeypatch: pytest.MonkeyPatch) -> None:
    eigh = torch.linalg.eigh

    def fail_in_float32(c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if c.dtype == torch.float32:
            raise torch.linalg.LinAlgError("failed to converge")
        return eigh(c)

    prior, y, op = gridded_problem(shape=(16, 16), seed=13)
    cfg = GriddedLETKFConfig(localization=1.0, max_obs=20, weight_stride=2)
    ref = gridded_letkf(prior.float(), y.float(), op, cfg, dx_km=DX).ensemble
    monkeypatch.setattr(torch.linalg, "eigh", fail_in_float32)
    got = gridded_letkf(prior.float(), y.float(), op, cfg, dx_km=DX).ensemble
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-4)
