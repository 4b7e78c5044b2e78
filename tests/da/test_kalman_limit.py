"""Ensemble filters against the exact Kalman filter on a linear-Gaussian problem.

With prior N(μ, B), linear H and Gaussian R, the Kalman filter gives
K = B Hᵀ (H B Hᵀ + R)⁻¹, μa = μ + K (y - H μ), Pa = (I - K H) B.
The ETKF and the stochastic EnKF must approach these as the ensemble grows;
when the prior ensemble has exactly mean μ and covariance B (possible for
N > n) the ETKF reproduces μa and Pa exactly and the EnKF (centred
perturbations) reproduces μa exactly.
"""

from __future__ import annotations

import pytest
import torch

from dacast.da import EnKFConfig, ETKFConfig, enkf, etkf
from dacast.obs import matrix

N_STATE = 4


def _linear_gaussian() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(123)
    a = torch.randn((N_STATE, N_STATE), generator=gen, dtype=torch.float64)
    b = a @ a.T + 0.5 * torch.eye(N_STATE, dtype=torch.float64)
    mu = torch.randn(N_STATE, generator=gen, dtype=torch.float64)
    h = torch.randn((3, N_STATE), generator=gen, dtype=torch.float64)
    std = torch.tensor([0.5, 1.0, 0.8], dtype=torch.float64)
    y = h @ mu + torch.tensor([1.0, -0.7, 0.4], dtype=torch.float64)
    s = h @ b @ h.T + torch.diag(std**2)
    gain = b @ h.T @ torch.linalg.inv(s)
    return {
        "b": b,
        "mu": mu,
        "h": h,
        "std": std,
        "y": y,
        "mean_a": mu + gain @ (y - h @ mu),
        "cov_a": (torch.eye(N_STATE, dtype=torch.float64) - gain @ h) @ b,
    }


def _sample(lg: dict[str, torch.Tensor], n_members: int, seed: int, exact: bool) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn((n_members, N_STATE), generator=gen, dtype=torch.float64)
    if exact:  # sample mean 0 and sample covariance I, exactly
        z = z - z.mean(0)
        chol = torch.linalg.cholesky(z.T @ z / (n_members - 1))
        z = torch.linalg.solve_triangular(chol, z.T, upper=False).T
    return lg["mu"] + z @ torch.linalg.cholesky(lg["b"]).T


def _errors(ens: torch.Tensor, lg: dict[str, torch.Tensor]) -> tuple[float, float]:
    mean_err = float((ens.mean(0) - lg["mean_a"]).norm() / lg["mean_a"].norm())
    cov_err = float((torch.cov(ens.T) - lg["cov_a"]).norm() / lg["cov_a"].norm())
    return mean_err, cov_err


def test_kalman_reference_is_sane() -> None:
    lg = _linear_gaussian()
    # Information form: Pa⁻¹ = B⁻¹ + Hᵀ R⁻¹ H.
    info = torch.linalg.inv(lg["b"]) + lg["h"].T @ torch.diag(lg["std"] ** -2) @ lg["h"]
    torch.testing.assert_close(torch.linalg.inv(lg["cov_a"]), info, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("n_members", [N_STATE + 1, N_STATE + 3, 50])
def test_etkf_exact_for_exact_prior_moments(n_members: int) -> None:
    lg = _linear_gaussian()
    op = matrix(lg["h"], lg["std"])
    prior = _sample(lg, n_members, seed=n_members, exact=True)
    torch.testing.assert_close(prior.mean(0), lg["mu"], rtol=0, atol=1e-12)
    torch.testing.assert_close(torch.cov(prior.T), lg["b"], rtol=0, atol=1e-10)
    for form in ("ensemble", "gram"):
        post = etkf(prior, lg["y"], op, ETKFConfig(form=form))
        torch.testing.assert_close(post.mean, lg["mean_a"], rtol=0, atol=1e-10)
        torch.testing.assert_close(torch.cov(post.ensemble.T), lg["cov_a"], rtol=0, atol=1e-10)
        torch.testing.assert_close(post.spread, lg["cov_a"].diagonal().sqrt(), rtol=0, atol=1e-10)


@pytest.mark.parametrize("n_members", [N_STATE + 1, 20])
def test_enkf_exact_mean_for_exact_prior_moments(n_members: int) -> None:
    lg = _linear_gaussian()
    op = matrix(lg["h"], lg["std"])
    prior = _sample(lg, n_members, seed=n_members, exact=True)
    post = enkf(prior, lg["y"], op, EnKFConfig(), torch.Generator().manual_seed(0))
    torch.testing.assert_close(post.mean, lg["mean_a"], rtol=0, atol=1e-10)


@pytest.mark.parametrize("method", ["etkf", "enkf"])
def test_filters_approach_kalman_filter_as_ensemble_grows(method: str) -> None:
    lg = _linear_gaussian()
    op = matrix(lg["h"], lg["std"])
    sizes = (10, 100, 1000, 10000)
    seeds = range(8)
    mean_errs, cov_errs = [], []
    for n_members in sizes:
        errs = []
        for seed in seeds:
            prior = _sample(lg, n_members, seed=1000 * seed + n_members, exact=False)
            if method == "etkf":
                post = etkf(prior, lg["y"], op, ETKFConfig())
            else:
                post = enkf(prior, lg["y"], op, EnKFConfig(), torch.Generator().manual_seed(seed))
            errs.append(_errors(post.ensemble, lg))
        mean_errs.append(sum(e[0] for e in errs) / len(errs))
        cov_errs.append(sum(e[1] for e in errs) / len(errs))
    # Sampling error ~ 1/sqrt(N): each tenfold increase should cut the error by ~3.
    for i in range(len(sizes) - 1):
        assert mean_errs[i + 1] < 0.6 * mean_errs[i], mean_errs
        assert cov_errs[i + 1] < 0.6 * cov_errs[i], cov_errs
    assert mean_errs[-1] < 0.03, mean_errs
    assert cov_errs[-1] < 0.05, cov_errs
