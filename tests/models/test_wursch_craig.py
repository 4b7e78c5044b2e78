"""The 2-D Würsch-Craig model: conservation, stability, convection, reproducible noise."""

import math

import pytest
import torch

from dacast.models import (
    Model,
    TriggeredWurschCraig,
    WurschCraig,
    WurschCraigConfig,
    advance,
    rain_fraction,
    unstable_step,
)
from dacast.models.wursch_craig_trigger import noise_patches


def _model(n: int = 32, **kw) -> WurschCraig:
    return WurschCraig(WurschCraigConfig(ny=n, nx=n, **kw))


def test_meets_model_protocol_and_shapes():
    m = _model(16)
    assert isinstance(m, Model)
    assert m.n_var == 4 and m.shape == (16, 16) and m.n_state == 4 * 16 * 16
    x = m.initial_state(3, seed=0)
    assert x.shape == (3, 4, 16, 16) and x.dtype == torch.float32
    flat = m.step(x.reshape(3, -1), 0.0, 10.0)
    assert flat.shape == (3, m.n_state)
    assert torch.equal(flat.reshape(3, 4, 16, 16), m.forecast(x, 10.0, seed=None))


def test_triggered_model_steps_reproduce_a_forecast_bitwise():
    m = _model(16)
    dt = m.config.dt
    x = m.spinup(m.initial_state(3, seed=0, dtype=torch.float64), 300.0, seed=1)
    triggered = TriggeredWurschCraig(m, seed=5)
    assert isinstance(triggered, Model) and isinstance(m, Model)
    assert triggered.n_state == m.n_state
    got = advance(triggered, x, 6, dt, t0=10 * dt)
    assert torch.equal(got, m.forecast(x, 6 * dt, seed=5, start_step=10))
    assert not torch.equal(got, m.forecast(x, 6 * dt, seed=None))  # the noise is there
    # members as a slice of a larger ensemble: the offset picks their noise
    part = advance(TriggeredWurschCraig(m, seed=5, member_offset=1), x[1:], 6, dt, t0=10 * dt)
    assert torch.equal(part, got[1:])


def test_rest_state_stays_at_rest_without_noise():
    m = _model(16, initial_h_std=0.0)
    x = m.initial_state(2, seed=0, dtype=torch.float64)
    y = m.forecast(x, 600.0, seed=None)
    assert torch.equal(x, y)


def test_mass_is_conserved_with_noise_and_convection():
    m = _model(32)
    x = m.initial_state(2, seed=1, dtype=torch.float64)
    y = m.forecast(x, 3600.0, seed=5)
    assert float(y[:, 3].max()) > 0.0  # rain formed, so the sources were active
    mass0, mass1 = x[:, 2].sum(dim=(-2, -1)), y[:, 2].sum(dim=(-2, -1))
    torch.testing.assert_close(mass1, mass0, rtol=1e-12, atol=0.0)


def test_rain_decays_at_rate_alpha_without_production():
    m = _model(16, beta=0.0, initial_h_std=0.0)
    x = m.initial_state(1, seed=0, dtype=torch.float64)
    x[:, 3] = 1e-3
    y = m.forecast(x, 300.0, seed=None)
    c = m.config
    expected = 1e-3 * (1.0 - c.alpha * c.dt) ** 30
    torch.testing.assert_close(y[:, 3], torch.full_like(y[:, 3], expected), rtol=1e-12, atol=0.0)


def test_long_run_stays_finite_and_bounded():
    m = _model(48)
    x = m.initial_state(1, seed=2)
    y = m.forecast(x, 3 * 3600.0, seed=9)
    assert bool(torch.isfinite(y).all())
    assert float(y[:, :2].abs().max()) < 5.0  # m/s
    assert 89.0 < float(y[:, 2].min()) and float(y[:, 2].max()) < 92.0  # m


