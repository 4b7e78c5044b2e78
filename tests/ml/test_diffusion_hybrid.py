"""The hybrid prior: the learned denoiser blended with the forecast ensemble's localized Gaussian."""

from __future__ import annotations

import pytest
import torch

from dacast.ml.diffusion import GaussianDenoiser, NoiseSchedule
from dacast.ml.diffusion_hybrid import EnsembleBlend, HybridDenoiser
from dacast.ml.diffusion_sampling import GaussianLikelihood, SamplerConfig, guided_denoiser, posterior_sample
from dacast.workflow.diffusion import Lorenz96Twin


def _covariance(n: int = 4, seed: int = 0) -> torch.Tensor:
    a = torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return a @ a.T / n + 0.5 * torch.eye(n, dtype=torch.float64)


class _Learned(torch.nn.Module):
    """A stand-in learned denoiser: the exact one of ``N(0, cov)``, with the sampler's ``spec``."""

    def __init__(self, cov: torch.Tensor) -> None:
        super().__init__()
        self.gauss = GaussianDenoiser(torch.zeros(cov.shape[0], dtype=cov.dtype), cov)

    def forward(self, x: torch.Tensor, sigma: float, cond: torch.Tensor | None) -> torch.Tensor:
        return self.gauss(x, sigma)


def test_the_blend_is_each_denoiser_at_its_ends_and_their_mixture_between() -> None:
    learned, ens = _Learned(_covariance(seed=1)), _covariance(seed=2)
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 2.0
    exact = GaussianDenoiser(torch.zeros(4, dtype=torch.float64), ens)
    for sigma in (0.1, 1.0, 30.0):
        torch.testing.assert_close(HybridDenoiser(learned, ens, 1.0)(x, sigma, None), exact(x, sigma))
        torch.testing.assert_close(HybridDenoiser(learned, ens, 0.0)(x, sigma, None), learned(x, sigma, None))
        mixed = HybridDenoiser(learned, ens, 0.3)(x, sigma, None)
        torch.testing.assert_close(mixed, 0.7 * learned(x, sigma, None) + 0.3 * exact(x, sigma))
        # the likelihood's covariance: isotropic for the learned part, Tweedie's (sigma^2 dD/dx) for the Gaussian
        cov = HybridDenoiser(learned, ens, 0.3).likelihood_covariance(sigma, 0.5)
        tweedie = sigma**2 * torch.linalg.solve(ens + sigma**2 * torch.eye(4, dtype=torch.float64), ens)
        torch.testing.assert_close(cov, 0.7 * 0.5 * torch.eye(4, dtype=torch.float64) + 0.3 * tweedie)


def test_the_ensemble_part_alone_samples_the_kalman_posterior_of_its_covariance() -> None:
    """Weight 1: the blend is the exact Gaussian and its likelihood exact, so 4 000 samples have the Kalman
    posterior's mean and covariance (the learned part, a different Gaussian, plays no part)."""
    cov = _covariance(seed=4)
    h = torch.tensor([[1.0, 0.0, 0.5, 0.0], [0.0, 1.0, 0.0, -1.0]], dtype=torch.float64)
    r, y = torch.tensor([0.3, 0.5], dtype=torch.float64), torch.tensor([1.0, -0.5], dtype=torch.float64)
    gain = cov @ h.T @ torch.linalg.inv(h @ cov @ h.T + torch.diag(r**2))
    mean_a, cov_a = gain @ y, cov - gain @ h @ cov
    denoiser = HybridDenoiser(_Learned(5.0 * _covariance(seed=9)), cov, 1.0)
    likelihood = GaussianLikelihood(y=y, operator=lambda z: z @ h.T, error_std=r)
    config = SamplerConfig(steps=64, schedule=NoiseSchedule(sigma_max=80.0), covariance="isotropic")
    x = posterior_sample(denoiser, (4000, 4), cond=None, likelihood=likelihood, config=config,
                         generator=torch.Generator().manual_seed(1), dtype=torch.float64)  # fmt: skip
    d = cov_a.diag()
    assert ((x.mean(0) - mean_a).abs() < 4 * (d / 4000).sqrt()).all()
    tol = 4 * ((d[:, None] * d[None, :] + cov_a**2) / 4000).sqrt() + 0.02 * cov_a.abs().max()
    assert ((torch.cov(x.T) - cov_a).abs() < tol).all()
    assert torch.cov(x.T).trace() < 0.6 * cov.trace()


def test_the_ensemble_covariance_is_the_tapered_scaled_sample_covariance() -> None:
    errors = torch.randn(7, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64) + 3.0
    taper = torch.tensor([[1.0, 0.5, 0.0, 0.0, 0.5]], dtype=torch.float64)
    taper = torch.stack([taper[0].roll(i) for i in range(5)])
    blend = EnsembleBlend(weight=0.5, scale=0.7, taper=taper)
    torch.testing.assert_close(blend.covariance(errors), torch.cov(errors.T) * taper * 0.49)
    assert blend.denoiser(_Learned(_covariance(5)), errors).weight == 0.5


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"weight": 1.5}, "weight must lie in"),
        ({"weight": 0.5, "scale": 0.0}, "scale must be positive"),
        ({"weight": 0.5, "taper": torch.ones(3, 4)}, "square matrix"),
    ],
)
def test_bad_blends_are_refused(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        EnsembleBlend(**({"taper": torch.eye(4)} | kwargs))


def test_a_blend_refuses_an_ensemble_it_cannot_use() -> None:
    blend = EnsembleBlend(weight=0.5, taper=torch.eye(4, dtype=torch.float64))
    with pytest.raises(ValueError, match="at least 2 members"):
        blend.covariance(torch.zeros(1, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="taper is for 4 state variables, the ensemble has 5"):
        blend.covariance(torch.zeros(3, 5, dtype=torch.float64))


@pytest.mark.parametrize("config", [{"cg_iterations": 2}, {"guidance": "mean"}])
def test_the_hybrid_likelihood_needs_the_dense_score_guidance(config: dict) -> None:
    denoiser = HybridDenoiser(_Learned(_covariance()), _covariance(seed=1), 0.5)
    likelihood = GaussianLikelihood(y=torch.zeros(4, dtype=torch.float64), operator=lambda z: z,
                                    error_std=torch.ones(4, dtype=torch.float64))  # fmt: skip
    sampler = SamplerConfig(steps=2, covariance="isotropic", **config)
    with pytest.raises(ValueError, match="own likelihood covariance"):
        guided_denoiser(denoiser, torch.zeros(2, 4, dtype=torch.float64), 1.0, None, likelihood, sampler)


def test_the_twin_taper_is_the_letkf_localization_on_the_ring() -> None:
    taper = Lorenz96Twin().taper()
    assert taper.shape == (40, 40) and torch.equal(taper, taper.T)
    torch.testing.assert_close(taper.diag(), torch.ones(40, dtype=torch.float64))
    assert torch.equal(taper[0, 1], taper[0, 39])  # ring distance: 1 both ways
    assert float(taper[0, 20]) == 0.0 and 0.0 < float(taper[0, 7]) < float(taper[0, 3]) < 1.0
