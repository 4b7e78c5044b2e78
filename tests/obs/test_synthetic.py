"""Synthetic observations: H(truth) plus seeded Gaussian noise with the operator's std."""

from __future__ import annotations

import torch

from dacast.obs import SquareObs, identity, observe, subset


def test_noise_statistics() -> None:
    n_times, n_state = 20000, 6
    truth = torch.linspace(-3, 3, n_times * n_state, dtype=torch.float64).reshape(n_times, n_state)
    std = torch.tensor([0.1, 0.5, 1.0, 2.0, 0.3, 1.5], dtype=torch.float64)
    op = identity(n_state, std)
    y = observe(truth, op, torch.Generator().manual_seed(42))
    assert y.shape == (n_times, n_state) and y.dtype == torch.float64
    noise = y - truth
    # Standard errors: mean std/sqrt(n) ≈ 0.007 std; std std/sqrt(2n) ≈ 0.005 std.
    assert bool((noise.mean(0).abs() < 0.03 * std).all()), noise.mean(0)
    torch.testing.assert_close(noise.std(0), std, rtol=0.025, atol=0)
    # Uncorrelated across observations.
    corr = torch.corrcoef((noise / std).T)
    assert float((corr - torch.eye(n_state, dtype=torch.float64)).abs().max()) < 0.05


def test_seeded_and_reproducible() -> None:
    truth = torch.zeros((50, 10), dtype=torch.float64)
    op = subset(10, [1, 4, 8], 0.7)
    a = observe(truth, op, torch.Generator().manual_seed(1))
    b = observe(truth, op, torch.Generator().manual_seed(1))
    c = observe(truth, op, torch.Generator().manual_seed(2))
    assert a.shape == (50, 3)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_nonlinear_operator_and_dtype() -> None:
    truth = torch.full((4000, 3), 2.0, dtype=torch.float32)
    op = SquareObs(base=identity(3, 0.1), scale=1.0)
    y = observe(truth, op, torch.Generator().manual_seed(0))
    assert y.dtype == torch.float32 and y.shape == (4000, 3)
    assert abs(float(y.mean()) - 4.0) < 0.01
    assert abs(float(y.std()) - 0.1) < 0.01
