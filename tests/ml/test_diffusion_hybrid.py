"""The hybrid prior: the learned denoiser blended with the forecast ensemble's localized Gaussian.

That the ensemble part alone samples the Kalman posterior exactly is checked with the sampler's other
Kalman tests (``tests/ml/test_diffusion.py``)."""

from __future__ import annotations

import pytest
import torch

from dacast.ml.diffusion import GaussianDenoiser
from dacast.ml.diffusion_hybrid import EnsembleBlend, HybridDenoiser
from dacast.ml.diffusion_sampling import GaussianLikelihood, SamplerConfig, guided_denoiser
from dacast.workflow.diffusion import Lorenz96Twin


def _covariance(n: int = 4, seed: int = 0) -> torch.Tensor:
    a = torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return a @ a.T / n + 0.5 * torch.eye(n, dtype=torch.float64)


def _gaussian(cov: torch.Tensor) -> GaussianDenoiser:
    """A stand-in learned denoiser: the exact one of ``N(0, cov)``."""
    return GaussianDenoiser(torch.zeros(cov.shape[0], dtype=cov.dtype), cov)


def test_the_blend_is_each_denoiser_at_its_ends_and_their_mixture_between() -> None:
    learned, ens = _gaussian(_covariance(seed=1)), _covariance(seed=2)
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 2.0
    exact = _gaussian(ens)
    for sigma in (0.1, 1.0, 30.0):
        torch.testing.assert_close(HybridDenoiser(learned, ens, 1.0)(x, sigma, None), exact(x, sigma))
        torch.testing.assert_close(HybridDenoiser(learned, ens, 0.0)(x, sigma, None), learned(x, sigma, None))
        mixed = HybridDenoiser(learned, ens, 0.3)(x, sigma, None)
        torch.testing.assert_close(mixed, 0.7 * learned(x, sigma, None) + 0.3 * exact(x, sigma))
        # the likelihood's covariance: isotropic for the learned part, Tweedie's (sigma^2 dD/dx) for the Gaussian
        cov = HybridDenoiser(learned, ens, 0.3).likelihood_covariance(sigma, 0.5)
        tweedie = sigma**2 * torch.linalg.solve(ens + sigma**2 * torch.eye(4, dtype=torch.float64), ens)
        torch.testing.assert_close(cov, 0.7 * 0.5 * torch.eye(4, dtype=torch.float64) + 0.3 * tweedie)


def test_the_ensemble_covariance_is_the_tapered_scaled_sample_covariance() -> None:
    errors = torch.randn(7, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64) + 3.0
    taper = torch.tensor([[1.0, 0.5, 0.0, 0.0, 0.5]], dtype=torch.float64)
    taper = torch.stack([taper[0].roll(i) for i in range(5)])
    blend = EnsembleBlend(weight=0.5, scale=0.7, taper=taper)
    torch.testing.assert_close(blend.covariance(errors), torch.cov(errors.T) * taper * 0.49)
    assert blend.denoiser(_gaussian(_covariance(5)), errors).weight == 0.5


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
    denoiser = HybridDenoiser(_gaussian(_covariance()), _covariance(seed=1), 0.5)
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
