"""Posterior sampling with a diffusion prior: Heun's method on the probability-flow ODE, guided by observations.

Given a denoiser ``D`` of a prior ``p(x0)`` and observations ``y = h(x0) + e``,
``e ~ N(0, R)``, the score of the noisy posterior is the prior score plus the
likelihood score ``grad_x log p(y | x)``. With the Gaussian approximation of
``p(x0 | x)`` (mean ``D(x)``, covariance ``Sigma``) and ``h`` linearised at ``D(x)``
(Jacobian ``Hj``)::

    p(y | x) ~ N(y | h(D(x)), R + Hj Sigma Hj^T)
    grad_x log p(y | x) ~ (dD/dx)^T Hj^T S^-1 (y - h(D(x))),   S = R + Hj Sigma Hj^T

Two choices of ``Sigma`` (`SamplerConfig.covariance`):

* ``"jacobian"``: Tweedie's second moment, ``Sigma = sigma**2 dD/dx`` (the denoiser's
  full Jacobian, as in moment-matching posterior sampling, Rozet et al. 2024). For a
  Gaussian prior and linear ``h`` it is exact, and the sampler draws from the Kalman
  posterior (tested). It costs one backward pass per state variable: for states of a
  few hundred variables.
* ``"isotropic"``: ``Sigma = gamma * sigma**2 * sd**2 / (sigma**2 + sd**2) I``, ``sd`` the
  denoiser's ``sigma_data`` (score-based data assimilation's ``gamma sigma**2 I``, Rozet &
  Louppe 2023, kept below the data variance at large ``sigma``): one vector-Jacobian
  product per step, for large states. With ``cg_iterations > 0`` the ``p x p`` system is not formed:
  ``Hj^T S^-1 r = u / v`` (``v`` the isotropic variance) where ``(I / v + Hj^T R^-1 Hj) u = Hj^T R^-1 r``
  is solved by conjugate gradients in state space with Jacobian-vector products of ``h`` (no Jacobian
  of ``h`` is stored): for thousands of observations (radar volumes) and operators through a decoder.
  Truncated early, CG under-shoots the update, as a damped Kalman step.

How the likelihood enters (`SamplerConfig.guidance`): ``"score"`` differentiates ``log p(y | x)``
through the denoiser, ``D + sigma**2 (dD/dx)^T Hj^T S^-1 r`` (as SDA); ``"mean"`` (isotropic only)
takes Tweedie's ``sigma**2 dD/dx`` to be the same ``Sigma = v I`` the likelihood assumes, so the
posterior denoiser is the Kalman update of ``D(x)``, ``D + v Hj^T S^-1 r``, without a backward pass
through the denoiser. With many observations the score form can overshoot where ``sigma**2 dD/dx``
of the network is larger than ``v`` (at large ``sigma``), and the mean form stays bounded.

The posterior denoiser ``D(x) + sigma**2 grad log p(y | x)`` then drives the Heun
sampler of EDM (deterministic given the initial noise; ``churn`` adds EDM's
stochastic noise re-injection). Everything is batched over samples. The initial
latents may be given (``start``) instead of drawn: `prior_to_noise` runs the prior's
ODE upwards, so that given states can be carried to the posterior rather than new
ones drawn.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from dacast.ml.diffusion import Denoiser, NoiseSchedule


@dataclass(frozen=True)
class GaussianLikelihood:
    """Observations ``y = h(x) + e`` with ``e ~ N(0, diag(error_std**2))``.

    Attributes:
        y: observed values ``(p,)`` (observation units), the same for every sample.
        operator: ``h``, maps flattened states ``(B, n)`` to ``(B, p)``; differentiable.
        error_std: observation-error standard deviations ``(p,)``.
    """

    y: Tensor
    operator: Callable[[Tensor], Tensor]
    error_std: Tensor


@dataclass(frozen=True, kw_only=True)
class SamplerConfig:
    """How posterior samples are drawn.

    Attributes:
        steps: Heun steps (2 network evaluations each, 1 for the last).
        schedule: the noise levels (``sigma_min``, ``sigma_max``, ``rho``).
        covariance: ``"jacobian"`` (Tweedie, exact for linear-Gaussian) or ``"isotropic"`` (SDA-like, see the module).
        gamma: the isotropic variance factor (``"isotropic"`` only).
        cg_iterations: ``"isotropic"`` only: 0 solves with the operator's dense Jacobian, more runs that many
            matrix-free conjugate-gradient iterations (for many observations; see the module).
        guidance: ``"score"`` (through the denoiser, as SDA) or ``"mean"`` (``"isotropic"`` only; see the module).
        churn: EDM's ``S_churn`` (0: deterministic ODE given the initial noise).
        transport: for the filters (`dacast.ml.DiffusionAnalyser`, `dacast.ml.LatentDiffusionAnalyser`): move
            the forecast members to the posterior (their latents from `prior_to_noise` as ``start``) instead
            of drawing new samples; needs ``churn`` 0, so that the move is deterministic.
    """

    steps: int = 32
    schedule: NoiseSchedule = NoiseSchedule()
    covariance: Literal["jacobian", "isotropic"] = "jacobian"
    gamma: float = 1.0
    churn: float = 0.0
    cg_iterations: int = 0
    guidance: Literal["score", "mean"] = "score"
    transport: bool = False

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.covariance not in ("jacobian", "isotropic"):
            raise ValueError(f"covariance must be 'jacobian' or 'isotropic', got {self.covariance!r}")
        if self.cg_iterations < 0:
            raise ValueError(f"cg_iterations must be >= 0, got {self.cg_iterations}")
        if self.guidance not in ("score", "mean") or (self.guidance == "mean" and self.covariance != "isotropic"):
            raise ValueError(f"guidance must be 'score', or 'mean' with isotropic covariance, got {self.guidance!r}")
        if self.gamma <= 0 or self.churn < 0:
            raise ValueError("gamma must be positive and churn non-negative")
        if self.transport and self.churn > 0:
            raise ValueError("transport moves the members deterministically: churn must be 0")


def _batched_jacobian(f: Callable[[Tensor], Tensor], x: Tensor, m: int) -> tuple[Tensor, Tensor]:
    """``f(x)`` ``(B, m)`` and its Jacobian ``(B, m, n)`` at ``x`` ``(B, n)``, for an ``f`` that acts row by row.

    One forward and one backward pass over ``B * m`` copies of the rows (row ``j`` of copy ``i``
    picks output ``j``): much faster than a ``vmap`` of ``jacrev`` through convolutions.
    """
    b, n = x.shape
    with torch.enable_grad():
        rows = x.detach().repeat_interleave(m, dim=0).requires_grad_(True)
        out = f(rows)
        pick = torch.eye(m, dtype=out.dtype, device=out.device).repeat(b, 1)
        (jac,) = torch.autograd.grad(out, rows, grad_outputs=pick)
    value = out.detach()[::m]
    return value, jac.reshape(b, m, n)


def _jacobian(denoiser: Denoiser, x: Tensor, sigma: float, cond: Tensor | None) -> tuple[Tensor, Tensor]:
    """``D(x)`` ``(B, n)`` and ``dD/dx`` ``(B, n, n)`` of flattened states."""
    b, shape = x.shape[0], x.shape[1:]
    n = x[0].numel()
    rep = None if cond is None else cond.repeat_interleave(n, dim=0)
    return _batched_jacobian(lambda r: denoiser(r.reshape(-1, *shape), sigma, rep).reshape(b * n, n),
                             x.reshape(b, n), n)  # fmt: skip


def _operator_jacobian(likelihood: GaussianLikelihood, d: Tensor) -> tuple[Tensor, Tensor]:
    """``h(d)`` ``(B, p)`` and its Jacobian ``(B, p, n)`` at flattened states ``d`` ``(B, n)``."""
    return _batched_jacobian(likelihood.operator, d, int(likelihood.y.shape[0]))


def _cg_guidance(likelihood: GaussianLikelihood, d: Tensor, var: float, iterations: int) -> Tensor:
    """``Hj^T (R + var Hj Hj^T)^-1 (y - h(d))`` ``(B, n)`` at flat states ``d`` ``(B, n)``, by matrix-free CG."""
    y, w = likelihood.y.to(d), likelihood.error_std.to(d).pow(-2)
    hd, vjp = torch.func.vjp(likelihood.operator, d)

    def jvp(v: Tensor) -> Tensor:  # forward mode each time: operators with data-dependent shapes cannot be traced
        return torch.func.jvp(likelihood.operator, (d,), (v,))[1]

    rhs = vjp(w * (y - hd))[0]
    u, res = torch.zeros_like(rhs), rhs.clone()
    direction, rr = res.clone(), res.pow(2).sum(1, keepdim=True)
    for _ in range(iterations):
        a_dir = direction / var + vjp(w * jvp(direction))[0]
        alpha = rr / (direction * a_dir).sum(1, keepdim=True).clamp_min(torch.finfo(d.dtype).tiny)
        u, res = u + alpha * direction, res - alpha * a_dir
        rr_next = res.pow(2).sum(1, keepdim=True)
        direction = res + rr_next / rr.clamp_min(torch.finfo(d.dtype).tiny) * direction
        rr = rr_next
    return u / var


def _isotropic_gain(likelihood: GaussianLikelihood, d: Tensor, var: float, config: SamplerConfig) -> Tensor:
    """``Hj^T (R + var Hj Hj^T)^-1 (y - h(d))`` ``(B, n)`` at flat states ``d`` ``(B, n)``: dense or by CG."""
    if config.cg_iterations:
        return _cg_guidance(likelihood, d, var, config.cg_iterations)
    return _covariance_gain(likelihood, d, var)


def _covariance_gain(likelihood: GaussianLikelihood, d: Tensor, cov: float | Tensor) -> Tensor:
    """``Hj^T (R + Hj C Hj^T)^-1 (y - h(d))`` ``(B, n)`` at flat states ``d`` ``(B, n)``, dense.

    ``C`` is ``cov * I`` for a number, else the matrix ``cov`` ``(n, n)``.
    """
    std, y = likelihood.error_std.to(d), likelihood.y.to(d)
    hd, hj = _operator_jacobian(likelihood, d)
    if isinstance(cov, Tensor):
        hch = hj @ cov.to(d) @ hj.transpose(1, 2)
    else:
        hch = cov * hj @ hj.transpose(1, 2)
    s = torch.diag_embed(std**2).expand(d.shape[0], -1, -1) + hch
    u = torch.linalg.solve(s, (y - hd)[..., None])[..., 0]
    return (u[:, None, :] @ hj)[:, 0, :]


def guided_denoiser(
    denoiser: Denoiser,
    x: Tensor,
    sigma: float,
    cond: Tensor | None,
    likelihood: GaussianLikelihood,
    config: SamplerConfig,
) -> Tensor:
    """The posterior denoiser ``D(x) + sigma**2 grad_x log p(y | x)``, shape of ``x`` ``(B, *state)``.

    A denoiser with a ``likelihood_covariance(sigma, isotropic_var)`` method (the hybrid prior,
    `dacast.ml.diffusion_hybrid.HybridDenoiser`) gives the ``"isotropic"`` likelihood its own covariance
    ``(n, n)`` instead of ``isotropic_var * I`` (dense solve, score guidance only).
    """
    b = x.shape[0]
    if config.covariance == "jacobian":
        std, y = likelihood.error_std.to(x), likelihood.y.to(x)
        d, jac = _jacobian(denoiser, x, sigma, cond)
        hd, hj = _operator_jacobian(likelihood, d)
        cov = sigma**2 * 0.5 * (jac + jac.transpose(1, 2))
        s = torch.diag_embed(std**2).expand(b, -1, -1) + hj @ cov @ hj.transpose(1, 2)
        u = torch.linalg.solve(s, (y - hd)[..., None])[..., 0]
        grad = ((u[:, None, :] @ hj) @ jac)[:, 0, :]
        return (d + sigma**2 * grad).reshape(x.shape)
    own_cov = getattr(denoiser, "likelihood_covariance", None)
    if own_cov is not None and (config.cg_iterations or config.guidance != "score"):
        raise ValueError("a denoiser with its own likelihood covariance needs score guidance and cg_iterations 0")
    sd2 = getattr(getattr(denoiser, "spec", None), "sigma_data", 1.0) ** 2
    var = config.gamma * sigma**2 * sd2 / (sigma**2 + sd2)
    if config.guidance == "mean":
        with torch.no_grad():
            d = denoiser(x, sigma, cond).reshape(b, -1)
        return (d + var * _isotropic_gain(likelihood, d, var, config)).reshape(x.shape)
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        dg = denoiser(xg, sigma, cond).reshape(b, -1)
        d = dg.detach()
        if own_cov is None:
            v = _isotropic_gain(likelihood, d, var, config)
        else:
            v = _covariance_gain(likelihood, d, own_cov(sigma, var))
        (grad,) = torch.autograd.grad(dg, xg, grad_outputs=v)
    return d.reshape(x.shape) + sigma**2 * grad.reshape(x.shape)


def _prior_slope(denoiser: Denoiser, x: Tensor, sigma: float, cond: Tensor | None) -> Tensor:
    """``dx/dsigma = (x - D(x)) / sigma`` of the prior's probability-flow ODE, shape of ``x``."""
    with torch.no_grad():
        return (x - denoiser(x, sigma, cond)) / sigma


