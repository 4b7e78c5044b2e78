"""`analyse` dispatches on the config type; `get_filter` is the name registry."""

from __future__ import annotations

import pytest
import torch
from da_helpers import noisy_obs, ring_ensemble

from dacast.da import (
    EnKFConfig,
    ETKFConfig,
    FreeRunConfig,
    LETKFConfig,
    Localization,
    analyse,
    enkf,
    etkf,
    get_filter,
    letkf,
    local_neighbours,
)
from dacast.obs import Grid, every_kth

N, K = 30, 10


def _setup() -> tuple[torch.Tensor, torch.Tensor, object, Grid]:
    prior = ring_ensemble(K, N, seed=1)
    op = every_kth(N, 2, 0.6)
    return prior, noisy_obs(op(prior.mean(0)), seed=2), op, Grid.ring(N)


def test_analyse_dispatch_matches_direct_calls() -> None:
    prior, y, op, grid = _setup()
    cfg = ETKFConfig(inflation=1.05)
    assert torch.equal(analyse(cfg, prior, y, op).ensemble, etkf(prior, y, op, cfg).ensemble)  # type: ignore[arg-type]

    lcfg = LETKFConfig(localization=Localization(length=3.0))
    direct = letkf(prior, y, op, lcfg, grid)  # type: ignore[arg-type]
    assert torch.equal(analyse(lcfg, prior, y, op, grid=grid).ensemble, direct.ensemble)  # type: ignore[arg-type]
    table = local_neighbours(grid, op, lcfg.localization)  # type: ignore[arg-type]
    with_table = analyse(lcfg, prior, y, op, grid=grid, local=table)  # type: ignore[arg-type]
    torch.testing.assert_close(with_table.ensemble, direct.ensemble, rtol=0, atol=1e-14)

    ecfg = EnKFConfig()
    a = analyse(ecfg, prior, y, op, generator=torch.Generator().manual_seed(5))  # type: ignore[arg-type]
    b = enkf(prior, y, op, ecfg, torch.Generator().manual_seed(5))  # type: ignore[arg-type]
    assert torch.equal(a.ensemble, b.ensemble)

    free = analyse(FreeRunConfig(), prior, y, op)  # type: ignore[arg-type]
    assert torch.equal(free.ensemble, prior)
    torch.testing.assert_close(free.innovation, y - op(prior).mean(0))  # type: ignore[operator]


def test_analyse_errors() -> None:
    prior, y, op, _ = _setup()
    with pytest.raises(ValueError, match="grid"):
        analyse(LETKFConfig(localization=Localization(length=3.0)), prior, y, op)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Generator"):
        analyse(EnKFConfig(), prior, y, op)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not a filter config"):
        analyse("etkf", prior, y, op)  # type: ignore[arg-type]


def test_get_filter_registry() -> None:
    assert get_filter("etkf") is ETKFConfig
    assert get_filter("LETKF") is LETKFConfig
    assert get_filter("EnKF") is EnKFConfig
    assert get_filter("free") is FreeRunConfig
    with pytest.raises(KeyError) as err:
        get_filter("kalman")
    message = str(err.value)
    assert "'kalman'" in message
    for name in ("enkf", "etkf", "free", "letkf"):
        assert name in message
