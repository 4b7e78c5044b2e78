"""Radar operators against hand-computed values: dBZ, radial velocity, masks, clear air, superobs."""

import math

import pytest
import torch

from dacast.models import WurschCraigConfig
from dacast.obs import (
    ObsOperator,
    RadarConfig,
    RadarOperator,
    observe_radar,
    radar_mask,
    radial_velocity,
    reflectivity_dbz,
)

MC = WurschCraigConfig(ny=64, nx=64)  # 32 km square at 500 m
RC = RadarConfig(max_range=12e3, blocked_sectors=((80.0, 100.0),))  # site at cell (32, 32) = (16 km, 16 km)


def _truth(r: float = 0.0, u: float = 0.0, v: float = 0.0, mc: WurschCraigConfig = MC) -> torch.Tensor:
    x = torch.zeros((4, mc.ny, mc.nx), dtype=torch.float64)
    x[0], x[1], x[2], x[3] = u, v, 90.0, r
    return x


def test_reflectivity_power_law_by_hand():
    # rho q_r = 1000 * 2.0 * 5e-4 = 1 g m^-3  ->  Z = 2.53e4  ->  44.03 dBZ
    dbz = reflectivity_dbz(torch.tensor([5e-4, 0.0, 2.5e-3], dtype=torch.float64))
    assert dbz[0].item() == pytest.approx(10 * math.log10(2.53e4), abs=1e-9)
    assert dbz[1].item() == 0.0  # floor
    assert dbz[2].item() == pytest.approx(10 * math.log10(2.53e4 * 5.0**1.84), abs=1e-9)
    assert reflectivity_dbz(torch.tensor([1e-9]), floor_dbz=-10.0).item() == pytest.approx(-10.0)


def test_radial_velocity_by_hand():
    u = torch.full((1, 8, 8), 2.0)
    v = torch.full((1, 8, 8), -1.0)
    vr = radial_velocity(u, v, site=(0.0, 0.0), dx=500.0)
    assert vr.shape == (1, 8, 8)
    assert vr[0, 0, 3].item() == pytest.approx(2.0)  # due east: u
    assert vr[0, 5, 0].item() == pytest.approx(-1.0)  # due north: v
    assert vr[0, 3, 4].item() == pytest.approx(2.0 * 0.8 - 1.0 * 0.6)  # 3-4-5 triangle
    assert vr[0, 0, 0].item() == 0.0  # at the site


def test_mask_range_site_and_blocked_sector():
    m = radar_mask(MC, RC)
    assert m.shape == (64, 64) and m.dtype == torch.bool
    assert not m[32, 32]  # the site itself
    assert m[32 + 10, 32]  # 5 km north
    assert not m[32, 32 + 10]  # 5 km east: azimuth 90, blocked
    assert m[32, 32 - 10]  # 5 km west
    assert m[32 + 16, 32 + 16]  # 11.3 km NE
    assert not m[32 + 17, 32 + 17]  # 12.02 km: out of range
    assert not m[0, 0]
    # area: a 12 km disc less the 20-degree sector, in 0.25 km^2 cells
    expected = math.pi * 24**2 * (340 / 360)
    assert abs(int(m.sum()) - expected) / expected < 0.03


def test_clear_air_everywhere_gives_5_dbz_and_no_doppler():
    y, op = observe_radar(_truth(), MC, RC, torch.Generator().manual_seed(0))
    assert op.n_vr == 0 and op.n_dbz == op.n_obs > 0
    assert bool((y == 5.0).all())
    hx = op(_truth().reshape(1, -1))
    assert bool((hx == 5.0).all())  # model equivalents clipped below at the clear-air value


