"""The diffusion toolkit: denoiser shapes, noise schedule, training, and posterior sampling against Kalman."""

from __future__ import annotations

import math

import pytest
import torch

from dacast.ml.diffusion import (
    Denoiser,
    DenoiserSpec,
    GaussianDenoiser,
    NoiseSchedule,
    PeriodicDenoiserNet,
    denoising_loss,
)
from dacast.ml.diffusion_filter import transport_latents
from dacast.ml.diffusion_hybrid import HybridDenoiser
from dacast.ml.diffusion_sampling import (
    GaussianLikelihood,
    SamplerConfig,
    guided_denoiser,
    posterior_sample,
    prior_to_noise,
)


def _gaussian_problem(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    n, p = 4, 2
    a = torch.randn(n, n, generator=g, dtype=torch.float64)
    cov = a @ a.T / n + 0.5 * torch.eye(n, dtype=torch.float64)
    h = torch.randn(p, n, generator=g, dtype=torch.float64)
    r = torch.tensor([0.3, 0.5], dtype=torch.float64)
    y = torch.tensor([1.0, -0.5], dtype=torch.float64)
    s = h @ cov @ h.T + torch.diag(r**2)
    gain = cov @ h.T @ torch.linalg.inv(s)
    return {"cov": cov, "h": h, "r": r, "y": y, "mean_a": gain @ y, "cov_a": cov - gain @ h @ cov}


def _standard_errors(cov: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Standard errors of a sample mean and of each sample covariance entry (Gaussian samples)."""
    d = cov.diag()
    return (d / n).sqrt(), ((d[:, None] * d[None, :] + cov**2) / n).sqrt()


def _kalman_posterior(
    start: torch.Tensor | None = None, n: int = 4000, denoiser: Denoiser | None = None, covariance: str = "jacobian"
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``n`` samples of the linear-Gaussian problem's posterior (by default the exact denoiser with Tweedie's
    covariance; 64 steps), from fresh noise or from ``start``, checked against the Kalman posterior's mean and
    covariance."""
    problem = _gaussian_problem()
    if denoiser is None:
        denoiser = GaussianDenoiser(torch.zeros(4, dtype=torch.float64), problem["cov"])
    h = problem["h"]
    likelihood = GaussianLikelihood(y=problem["y"], operator=lambda x: x @ h.T, error_std=problem["r"])
    config = SamplerConfig(steps=64, schedule=NoiseSchedule(sigma_max=80.0), covariance=covariance)
    if start is not None:
        start = transport_latents(prior_to_noise(denoiser, start, cond=None, config=config), 80.0)
    x = posterior_sample(
        denoiser, (n, 4), cond=None, likelihood=likelihood, config=config,
        generator=torch.Generator().manual_seed(1), dtype=torch.float64, start=start,
    )  # fmt: skip
    se_mean, se_cov = _standard_errors(problem["cov_a"], n)
    assert ((x.mean(0) - problem["mean_a"]).abs() < 4 * se_mean).all()
    # 4 standard errors of the sampling plus 2 % of the covariance for the 64-step discretisation
    tol = 4 * se_cov + 0.02 * problem["cov_a"].abs().max()
    assert ((torch.cov(x.T) - problem["cov_a"]).abs() < tol).all()
    # the posterior is much tighter than the prior, so this cannot pass by sampling the prior
    assert torch.cov(x.T).trace() < 0.6 * problem["cov"].trace()
    return x, problem


def test_sampler_recovers_the_kalman_posterior_of_a_linear_gaussian_problem() -> None:
    _kalman_posterior()


def test_a_denoiser_with_its_own_likelihood_covariance_recovers_the_kalman_posterior() -> None:
    """The hybrid prior at weight 1 is the problem's Gaussian with its exact Tweedie covariance, given to the
    isotropic likelihood by ``likelihood_covariance``; its learned part (another Gaussian) plays no part."""
    other = GaussianDenoiser(torch.zeros(4, dtype=torch.float64), 5.0 * _gaussian_problem(9)["cov"])
    hybrid = HybridDenoiser(other, _gaussian_problem()["cov"], 1.0)
    _kalman_posterior(denoiser=hybrid, covariance="isotropic")


def test_the_prior_ode_run_up_and_back_down_returns_the_states() -> None:
    problem = _gaussian_problem(2)
    denoiser = GaussianDenoiser(torch.zeros(4, dtype=torch.float64), problem["cov"])
    config = SamplerConfig(steps=64, schedule=NoiseSchedule(sigma_max=80.0))
    x0 = torch.randn(50, 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64) @ problem["cov"]
    latents = prior_to_noise(denoiser, x0, cond=None, config=config)
    # a typical state of the prior is carried to about N(0, sigma_max**2): far from where it began
    assert 40 < float(latents.std()) < 120
    back = posterior_sample(
        denoiser, (50, 4), cond=None, likelihood=None, config=config,
        generator=torch.Generator().manual_seed(9), dtype=torch.float64, start=latents,
    )  # fmt: skip
    assert float((back - x0).abs().max()) < 0.02 * float(x0.abs().max())
    with pytest.raises(ValueError, match="start must have the samples' shape"):
        posterior_sample(denoiser, (49, 4), cond=None, likelihood=None, config=config,
                         generator=torch.Generator(), dtype=torch.float64, start=latents)  # fmt: skip


def test_transported_prior_members_reach_the_kalman_posterior_and_keep_their_places() -> None:
    """Members of the prior, moved (not redrawn), have the Kalman posterior's mean and covariance, and
    each analysis member still goes with its forecast member (independent draws would not)."""
    members = torch.randn(4000, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    members = members @ torch.linalg.cholesky(_gaussian_problem()["cov"]).T
    x, _ = _kalman_posterior(start=members)
    corr = torch.stack([torch.corrcoef(torch.stack((members[:, i], x[:, i])))[0, 1] for i in range(4)])
    assert bool((corr > 0.5).all()), corr


def test_transport_latents_are_centred_and_of_unit_noise_in_every_variable() -> None:
    latents = torch.randn(7, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.1 + 2.0
    latents[:, 3] = 1.5  # every member agrees on this variable
    z = transport_latents(latents, 80.0)
    torch.testing.assert_close(z.mean(0), torch.zeros(5, dtype=torch.float64), rtol=0, atol=1e-12)
    rms = z.pow(2).sum(0).div(6).sqrt()
    torch.testing.assert_close(rms[[0, 1, 2, 4]], torch.full((4,), 80.0, dtype=torch.float64))
    assert float(rms[3]) == 0.0
    # the order of the members in each variable is kept
    assert torch.equal(z.argsort(0)[:, [0, 1, 2, 4]], latents.argsort(0)[:, [0, 1, 2, 4]])
    with pytest.raises(ValueError, match="at least 2 members"):
        transport_latents(latents[:1], 80.0)


def test_prior_sampling_without_observations_recovers_the_prior() -> None:
    problem = _gaussian_problem(3)
    denoiser = GaussianDenoiser(torch.zeros(4, dtype=torch.float64), problem["cov"])
    config = SamplerConfig(steps=32, schedule=NoiseSchedule(sigma_max=80.0))
    x = posterior_sample(
        denoiser, (4000, 4), cond=None, likelihood=None, config=config,
        generator=torch.Generator().manual_seed(2), dtype=torch.float64,
    )  # fmt: skip
    se_mean, se_cov = _standard_errors(problem["cov"], 4000)
    assert ((x.mean(0)).abs() < 4 * se_mean).all()
    assert ((torch.cov(x.T) - problem["cov"]).abs() < 4 * se_cov + 0.02 * problem["cov"].abs().max()).all()


def test_isotropic_likelihood_pulls_samples_towards_the_observations() -> None:
    """SDA's approximation is not exact, but it must move the samples from the prior towards y = x."""
    cov = torch.eye(3, dtype=torch.float64)
    denoiser = GaussianDenoiser(torch.zeros(3, dtype=torch.float64), cov)
    y = torch.tensor([2.0, -2.0, 1.0], dtype=torch.float64)
    likelihood = GaussianLikelihood(y=y, operator=lambda x: x, error_std=torch.full((3,), 0.5, dtype=torch.float64))
    config = SamplerConfig(steps=32, schedule=NoiseSchedule(sigma_max=80.0), covariance="isotropic", gamma=1.0)
    x = posterior_sample(
        denoiser, (2000, 3), cond=None, likelihood=likelihood, config=config,
        generator=torch.Generator().manual_seed(0), dtype=torch.float64,
    )  # fmt: skip
    exact = y / (1 + 0.25)  # posterior mean with prior N(0, I) and R = 0.25 I
    assert ((x.mean(0) - exact).abs() < 0.1 * exact.abs()).all()


def test_matrix_free_likelihood_equals_the_dense_one_and_truncation_damps_it() -> None:
    """CG with as many iterations as state variables solves the isotropic system exactly (nonlinear h)."""
    g = torch.Generator().manual_seed(1)
    n, p = 6, 9
    a = torch.randn(n, n, generator=g, dtype=torch.float64)
    denoiser = GaussianDenoiser(
        torch.zeros(n, dtype=torch.float64), a @ a.T / n + 0.2 * torch.eye(n, dtype=torch.float64)
    )
    h = torch.randn(p, n, generator=g, dtype=torch.float64)
    likelihood = GaussianLikelihood(y=torch.randn(p, generator=g, dtype=torch.float64),
                                    operator=lambda x: torch.tanh(x) @ h.T,
                                    error_std=torch.full((p,), 0.4, dtype=torch.float64))  # fmt: skip
    x = torch.randn(5, n, generator=g, dtype=torch.float64)
    dense = SamplerConfig(covariance="isotropic", gamma=0.7)
    exact = guided_denoiser(denoiser, x, 0.8, None, likelihood, dense)
    cg = guided_denoiser(denoiser, x, 0.8, None, likelihood, SamplerConfig(covariance="isotropic", gamma=0.7,
                                                                          cg_iterations=n))  # fmt: skip
    torch.testing.assert_close(cg, exact, rtol=1e-8, atol=1e-10)
    prior_only = denoiser(x, 0.8)
    one = guided_denoiser(denoiser, x, 0.8, None, likelihood, SamplerConfig(covariance="isotropic", gamma=0.7,
                                                                           cg_iterations=1))  # fmt: skip
    assert 0 < float((one - prior_only).norm()) and float((one - exact).norm()) > 1e-6
    with pytest.raises(ValueError, match="cg_iterations"):
        SamplerConfig(covariance="isotropic", cg_iterations=-1)


@pytest.mark.parametrize("cg", [0, 3])
def test_mean_guidance_is_exact_for_a_standard_normal_prior(cg: int) -> None:
    """For N(0, I) Tweedie's covariance is the isotropic one (gamma = 1): the Kalman posterior, dense or by CG."""
    denoiser = GaussianDenoiser(torch.zeros(3, dtype=torch.float64), torch.eye(3, dtype=torch.float64))
    y = torch.tensor([2.0, -2.0, 1.0], dtype=torch.float64)
    likelihood = GaussianLikelihood(y=y, operator=lambda x: x, error_std=torch.full((3,), 0.5, dtype=torch.float64))
    config = SamplerConfig(steps=32, schedule=NoiseSchedule(sigma_max=80.0), covariance="isotropic",
                           guidance="mean", cg_iterations=cg)  # fmt: skip
    n = 4000
    x = posterior_sample(denoiser, (n, 3), cond=None, likelihood=likelihood, config=config,
                         generator=torch.Generator().manual_seed(0), dtype=torch.float64)  # fmt: skip
    mean_a, var_a = y / 1.25, torch.full((3,), 0.2, dtype=torch.float64)  # prior N(0, I), R = 0.25 I
    se_mean, se_var = (var_a / n).sqrt(), var_a * (2 / n) ** 0.5
    assert ((x.mean(0) - mean_a).abs() < 4 * se_mean).all()
    assert ((x.var(0) - var_a).abs() < 4 * se_var + 0.02 * var_a).all()
    with pytest.raises(ValueError, match="guidance"):
        SamplerConfig(guidance="mean")


def test_samples_are_a_function_of_the_seed() -> None:
    net = PeriodicDenoiserNet(DenoiserSpec(cond_channels=1, channels=8, layers=2))
    cond = torch.randn(3, 1, 10)
    likelihood = GaussianLikelihood(y=torch.zeros(5), operator=lambda x: x[:, ::2], error_std=torch.ones(5))
    config = SamplerConfig(steps=4)

    def draw(seed: int) -> torch.Tensor:
        flat = _FlatNet(net)
        return posterior_sample(
            flat,
            (3, 10),
            cond=cond,
            likelihood=likelihood,
            config=config,
            generator=torch.Generator().manual_seed(seed),
        )

    assert torch.equal(draw(5), draw(5))
    assert not torch.equal(draw(5), draw(6))


class _FlatNet(torch.nn.Module):
    def __init__(self, net: PeriodicDenoiserNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, sigma: float, cond: torch.Tensor | None) -> torch.Tensor:
        return self.net(x[:, None], sigma, cond)[:, 0]


@pytest.mark.parametrize("dims", [1, 2])
def test_denoiser_keeps_the_state_shape_and_is_periodic(dims: int) -> None:
    spec = DenoiserSpec(dims=dims, state_channels=2, cond_channels=1, channels=8, layers=2, kernel=3)
    net = PeriodicDenoiserNet(spec)
    grid = (12,) if dims == 1 else (8, 8)
    x, cond = torch.randn(3, 2, *grid), torch.randn(3, 1, *grid)
    out = net(x, 0.5, cond)
    assert out.shape == x.shape
    # circular padding: shifting the input shifts the output
    shifted = net(x.roll(3, dims=-1), 0.5, cond.roll(3, dims=-1))
    torch.testing.assert_close(shifted, out.roll(3, dims=-1), rtol=1e-5, atol=1e-5)


def test_denoiser_at_huge_noise_returns_about_zero_and_at_tiny_noise_the_input() -> None:
    """EDM's preconditioning: D -> c_skip x -> 0 as sigma -> inf; D -> x as sigma -> 0."""
    net = PeriodicDenoiserNet(DenoiserSpec(cond_channels=0, channels=8, layers=2))
    x = torch.randn(4, 1, 16)
    assert net(x * 1e4, 1e4, None).abs().max() < 1e-2 * 1e4
    torch.testing.assert_close(net(x, 1e-6, None), x, rtol=0, atol=1e-5)


def test_training_learns_a_periodic_gaussian_prior() -> None:
    """A few hundred steps on a stationary periodic Gaussian process give samples with about its variance."""
    torch.manual_seed(0)
    n = 16
    k = torch.arange(n, dtype=torch.float64)
    lag = (k[:, None] - k[None, :]).remainder(n)
    cov = torch.exp(-(torch.minimum(lag, n - lag) ** 2) / 8.0) + 0.05 * torch.eye(n, dtype=torch.float64)
    chol = torch.linalg.cholesky(cov)
    g = torch.Generator().manual_seed(0)
    data = (torch.randn(4096, n, generator=g, dtype=torch.float64) @ chol.T).float()[:, None]
    net = PeriodicDenoiserNet(DenoiserSpec(cond_channels=0, channels=24, layers=3, kernel=5))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    schedule = NoiseSchedule(sigma_max=40.0)
    first = last = math.nan
    for step in range(400):
        loss = denoising_loss(net, data[torch.randint(0, 4096, (128,), generator=g)], None, schedule, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = float(loss.detach()) if step == 0 else first
        last = float(loss.detach())
    assert last < 0.6 * first
    net.eval().requires_grad_(False)
    x = posterior_sample(
        _FlatNet(net), (1000, n), cond=None, likelihood=None, config=SamplerConfig(steps=16, schedule=schedule),
        generator=torch.Generator().manual_seed(3),
    )  # fmt: skip
    assert 0.75 < float(x.var(0).mean()) / float(cov.diag().mean()) < 1.25
    neighbour = float((x * x.roll(1, dims=1)).mean()) / float(x.var(0).mean())
    assert abs(neighbour - float(cov[0, 1] / cov[0, 0])) < 0.15


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="kernel"):
        DenoiserSpec(kernel=4)
    with pytest.raises(ValueError, match="dims"):
        DenoiserSpec(dims=3)
    with pytest.raises(ValueError, match="sigma_min"):
        NoiseSchedule(sigma_min=1.0, sigma_max=0.5)
    with pytest.raises(ValueError, match="covariance"):
        SamplerConfig(covariance="full")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="steps"):
        SamplerConfig(steps=0)
    sigmas = NoiseSchedule(sigma_min=0.01, sigma_max=10.0).sampling_sigmas(5)
    assert sigmas.shape == (6,) and sigmas[0] == pytest.approx(10.0) and sigmas[-2] == pytest.approx(0.01)
    assert sigmas[-1] == 0 and bool((sigmas[:-1].diff() < 0).all())
