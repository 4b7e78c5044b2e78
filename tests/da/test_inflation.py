"""RTPP and RTPS (Whitaker & Hamill 2012), standalone and through the filter configs; adaptive inflation."""

from __future__ import annotations

import math

import pytest
import torch
from da_helpers import noisy_obs, ring_ensemble

from dacast.da import (
    AdaptiveInflation,
    EnKFConfig,
    ETKFConfig,
    LETKFConfig,
    Localization,
    enkf,
    etkf,
    innovation_inflation,
    letkf,
    rtpp,
    rtps,
    whiten,
)
from dacast.obs import Grid, every_kth, subset


def _pair() -> tuple[torch.Tensor, torch.Tensor]:
    prior = ring_ensemble(10, 16, seed=1, spread=2.0)
    analysis = 0.3 * ring_ensemble(10, 16, seed=2) + 1.0
    return prior, analysis


def test_rtpp_limits_and_interpolation() -> None:
    prior, analysis = _pair()
    torch.testing.assert_close(rtpp(prior, analysis, 0.0), analysis, rtol=0, atol=0)
    expected = analysis.mean(0) + (prior - prior.mean(0))
    torch.testing.assert_close(rtpp(prior, analysis, 1.0), expected, rtol=0, atol=1e-14)
    half = rtpp(prior, analysis, 0.5)
    torch.testing.assert_close(half.mean(0), analysis.mean(0), rtol=0, atol=1e-14)
    anom = 0.5 * (analysis - analysis.mean(0)) + 0.5 * (prior - prior.mean(0))
    torch.testing.assert_close(half - half.mean(0), anom, rtol=0, atol=1e-14)


def test_rtps_limits_and_spread() -> None:
    prior, analysis = _pair()
    torch.testing.assert_close(rtps(prior, analysis, 0.0), analysis, rtol=0, atol=0)
    full = rtps(prior, analysis, 1.0)
    torch.testing.assert_close(full.mean(0), analysis.mean(0), rtol=0, atol=1e-14)
    torch.testing.assert_close(full.std(0), prior.std(0), rtol=1e-13, atol=0)
    half = rtps(prior, analysis, 0.4)
    torch.testing.assert_close(half.std(0), 0.4 * prior.std(0) + 0.6 * analysis.std(0), rtol=1e-13, atol=0)
    # Anomaly pattern unchanged, only rescaled pointwise.
    ratio = (half - half.mean(0)) / (analysis - analysis.mean(0))
    torch.testing.assert_close(ratio, ratio[:1].expand_as(ratio), rtol=1e-10, atol=0)


def test_rtps_zero_analysis_spread_is_safe() -> None:
    prior, _ = _pair()
    collapsed = torch.ones_like(prior)
    out = rtps(prior, collapsed, 1.0)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, collapsed, rtol=0, atol=0)


@pytest.mark.parametrize("alpha", [-0.1, 1.01, float("nan")])
def test_invalid_alpha_raises(alpha: float) -> None:
    prior, analysis = _pair()
    with pytest.raises(ValueError, match="RTPP"):
        rtpp(prior, analysis, alpha)
    with pytest.raises(ValueError, match="RTPS"):
        rtps(prior, analysis, alpha)


def test_relaxation_through_filter_configs() -> None:
    n, k = 40, 12
    prior = ring_ensemble(k, n, seed=3)
    op = every_kth(n, 2, 0.5)
    y = noisy_obs(op(prior.mean(0)), seed=4)
    plain = etkf(prior, y, op, ETKFConfig())
    relaxed = etkf(prior, y, op, ETKFConfig(rtpp=1.0))
    torch.testing.assert_close(relaxed.ensemble, plain.mean + (prior - prior.mean(0)), rtol=0, atol=1e-12)
    spread = etkf(prior, y, op, ETKFConfig(rtps=1.0))
    torch.testing.assert_close(spread.spread, prior.std(0), rtol=1e-12, atol=0)
    torch.testing.assert_close(spread.mean, plain.mean, rtol=0, atol=1e-12)

    grid = Grid.ring(n)
    loc = Localization(length=3.0)
    plain_l = letkf(prior, y, op, LETKFConfig(localization=loc), grid)
    spread_l = letkf(prior, y, op, LETKFConfig(localization=loc, rtps=0.7), grid)
    torch.testing.assert_close(spread_l.ensemble, rtps(prior, plain_l.ensemble, 0.7), rtol=0, atol=1e-12)

    gen = lambda: torch.Generator().manual_seed(9)  # noqa: E731
    plain_e = enkf(prior, y, op, EnKFConfig(), gen())
    relaxed_e = enkf(prior, y, op, EnKFConfig(rtpp=0.3), gen())
    torch.testing.assert_close(relaxed_e.ensemble, rtpp(prior, plain_e.ensemble, 0.3), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="RTPP"):
        etkf(prior, y, op, ETKFConfig(rtpp=1.5))