def test_superobs_and_operator_by_hand():
    truth = _truth(r=5e-4, u=3.0, v=-4.0)
    y, op = observe_radar(truth, MC, RC, torch.Generator().manual_seed(1))
    assert isinstance(op, ObsOperator) and op.n_state == 4 * 64 * 64
    mask = radar_mask(MC, RC).reshape(-1)
    assert bool(mask[op.cell].all())  # nothing outside range or in the blocked sector
    assert op.n_dbz >= 0.97 * int(mask.sum())  # gates reach nearly every cell
    assert op.n_vr == op.n_dbz  # echo everywhere: Doppler everywhere
    hx = op(truth.reshape(1, -1))[0]
    d = op.kind == 0
    torch.testing.assert_close(hx[d], torch.full_like(hx[d], 10 * math.log10(2.53e4)))
    # Vr by hand at each Doppler cell: (u, v) . (x, y) / |(x, y)| relative to the site (16 km, 16 km)
    cell = op.cell[~d]
    cy = (cell // 64).double() * 500.0 - 16000.0
    cx = (cell % 64).double() * 500.0 - 16000.0
    torch.testing.assert_close(hx[~d], (3.0 * cx - 4.0 * cy) / torch.sqrt(cx * cx + cy * cy))
    # superobbed errors: mean innovation ~ 0, spread below the single-gate error
    innov = y - hx
    assert abs(float(innov[d].mean())) < 0.3 and float(innov[d].std()) < 5.0
    assert abs(float(innov[~d].mean())) < 0.2 and float(innov[~d].std()) < 3.0
    assert torch.equal(op.error_std[d], torch.full((op.n_dbz,), 5.0, dtype=torch.float64))
    assert torch.equal(op.error_std[~d], torch.full((op.n_vr,), 3.0, dtype=torch.float64))
    # locations in km on the LETKF grid
    torch.testing.assert_close(op.locations[:, 0], (op.cell // 64).double() * 0.5)
    torch.testing.assert_close(op.locations[:, 1], (op.cell % 64).double() * 0.5)


def test_doppler_only_where_there_is_echo():
    truth = _truth(u=1.0)
    truth[3, 20:30, 20:30] = 5e-4  # one rain patch inside range
    y, op = observe_radar(truth, MC, RC, torch.Generator().manual_seed(2))
    vr_cells = op.cell[op.kind == 1]
    j, i = vr_cells // 64, vr_cells % 64
    assert op.n_vr > 0
    assert bool(((j >= 19) & (j <= 30) & (i >= 19) & (i <= 30)).all())
    _, op_all = observe_radar(truth, MC, RadarConfig(max_range=12e3, vr_requires_echo=False), torch.Generator())
    assert op_all.n_vr == op_all.n_dbz


def test_uses_staggered_winds_averaged_to_centres():
    op = observe_radar(_truth(r=5e-4), MC, RC, torch.Generator().manual_seed(0))[1]
    x = torch.zeros((4, 64, 64), dtype=torch.float64)
    x[0, :, 40] = 2.0  # u on the east face of column 40 = west face of column 41
    hx = op(x.reshape(1, -1))[0]
    k = (op.kind == 1) & ((op.cell % 64 == 40) | (op.cell % 64 == 41))
    cx = (op.cell[k] % 64).double() * 500.0 - 16000.0
    cy = (op.cell[k] // 64).double() * 500.0 - 16000.0
    torch.testing.assert_close(hx[k], 1.0 * cx / torch.sqrt(cx * cx + cy * cy))


def test_realistic_counts_on_the_full_grid():
    mc = WurschCraigConfig()  # 256 x 256 at 500 m, 60 km range
    y, op = observe_radar(_truth(r=5e-4, mc=mc), mc, RadarConfig(), torch.Generator().manual_seed(0))
    assert 30_000 < op.n_dbz < 50_000 and op.n_vr == op.n_dbz
    assert y.shape == (op.n_obs,)


def test_outage_and_empty_operator():
    y, op = observe_radar(_truth(r=5e-4), MC, RadarConfig(outage=True), torch.Generator())
    assert y.shape == (0,) and op.n_obs == 0
    empty = RadarOperator.empty(MC)
    assert empty.n_obs == 0 and empty.locations.shape == (0, 2)
    assert empty(torch.zeros((3, 4 * 64 * 64))).shape == (3, 0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_batched_members_and_dtypes(dtype):
    truth = _truth(r=3e-4, u=1.0)
    y, op = observe_radar(truth.to(dtype), MC, RC, torch.Generator().manual_seed(0))
    assert y.dtype == dtype
    ens = truth.reshape(1, -1).repeat(5, 1).to(dtype)
    ens[1:, 3 * 4096 :] *= 2.0
    hx = op(ens.reshape(5, 1, -1))
    assert hx.shape == (5, 1, op.n_obs) and hx.dtype == dtype
    assert torch.equal(hx[0, 0], op(ens[0]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_operator_on_cuda():
    truth = _truth(r=5e-4, u=1.0)
    y, op = observe_radar(truth.cuda(), MC, RC, torch.Generator().manual_seed(0))
    assert y.is_cuda
    torch.testing.assert_close(op(truth.reshape(1, -1).cuda()).cpu(), op(truth.reshape(1, -1)))


def test_window_operator_equals_the_grid_operator_on_its_observations():
    gen = torch.Generator().manual_seed(4)
    truth = _truth(r=2e-4)
    truth[0] += torch.randn((64, 64), generator=gen, dtype=torch.float64)
    truth[1] += torch.randn((64, 64), generator=gen, dtype=torch.float64)
    truth[3] *= torch.rand((64, 64), generator=gen, dtype=torch.float64) * 4
    y, op = observe_radar(truth, MC, RadarConfig(max_range=30e3, vr_requires_echo=False), gen)
    ens = truth[None] + 0.1 * torch.randn((5, 4, 64, 64), generator=gen, dtype=torch.float64)
    ens[:, 3].clamp_(min=0)
    j, i = op.cell // 64, op.cell % 64
    select = torch.nonzero((j >= 32) & (i < 16)).reshape(-1)  # a tile at the west edge: its ring wraps
    assert op.n_vr > 0 and bool((op.kind[select] == 1).any())
    origin, shape = (31, 63), (33, 17)  # one row south and one column west of the tile, periodic
    rows, cols = (torch.arange(33) + 31) % 64, (torch.arange(17) + 63) % 64
    window = ens[:, :, rows][:, :, :, cols]
    sub = op.window(select, origin, shape)
    assert sub.n_obs == select.numel() and sub.n_state == 4 * 33 * 17
    torch.testing.assert_close(sub(window.reshape(5, -1)), op(ens.reshape(5, -1))[:, select], rtol=0, atol=0)
    torch.testing.assert_close(sub.locations, op.locations[select], rtol=0, atol=0)
    with pytest.raises(ValueError, match="outside"):
        op.window(select, (40, 63), shape)
