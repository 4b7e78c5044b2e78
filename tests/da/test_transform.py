"""The two exact ensemble-transform forms agree, and inflation means what the docs say."""

from __future__ import annotations

import pytest
import torch
from da_helpers import noisy_obs, ring_ensemble

from dacast.da import ETKFConfig, LETKFConfig, Localization, etkf, letkf, local_neighbours, transform_update
from dacast.da.transform import choose_form
from dacast.obs import Grid, every_kth, identity, matrix, subset


def _problem(k: int, p: int, nv: int, batch: int, seed: int) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    yt = torch.randn((batch, p, k), generator=gen, dtype=torch.float64)
    yt = yt - yt.mean(-1, keepdim=True)
    d = torch.randn((batch, p), generator=gen, dtype=torch.float64)
    xp = torch.randn((batch, k, nv), generator=gen, dtype=torch.float64)
    xp = xp - xp.mean(-2, keepdim=True)
    xmean = torch.randn((batch, nv), generator=gen, dtype=torch.float64)
    return yt, d, xp, xmean


@pytest.mark.parametrize(("k", "p"), [(10, 3), (10, 9), (10, 10), (8, 25), (3, 1)], ids=lambda v: str(v))
@pytest.mark.parametrize("inflation", [1.0, 1.3])
def test_forms_agree_on_random_problems(k: int, p: int, inflation: float) -> None:
    yt, d, xp, xmean = _problem(k, p, nv=6, batch=5, seed=k * 100 + p)
    ens = transform_update(yt, d, xp, xmean, inflation, "ensemble")
    gram = transform_update(yt, d, xp, xmean, inflation, "gram")
    assert ens.shape == (5, k, 6)
    torch.testing.assert_close(ens, gram, rtol=0, atol=1e-10)


def test_forms_agree_with_padding_rows() -> None:
    """Zero rows (padding, zero taper weight) leave both forms unchanged."""
    yt, d, xp, xmean = _problem(8, 4, nv=3, batch=2, seed=0)
    pad_yt = torch.cat([yt, torch.zeros((2, 3, 8), dtype=torch.float64)], dim=1)
    pad_d = torch.cat([d, torch.zeros((2, 3), dtype=torch.float64)], dim=1)
    ref = transform_update(yt, d, xp, xmean, 1.0, "ensemble")
    for form in ("ensemble", "gram"):
        torch.testing.assert_close(transform_update(pad_yt, pad_d, xp, xmean, 1.0, form), ref, rtol=0, atol=1e-10)


def test_no_observations_only_inflates() -> None:
    _, _, xp, xmean = _problem(6, 1, nv=4, batch=3, seed=1)
    empty_yt = torch.zeros((3, 0, 6), dtype=torch.float64)
    out = transform_update(empty_yt, torch.zeros((3, 0), dtype=torch.float64), xp, xmean, 1.5)
    torch.testing.assert_close(out, xmean[:, None, :] + 1.5 * xp)


def test_choose_form() -> None:
    assert choose_form(10, 3) == "gram"
    assert choose_form(10, 10) == "ensemble"
    assert choose_form(10, 30) == "ensemble"
    assert choose_form(10, 3, "ensemble") == "ensemble"
    assert choose_form(10, 30, "gram") == "gram"


@pytest.mark.parametrize(("k", "stride"), [(20, 4), (8, 1)], ids=["p<k", "p>=k"])
@pytest.mark.parametrize("inflation", [1.0, 1.2])
def test_etkf_forms_agree(k: int, stride: int, inflation: float) -> None:
    n = 40
    prior = ring_ensemble(k, n, seed=k)
    op = every_kth(n, stride, 0.8)
    y = noisy_obs(op(prior.mean(0)), seed=1)
    a = etkf(prior, y, op, ETKFConfig(inflation=inflation, form="ensemble"))
    b = etkf(prior, y, op, ETKFConfig(inflation=inflation, form="gram"))
    torch.testing.assert_close(a.ensemble, b.ensemble, rtol=0, atol=1e-10)


@pytest.mark.parametrize(("k", "stride", "length"), [(20, 2, 2.0), (6, 1, 3.0)], ids=["p<k", "p>=k"])
@pytest.mark.parametrize("inflation", [1.0, 1.15])
def test_letkf_forms_agree(k: int, stride: int, length: float, inflation: float) -> None:
    n = 40
    prior = ring_ensemble(k, n, seed=k + 1)
    op = every_kth(n, stride, 0.5)
    y = noisy_obs(op(prior.mean(0)), seed=2)
    grid = Grid.ring(n)
    loc = Localization(length=length)
    local_p = int(local_neighbours(grid, op, loc).count.max())
    assert (local_p < k) if stride == 2 else (local_p >= k)
    a = letkf(prior, y, op, LETKFConfig(localization=loc, inflation=inflation, form="ensemble"), grid)
    b = letkf(prior, y, op, LETKFConfig(localization=loc, inflation=inflation, form="gram"), grid)
    torch.testing.assert_close(a.ensemble, b.ensemble, rtol=0, atol=1e-10)
    # The analysis actually moved (the comparison is not between two no-ops).
    assert float((a.ensemble - prior).abs().max()) > 0.1


@pytest.mark.parametrize("inflation", [1.1, 1.5])
def test_inflation_equals_inflating_prior_anomalies(inflation: float) -> None:
    """Inflation ρ inside the transform == the same filter on ``x̄ + ρ X'`` (linear H): covariance × ρ²."""
    n, k = 30, 12
    prior = ring_ensemble(k, n, seed=5)
    gen = torch.Generator().manual_seed(0)
    op = matrix(torch.randn((9, n), generator=gen, dtype=torch.float64), 0.7, locations=torch.zeros((9, 1)))
    y = noisy_obs(op(prior.mean(0)), seed=3)
    mean = prior.mean(0)
    inflated = mean + inflation * (prior - mean)
    a = etkf(prior, y, op, ETKFConfig(inflation=inflation))
    b = etkf(inflated, y, op, ETKFConfig())
    torch.testing.assert_close(a.ensemble, b.ensemble, rtol=0, atol=1e-10)

    grid = Grid.ring(n)
    op_local = subset(n, list(range(0, n, 3)), 0.7)
    y_local = noisy_obs(op_local(mean), seed=4)
    loc = Localization(length=3.0)
    a = letkf(prior, y_local, op_local, LETKFConfig(localization=loc, inflation=inflation), grid)
    b = letkf(inflated, y_local, op_local, LETKFConfig(localization=loc), grid)
    torch.testing.assert_close(a.ensemble, b.ensemble, rtol=0, atol=1e-10)


def test_etkf_perfect_obs_limit_and_identity() -> None:
    """Very accurate direct obs of every variable pull the mean onto y and collapse the spread."""
    n, k = 6, 30
    prior = ring_ensemble(k, n, seed=9)
    op = identity(n, 1e-4)
    y = prior.mean(0) + 1.0
    post = etkf(prior, y, op, ETKFConfig())
    torch.testing.assert_close(post.mean, y, rtol=0, atol=1e-5)
    assert float(post.spread.max()) < 1e-3
    torch.testing.assert_close(post.innovation, torch.ones(n, dtype=torch.float64), rtol=0, atol=1e-12)