def test_enkf_inflation_equals_inflating_prior() -> None:
    n, k = 20, 15
    prior = ring_ensemble(k, n, seed=5)
    op = every_kth(n, 2, 0.5)
    y = noisy_obs(op(prior.mean(0)), seed=6)
    inflated = prior.mean(0) + 1.3 * (prior - prior.mean(0))
    a = enkf(prior, y, op, EnKFConfig(inflation=1.3), torch.Generator().manual_seed(1))
    b = enkf(inflated, y, op, EnKFConfig(), torch.Generator().manual_seed(1))
    torch.testing.assert_close(a.ensemble, b.ensemble, rtol=0, atol=1e-12)
    for config in (EnKFConfig, ETKFConfig):
        with pytest.raises(ValueError, match="inflation"):
            config(inflation=-1.0)


def test_innovation_inflation_recovers_the_factor_of_the_innovations() -> None:
    """Innovations drawn from N(0, lambda P + R), P the ensemble's own covariance: the estimates average to lambda."""
    gen = torch.Generator().manual_seed(3)
    k, p, lam = 30, 12, 3.0
    prior = ring_ensemble(k, p, seed=5)
    std = torch.linspace(0.5, 1.5, p, dtype=torch.float64)
    op = subset(p, torch.arange(p), std)
    cov = lam * torch.cov(prior.T) + torch.diag(std.square())
    chol = torch.linalg.cholesky(cov)
    est = []
    for _ in range(400):
        y = prior.mean(0) + chol @ torch.randn(p, generator=gen, dtype=torch.float64)
        est.append(innovation_inflation(*whiten(prior, y, op)[:2]))
    mean = sum(est) / len(est)
    assert abs(mean - lam) < 0.1 * lam, mean
    flat = torch.ones(k, p, dtype=torch.float64)
    assert math.isnan(innovation_inflation(*whiten(flat, torch.zeros(p), op)[:2]))


def test_adaptive_inflation_relaxes_towards_estimates_within_bounds() -> None:
    adapt = AdaptiveInflation(weight=0.25, minimum=1.0, maximum=4.0)
    assert adapt.update(2.0, 6.0) == pytest.approx(3.0)
    assert adapt.update(3.9, 100.0) == 4.0
    assert adapt.update(1.1, -50.0) == 1.0
    assert adapt.update(2.0, float("nan")) == 2.0
    for bad in ({"weight": 0.0}, {"weight": 1.5}, {"minimum": 3.0, "maximum": 2.0}, {"maximum": float("inf")}):
        with pytest.raises(ValueError):
            AdaptiveInflation(**bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [1e-9, 1e9, float("inf")])
def test_filters_refuse_inflation_whose_square_is_not_a_normal_float(value: float) -> None:
    from dacast.da import EnKFConfig, ETKFConfig, GriddedLETKFConfig, LETKFConfig, Localization

    for make in (
        lambda: ETKFConfig(inflation=value),
        lambda: EnKFConfig(inflation=value),
        lambda: LETKFConfig(localization=Localization(length=2.0), inflation=value),
        lambda: GriddedLETKFConfig(inflation=value),
    ):
        with pytest.raises(ValueError, match="inflation"):
            make()
    with pytest.raises(ValueError, match="minimum"):
        AdaptiveInflation(minimum=0.0)
