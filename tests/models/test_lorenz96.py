"""Lorenz-96: tendency formula, climatology at F = 8, other sizes and forcings."""

from __future__ import annotations

import pytest
import torch

from dacast.models import Lorenz96, integrate


def _loop_tendency(x: torch.Tensor, forcing: float) -> torch.Tensor:
    n = x.shape[-1]
    return torch.stack(
        [(x[..., (i + 1) % n] - x[..., (i - 2) % n]) * x[..., (i - 1) % n] - x[..., i] + forcing for i in range(n)],
        dim=-1,
    )


@pytest.mark.parametrize(("n_state", "forcing"), [(4, 8.0), (7, 3.5), (40, 8.0), (100, 10.0)])
def test_tendency_matches_index_formula(n_state: int, forcing: float) -> None:
    gen = torch.Generator().manual_seed(n_state)
    x = torch.randn((3, n_state), generator=gen, dtype=torch.float64) * 4
    model = Lorenz96(n_state=n_state, forcing=forcing)
    torch.testing.assert_close(model.tendency(x), _loop_tendency(x, forcing), rtol=1e-14, atol=1e-13)


def test_climatology_at_f8() -> None:
    """Nx = 40, F = 8: time/space mean ≈ 2.34 and std ≈ 3.63 (Lorenz & Emanuel 1998; DAPPER's L96)."""
    model = Lorenz96(n_state=40, forcing=8.0)
    gen = torch.Generator().manual_seed(0)
    x = model.default_initial_state() + 0.1 * torch.randn((16, 40), generator=gen, dtype=torch.float64)
    x = integrate(model, x, 400, 0.05)[-1]  # spin-up: 20 time units
    traj = integrate(model, x, 2000, 0.05)[1:]  # 16 members x 100 time units
    assert torch.isfinite(traj).all()
    assert abs(float(traj.mean()) - 2.34) < 0.15
    assert abs(float(traj.std()) - 3.63) < 0.15


@pytest.mark.parametrize(("n_state", "forcing"), [(5, 8.0), (36, 6.0), (120, 12.0)])
def test_other_sizes_and_forcings_are_chaotic_and_bounded(n_state: int, forcing: float) -> None:
    model = Lorenz96(n_state=n_state, forcing=forcing)
    x0 = model.default_initial_state()
    assert x0.shape == (n_state,)
    traj = integrate(model, x0, 600, 0.02)
    assert traj.shape == (601, n_state)
    assert torch.isfinite(traj).all()
    late = traj[300:]
    assert float(late.abs().max()) < 5 * forcing + 10
    assert float(late.std(0).mean()) > 0.5  # left the unstable fixed point x = F
    grid = model.grid()
    assert grid.n_points == n_state and grid.period == (float(n_state),)


def test_weak_forcing_decays_to_fixed_point() -> None:
    """For F below ~0.9 the fixed point x_i = F is stable."""
    model = Lorenz96(n_state=10, forcing=0.5)
    gen = torch.Generator().manual_seed(3)
    x0 = 0.5 + 0.3 * torch.randn(10, generator=gen, dtype=torch.float64)
    end = integrate(model, x0, 2000, 0.05)[-1]
    torch.testing.assert_close(end, torch.full_like(end, 0.5), rtol=0, atol=1e-8)


def test_too_small_ring_raises() -> None:
    with pytest.raises(ValueError, match="n_state >= 4"):
        Lorenz96(n_state=3)