def test_convection_develops_and_cells_come_and_go():
    m = _model(64)
    x = m.spinup(m.initial_state(1, seed=0), 1800.0, seed=4)
    rainy, fractions = [], []
    step = 180
    for _ in range(4):
        x = m.forecast(x, 600.0, seed=4, start_step=step)
        step += 60
        rainy.append(x[0, 3] > 1e-4)
        fractions.append(float(rain_fraction(x, 1e-4)))
    assert min(fractions) > 0.005, fractions  # rain after spin-up
    assert max(fractions) < 0.6, fractions  # not everywhere: isolated cells
    assert len({round(f, 4) for f in fractions}) > 1  # the number of rainy cells varies
    a, b = rainy[0], rainy[-1]
    overlap = float((a & b).sum()) / float((a | b).sum())
    assert overlap < 0.8  # cells moved, died or were born within 30 minutes


@pytest.mark.parametrize("n", [24, 27])  # 27: members not aligned to SIMD width
def test_chunks_pieces_and_offsets_reproduce_one_call_exactly(n):
    m = _model(n)
    x = m.spinup(m.initial_state(6, seed=0), 300.0, seed=1)
    one = m.forecast(x, 60.0, seed=7, start_step=30, chunk_members=6)
    for chunk in (1, 2, 4):
        assert torch.equal(m.forecast(x, 60.0, seed=7, start_step=30, chunk_members=chunk), one)
    part = m.forecast(x[2:5], 60.0, seed=7, start_step=30, member_offset=2)
    assert torch.equal(part, one[2:5])
    first = m.forecast(x, 30.0, seed=7, start_step=30)
    assert torch.equal(m.forecast(first, 30.0, seed=7, start_step=33), one)
    assert not torch.equal(m.forecast(x, 60.0, seed=8, start_step=30), one)  # the seed matters
    assert not torch.equal(one[0], one[1])  # members get different noise


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_float32_and_float64(dtype):
    m = _model(24)
    x = m.initial_state(2, seed=0, dtype=dtype)
    y = m.forecast(x, 600.0, seed=3)
    assert y.dtype == dtype and bool(torch.isfinite(y).all())


def test_float32_tracks_float64():
    m = _model(24)
    x = m.initial_state(1, seed=0, dtype=torch.float64)
    y64 = m.forecast(x, 300.0, seed=3)
    y32 = m.forecast(x.float(), 300.0, seed=3)
    assert float((y32[:, 2].double() - y64[:, 2]).abs().max()) < 1e-3


def test_bad_inputs():
    with pytest.raises(ValueError, match="hc"):
        WurschCraigConfig(hc=80.0)
    m = _model(16)
    x = m.initial_state(1, seed=0)
    with pytest.raises(ValueError, match="multiple of dt"):
        m.forecast(x, 15.0, seed=0)
    with pytest.raises(ValueError, match="shape"):
        m.forecast(x[:, :3], 10.0, seed=0)


def test_noise_rate_sets_the_number_of_triggers():
    m = _model(32, noise_rate=1e-9, initial_h_std=0.0)
    x = m.initial_state(1, seed=0, dtype=torch.float64)
    patches = noise_patches(m.config, x.device)
    u, v = x[:, 0].clone(), x[:, 1].clone()
    m._add_noise(u, v, 0, torch.tensor([0]), 0, patches)
    lam = 1e-9 * (32 * 500.0) ** 2 * 10.0
    assert lam > 1
    assert 0 < float(u.abs().max()) <= m.config.noise_amplitude * math.ceil(2 * lam) + 1e-12
    # the perturbations converge: the mean divergence around them is negative where u was pushed
    div = (u - torch.roll(u, 1, -1)) + (v - torch.roll(v, 1, -2))
    assert float(div.min()) < 0.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_chunking_and_is_close_to_cpu():
    m = _model(32)
    x = m.initial_state(4, seed=0, dtype=torch.float64)
    gpu = m.forecast(x.cuda(), 600.0, seed=2)
    assert torch.equal(m.forecast(x.cuda(), 600.0, seed=2, chunk_members=1), gpu)
    cpu = m.forecast(x, 600.0, seed=2)
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=1e-8)


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({}, None),
        ({"dt": 30.0}, "model.dt: gravity waves"),
        ({"ku": 1e5}, "model.dt: diffusion"),
        ({"background_u": 600.0}, "model.dt: rain advection"),
        ({"alpha": 1.0}, "model.alpha: rain removal"),
    ],
)
def test_unstable_step_names_the_limit_broken(change: dict, fragment: str | None) -> None:
    problem = unstable_step(WurschCraigConfig(**change))
    assert problem is None if fragment is None else problem is not None and problem.startswith(fragment)