def prior_to_noise(denoiser: Denoiser, x0: Tensor, *, cond: Tensor | None, config: SamplerConfig) -> Tensor:
    """The latents at ``sigma_max`` of states ``x0`` ``(B, *state)``: the prior's probability-flow ODE run upwards.

    Heun's method over the sampler's own noise levels, from ``sigma_min`` to ``sigma_max``: the inverse,
    to the discretisation, of `posterior_sample` without observations and without churn. States that are
    typical of the prior come out as about ``N(0, sigma_max**2)`` per variable; a state's latent keeps its
    place among the others' (the ODE's flow is a smooth bijection), which is what a filter that moves
    its members rather than drawing new ones uses (`dacast.ml.diffusion_filter.DiffusionAnalyser`).
    Same shape, dtype and device as ``x0``; ``cond`` as for `posterior_sample`.
    """
    sigmas = config.schedule.sampling_sigmas(config.steps).tolist()[-2::-1]  # sigma_min ... sigma_max
    x = x0
    for s_cur, s_next in zip(sigmas[:-1], sigmas[1:], strict=True):
        slope = _prior_slope(denoiser, x, s_cur, cond)
        x_next = x + (s_next - s_cur) * slope
        x = x + (s_next - s_cur) * 0.5 * (slope + _prior_slope(denoiser, x_next, s_next, cond))
    return x


