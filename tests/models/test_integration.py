"""The shared RK4 stepper, `integrate`, the `Model` protocol and dtype conventions."""

from __future__ import annotations

import math

import pytest
import torch

from dacast.models import CoupledLorenz63, Lorenz63, Lorenz96, Model, integrate, rk4_step


def _run(model: Model, x0: torch.Tensor, horizon: float, n_steps: int) -> torch.Tensor:
    dt = horizon / n_steps
    x = x0
    for i in range(n_steps):
        x = model.step(x, i * dt, dt)
    return x


def test_rk4_fourth_order_convergence_on_lorenz63() -> None:
    """Halving dt divides the error at a fixed time by ~2**4 = 16 (classical RK4)."""
    model = Lorenz63()
    x0 = model.default_initial_state()
    horizon = 0.5
    # Reference at dt = 0.5/3200: its own error (~1e-11) is far below the coarsest comparison's.
    reference = _run(model, x0, horizon, 3200)
    errors = [float((_run(model, x0, horizon, n) - reference).norm()) for n in (50, 100, 200)]
    ratios = [errors[i] / errors[i + 1] for i in range(len(errors) - 1)]
    for ratio in ratios:
        assert 14.0 < ratio < 18.5, (errors, ratios)
        assert abs(math.log2(ratio) - 4.0) < 0.25
    assert errors[-1] < 1e-6


def test_rk4_step_matches_taylor_polynomial_on_linear_ode() -> None:
    """For dx/dt = λx one RK4 step multiplies x by 1 + z + z²/2 + z³/6 + z⁴/24, z = λ dt."""
    lam = torch.tensor([-1.3, 0.4, 2.0], dtype=torch.float64)
    x = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    dt = 0.3
    z = lam * dt
    expected = x * (1 + z + z**2 / 2 + z**3 / 6 + z**4 / 24)
    torch.testing.assert_close(rk4_step(lambda s, t: lam * s, x, 0.0, dt), expected, rtol=1e-14, atol=0)


def test_rk4_step_uses_stage_times() -> None:
    """dx/dt = t³ is integrated exactly (Simpson's rule), so t, t + dt/2 and t + dt must be passed."""
    x = torch.zeros(2, dtype=torch.float64)
    t0, dt = 0.7, 0.4
    out = rk4_step(lambda s, t: torch.full_like(s, t**3), x, t0, dt)
    exact = ((t0 + dt) ** 4 - t0**4) / 4
    torch.testing.assert_close(out, torch.full_like(x, exact), rtol=1e-14, atol=1e-15)


def test_rk4_step_does_not_modify_input() -> None:
    model = Lorenz96()
    x = model.default_initial_state()
    before = x.clone()
    model.step(x, 0.0, 0.05)
    assert torch.equal(x, before)


def test_integrate_shape_and_first_state() -> None:
    model = Lorenz96(n_state=12)
    x0 = model.default_initial_state().expand(3, 12).clone()
    traj = integrate(model, x0, n_steps=5, dt=0.05)
    assert traj.shape == (6, 3, 12)
    assert torch.equal(traj[0], x0)
    torch.testing.assert_close(traj[1], model.step(x0, 0.0, 0.05), rtol=0, atol=0)
    torch.testing.assert_close(traj[5], _run(model, x0, 0.25, 5), rtol=1e-15, atol=1e-15)
    assert integrate(model, x0, 0, 0.05).shape == (1, 3, 12)
    with pytest.raises(ValueError, match="n_steps"):
        integrate(model, x0, -1, 0.05)


@pytest.mark.parametrize(
    "model",
    [
        Lorenz63(),
        Lorenz96(n_state=40),
        Lorenz96(n_state=9, forcing=5.0),
        CoupledLorenz63(),
        CoupledLorenz63(variant="x1sq"),
    ],
    ids=["l63", "l96", "l96-small", "cl63-constant", "cl63-x1sq"],
)
def test_batching_over_leading_axes_equals_per_sample(model: Model) -> None:
    """Any leading axes are batch axes: a (2, 3, 4, n) batch equals stepping each state alone."""
    gen = torch.Generator().manual_seed(1)
    base = model.default_initial_state()  # type: ignore[attr-defined]
    x = base + torch.randn((2, 3, 4, model.n_state), generator=gen, dtype=torch.float64)
    batched = integrate(model, x, 10, 0.01)[-1]
    flat = x.reshape(-1, model.n_state)
    single = torch.stack([integrate(model, flat[i], 10, 0.01)[-1] for i in range(flat.shape[0])])
    torch.testing.assert_close(batched, single.reshape(x.shape), rtol=1e-13, atol=1e-13)


class _ScaledIdentity(torch.nn.Module):
    """A trained-network stand-in: meets `Model` without inheriting from anything in dacast."""

    def __init__(self, n_state: int) -> None:
        super().__init__()
        self.n_state = n_state
        self.scale = torch.nn.Parameter(torch.ones(()))

    def step(self, x: torch.Tensor, t: float, dt: float) -> torch.Tensor:
        return x * self.scale


def test_model_protocol_is_met() -> None:
    for model in (Lorenz63(), Lorenz96(), CoupledLorenz63(), _ScaledIdentity(3)):
        assert isinstance(model, Model)
    assert not isinstance(object(), Model)
    assert not isinstance(torch.nn.Linear(3, 3), Model)  # no step / n_state


def test_float64_default_and_dtype_preserved() -> None:
    for model in (Lorenz63(), Lorenz96(), CoupledLorenz63()):
        x0 = model.default_initial_state()
        assert x0.dtype == torch.float64
        assert x0.shape == (model.n_state,)
        assert model.step(x0, 0.0, 0.01).dtype == torch.float64
        x32 = model.default_initial_state(dtype=torch.float32)
        assert x32.dtype == torch.float32
        assert model.step(x32, 0.0, 0.01).dtype == torch.float32
        assert integrate(model, x32, 2, 0.01).dtype == torch.float32
    assert Lorenz96().grid().coords.dtype == torch.float64