@pytest.mark.parametrize(("origin", "shape"), [((40, 50), (30, 34)), ((5, 0), (20, 64)), ((0, 0), (48, 64))])
def test_a_window_forecast_equals_the_grid_forecast_inside_its_halo(origin, shape):
    from dacast.models.wursch_craig import STENCIL_RADIUS

    model = WurschCraig(WurschCraigConfig(ny=48, nx=64))
    x = model.forecast(model.initial_state(3, seed=0, dtype=torch.float64), 600, seed=3)
    full = model.forecast(x, 30, seed=5, start_step=77, member_offset=10)
    rows = (torch.arange(shape[0]) + origin[0]) % 48
    cols = (torch.arange(shape[1]) + origin[1]) % 64
    window = model.forecast(x[:, :, rows][:, :, :, cols], 30, seed=5, start_step=77, member_offset=10, origin=origin)
    want = full[:, :, rows][:, :, :, cols]
    h = STENCIL_RADIUS * 3
    hy, hx = (0 if shape[0] == 48 else h), (0 if shape[1] == 64 else h)
    inner = (slice(None), slice(None), slice(hy, shape[0] - hy), slice(hx, shape[1] - hx))
    assert torch.equal(window[inner], want[inner])  # bitwise: same cells, same operations
    if hy and hx:
        assert not torch.equal(window, want)  # the edges are not valid: the halo is needed
    with pytest.raises(ValueError, match="window"):
        model.forecast(torch.zeros(1, 4, 49, 8, dtype=torch.float64), 10, seed=1, origin=(0, 0))