def posterior_sample(
    denoiser: Denoiser,
    shape: tuple[int, ...],
    *,
    cond: Tensor | None,
    likelihood: GaussianLikelihood | None,
    config: SamplerConfig,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    start: Tensor | None = None,
) -> Tensor:
    """Draw samples ``(B, *state)`` (``shape``) from the prior, or from the posterior given ``likelihood``.

    Args:
        denoiser: the prior's denoiser.
        shape: ``(B, *state)``, the samples to draw.
        cond: conditioning channels ``(B, C, *grid)`` passed to the denoiser, or ``None``.
        likelihood: the observations; ``None`` samples the prior.
        config: steps, noise levels, covariance approximation.
        generator: CPU generator of the initial (and churn) noise: samples are a function of its seed.
        dtype, device: of the samples.
        start: latents ``shape`` at ``sigma_max`` to begin from instead of fresh noise (`prior_to_noise`);
            with ``churn`` 0 the samples are then a deterministic function of them.
    """
    sigmas = config.schedule.sampling_sigmas(config.steps).tolist()
    if start is None:
        x = sigmas[0] * torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype=dtype, device=device)
    elif tuple(start.shape) != tuple(shape):
        raise ValueError(f"start must have the samples' shape {tuple(shape)}, got {tuple(start.shape)}")
    else:
        x = start.to(dtype=dtype, device=device)
    gamma_churn = min(config.churn / config.steps, 2**0.5 - 1)

    def dx(xc: Tensor, sigma: float) -> Tensor:
        if likelihood is None:
            return _prior_slope(denoiser, xc, sigma, cond)
        return (xc - guided_denoiser(denoiser, xc, sigma, cond, likelihood, config)) / sigma

    for i in range(config.steps):
        s_cur, s_next = sigmas[i], sigmas[i + 1]
        if gamma_churn > 0 and s_next > 0:
            s_hat = s_cur * (1 + gamma_churn)
            extra = torch.randn(shape, generator=generator, dtype=torch.float64).to(x)
            x = x + (s_hat**2 - s_cur**2) ** 0.5 * extra
            s_cur = s_hat
        slope = dx(x, s_cur)
        x_next = x + (s_next - s_cur) * slope
        if s_next > 0:
            x_next = x + (s_next - s_cur) * 0.5 * (slope + dx(x_next, s_next))
        x = x_next.detach()
    return x


__all__ = ["GaussianLikelihood", "SamplerConfig", "guided_denoiser", "posterior_sample", "prior_to_noise"]
