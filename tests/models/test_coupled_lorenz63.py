"""Lorenz-63 and the five-variable coupled Lorenz-63 (both variants)."""

from __future__ import annotations

import pytest
import torch

from dacast.models import CoupledLorenz63, Lorenz63, integrate


def test_lorenz63_tendency_formula() -> None:
    model = Lorenz63(sigma=10.0, rho=28.0, beta=8.0 / 3.0)
    x = torch.tensor([[1.0, 2.0, 3.0], [-4.0, 0.5, 20.0]], dtype=torch.float64)
    expected = torch.stack(
        (10.0 * (x[:, 1] - x[:, 0]), x[:, 0] * (28.0 - x[:, 2]) - x[:, 1], x[:, 0] * x[:, 1] - 8.0 / 3.0 * x[:, 2]),
        dim=-1,
    )
    torch.testing.assert_close(model.tendency(x), expected, rtol=1e-15, atol=0)


def test_coupled_tendency_formula_both_variants() -> None:
    x = torch.tensor([1.0, -2.0, 20.0, 0.5, -1.5], dtype=torch.float64)
    x0, x1, x2, x3, x4 = x.tolist()
    s, r, b, w, k = 10.0, 28.0, 8.0 / 3.0, 2.0, 2.0
    for variant, c in (("constant", 0.7), ("x1sq", 0.05 * x1 * x1)):
        model = CoupledLorenz63(variant=variant, x3_star=0.7)
        expected = torch.tensor(
            [
                -s * (x0 - x1) + x4,
                r * x0 - x1 - x0 * x2 + x3,
                x0 * x1 - b * x2,
                -w * x4 - k * (x3 - c) - x1,
                w * (x3 - c) - k * x4 - x0,
            ],
            dtype=torch.float64,
        )
        torch.testing.assert_close(model.tendency(x), expected, rtol=1e-15, atol=1e-14)


def test_coupled_core_reduces_to_lorenz63_without_oscillator() -> None:
    x = torch.tensor([[3.0, -1.0, 15.0, 0.0, 0.0]], dtype=torch.float64)
    coupled = CoupledLorenz63().tendency(x)[..., :3]
    torch.testing.assert_close(coupled, Lorenz63().tendency(x[..., :3]), rtol=1e-15, atol=0)


def test_lorenz63_attractor_statistics() -> None:
    model = Lorenz63()
    traj = integrate(model, model.default_initial_state(), 4000, 0.01)[500:]
    assert torch.isfinite(traj).all()
    assert float(traj.abs().max()) < 60
    assert 0.25 < float((traj[:, 0] > 0).double().mean()) < 0.75
    assert 20.0 < float(traj[:, 2].mean()) < 27.0


@pytest.mark.parametrize("variant", ["constant", "x1sq"])
def test_coupled_lorenz63_bounded_lorenz_like_and_oscillator_active(variant: str) -> None:
    model = CoupledLorenz63(variant=variant)  # type: ignore[arg-type]
    gen = torch.Generator().manual_seed(7)
    x0 = model.default_initial_state() + torch.randn((4, 5), generator=gen, dtype=torch.float64)
    traj = integrate(model, x0, 3000, 0.01)[500:]  # (time, member, 5)
    assert torch.isfinite(traj).all()
    assert float(traj.abs().max()) < 100.0
    # Both lobes visited, by every member, with repeated switching.
    for m in range(traj.shape[1]):
        x = traj[:, m, 0]
        frac = float((x > 0).double().mean())
        assert 0.05 < frac < 0.95, (variant, m, frac)
        assert int((torch.sign(x[1:]) != torch.sign(x[:-1])).sum()) >= 4
    assert 15.0 < float(traj[..., 2].mean()) < 32.0
    # The oscillator is driven (not stuck at rest) and feeds back a forcing of a few units.
    osc_std = traj[..., 3:].reshape(-1, 2).std(0)
    assert bool((osc_std > 0.5).all()), osc_std
    assert float(traj[..., 3:].abs().max()) > 2.0


def test_coupled_bad_variant_raises() -> None:
    with pytest.raises(ValueError, match="variant"):
        CoupledLorenz63(variant="bogus")  # type: ignore[arg-type]