def test_member_chunks_are_cache_sized_on_a_cpu():
    from dacast.models.wursch_craig_trigger import default_chunk

    assert default_chunk(torch.zeros(100, 4, 256, 256)) == 4
    assert default_chunk(torch.zeros(100, 4, 128, 128)) == 16
    assert default_chunk(torch.zeros(2, 4, 1024, 1024)) == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_member_chunks_fill_the_gpu_and_keep_the_numbers():
    from dacast.models.wursch_craig_trigger import default_chunk

    model = _model(64)
    x = model.initial_state(64, seed=0, device="cuda")
    assert default_chunk(x) == 64  # 64 members of 64^2 fit many times over
    a = model.forecast(x, 30.0, seed=1)
    b = model.forecast(x, 30.0, seed=1, chunk_members=4)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_step_reads_bound_what_one_step_reads_and_are_tight() -> None:
    """Perturb one variable at cells 8 apart (many random states: every threshold and upwind branch taken)
    and see which cells of which variable one step changes: always inside `STEP_READS`, every box edge reached."""
    from dacast.models.wursch_craig import STEP_READS

    n, gap = 32, 8
    model = WurschCraig(WurschCraigConfig(ny=n, nx=n))
    c = model.config
    seen = [[[0, 0, 0, 0] for _ in range(4)] for _ in range(4)]  # seen[b][a]: reads of b from a (box)
    g = torch.Generator().manual_seed(0)
    sites = torch.meshgrid(torch.arange(0, n, gap), torch.arange(0, n, gap), indexing="ij")
    for _ in range(24):
        x = torch.stack(
            [
                torch.randn(n, n, generator=g, dtype=torch.float64) * 3,
                torch.randn(n, n, generator=g, dtype=torch.float64) * 3,
                89.8 + torch.rand(n, n, generator=g, dtype=torch.float64),  # around hc and hr
                torch.rand(n, n, generator=g, dtype=torch.float64) * (torch.rand(n, n, generator=g) > 0.5),
            ]
        )
        base = model.step(x.reshape(1, -1), 0.0, c.dt).reshape(4, n, n)
        for a in range(4):
            xp = x.clone()
            xp[a][sites] = {2: 89.5 + 1.5 * torch.rand(sites[0].shape, generator=g, dtype=torch.float64)}.get(
                a, torch.randn(sites[0].shape, generator=g, dtype=torch.float64).abs() * 4 * (1 if a == 3 else -1)
            )
            changed = model.step(xp.reshape(1, -1), 0.0, c.dt).reshape(4, n, n) != base
            for b in range(4):
                j, i = torch.nonzero(changed[b], as_tuple=True)
                dy = -(((j + gap // 2) % gap) - gap // 2)  # b at cell p reads a at p + (dy, dx)
                dx = -(((i + gap // 2) % gap) - gap // 2)
                if j.numel():
                    box = seen[b][a]
                    seen[b][a] = [min(box[0], int(dy.min())), max(box[1], int(dy.max())),
                                  min(box[2], int(dx.min())), max(box[3], int(dx.max()))]  # fmt: skip
    assert [[tuple(r) for r in row] for row in seen] == [list(row) for row in STEP_READS]


def test_halo_reach_of_a_cycle_is_what_its_window_forecast_needs() -> None:
    """Three steps from `STEP_READS`: a window holding each variable only that far (the rest at rest) forecasts
    the tile and the radar's ring bitwise; one cell less of any variable on any side does not."""
    from dacast.da.tiles import RADAR_RING, halo_reach
    from dacast.models.wursch_craig import STEP_READS

    reach = halo_reach(STEP_READS, 3, RADAR_RING)
    assert reach == ((5, 5, 6, 5), (6, 5, 5, 5), (6, 6, 6, 6), (5, 5, 5, 5))  # (south, north, west, east)
    model = WurschCraig(WurschCraigConfig(ny=48, nx=64))
    g = torch.Generator().manual_seed(1)
    # winds both ways, heights on both sides of the cloud and rain thresholds, rain and none: every branch taken
    x = torch.stack(
        [
            3 * torch.randn(2, 48, 64, generator=g, dtype=torch.float64),
            3 * torch.randn(2, 48, 64, generator=g, dtype=torch.float64),
            89.85 + 0.7 * torch.rand(2, 48, 64, generator=g, dtype=torch.float64),
            torch.rand(2, 48, 64, generator=g, dtype=torch.float64) * (torch.rand(2, 48, 64, generator=g) > 0.5),
        ],
        1,
    )
    full = model.forecast(x, 30, seed=5, start_step=7)
    y0, x0, t = 20, 24, 10  # the tile: rows 20:30, cols 24:34; the window pads 6 cells on each side
    rows, cols = torch.arange(y0 - 6, y0 + t + 6), torch.arange(x0 - 6, x0 + t + 6)
    want = full[:, :, rows][:, :, :, cols]

    def window(reach) -> torch.Tensor:
        w = torch.tensor([0.0, 0.0, model.config.H0, 0.0], dtype=x.dtype).view(1, 4, 1, 1).expand_as(want).clone()
        for v, (s, n, west, e) in enumerate(reach):
            w[:, v, 6 - s : 6 + t + n, 6 - west : 6 + t + e] = x[:, v, y0 - s : y0 + t + n, x0 - west : x0 + t + e]
        return model.forecast(w, 30, seed=5, start_step=7, origin=(y0 - 6, x0 - 6))

    got = window(reach)
    tile = (slice(None), slice(None), slice(6, 6 + t), slice(6, 6 + t))
    assert torch.equal(got[tile], want[tile])
    assert torch.equal(got[:, 0, 6 : 6 + t, 5], want[:, 0, 6 : 6 + t, 5])  # u west of the tile
    assert torch.equal(got[:, 1, 5, 6 : 6 + t], want[:, 1, 5, 6 : 6 + t])  # v south of the tile
    for v in range(4):
        for side in range(4):
            less = [list(r) for r in reach]
            less[v][side] -= 1
            short = window(less)
            kept = torch.equal(short[tile], want[tile])
            kept &= torch.equal(short[:, 0, 6 : 6 + t, 5], want[:, 0, 6 : 6 + t, 5])
            kept &= torch.equal(short[:, 1, 5, 6 : 6 + t], want[:, 1, 5, 6 : 6 + t])
            assert not kept, (v, side)
