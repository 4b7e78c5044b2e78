"""Filters are pure: inputs are never modified and the result is a frozen `Analysis`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
import torch
from da_helpers import noisy_obs, ring_ensemble

from dacast.da import (
    Analysis,
    EnKFConfig,
    ETKFConfig,
    FreeRunConfig,
    LETKFConfig,
    Localization,
    analyse,
    enkf,
    etkf,
    letkf,
    rtpp,
    rtps,
)
from dacast.obs import Grid, SquareObs, every_kth, matrix

N, K = 24, 8
GRID = Grid.ring(N)


def _operators() -> dict[str, object]:
    gen = torch.Generator().manual_seed(0)
    h = torch.randn((5, N), generator=gen, dtype=torch.float64)
    return {
        "index": every_kth(N, 3, 0.5),
        "matrix": matrix(h, torch.linspace(0.5, 1.0, 5)),
        "square": SquareObs(base=every_kth(N, 4, 1.0), scale=3.0),
    }


FILTERS: dict[str, Callable[..., Analysis]] = {
    "etkf": lambda x, y, op: etkf(x, y, op, ETKFConfig(inflation=1.1, rtps=0.5)),
    "etkf-gram": lambda x, y, op: etkf(x, y, op, ETKFConfig(form="gram", rtpp=0.5)),
    "letkf": lambda x, y, op: letkf(x, y, op, LETKFConfig(localization=Localization(length=3.0), rtps=0.3), GRID),
    "enkf": lambda x, y, op: enkf(x, y, op, EnKFConfig(inflation=1.1, rtpp=0.2), torch.Generator().manual_seed(1)),
    "free": lambda x, y, op: analyse(FreeRunConfig(), x, y, op),
}


def _tensors(op: object) -> dict[str, torch.Tensor]:
    names = ("indices", "h", "error_std", "locations")
    target = op.base if isinstance(op, SquareObs) else op
    return {n: getattr(target, n) for n in names if hasattr(target, n)}


@pytest.mark.parametrize("op_name", ["index", "matrix", "square"])
@pytest.mark.parametrize("name", sorted(FILTERS))
def test_inputs_unmodified_and_result_frozen(name: str, op_name: str) -> None:
    op = _operators()[op_name]
    prior = ring_ensemble(K, N, seed=2)
    y = noisy_obs(op(prior.mean(0)), seed=3)  # type: ignore[operator]
    prior_before, y_before = prior.clone(), y.clone()
    op_before = {n: t.clone() for n, t in _tensors(op).items()}

    result = FILTERS[name](prior, y, op)

    assert torch.equal(prior, prior_before)
    assert torch.equal(y, y_before)
    for n, t in _tensors(op).items():
        assert torch.equal(t, op_before[n]), n
    assert isinstance(result, Analysis)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.ensemble = prior  # type: ignore[misc]
    # Consistent summary fields (computed on first access, then cached).
    assert result.ensemble.shape == (K, N)
    mean = result.mean
    torch.testing.assert_close(mean, result.ensemble.mean(0))
    assert result.spread.shape == (N,) and result.innovation.shape == y.shape
    # The result owns its memory: editing it cannot reach the caller's prior.
    assert result.ensemble.data_ptr() != prior.data_ptr()
    result.ensemble.add_(1.0)
    assert torch.equal(prior, prior_before)
    assert result.mean is mean
    torch.testing.assert_close(result.innovation, y - op(prior).mean(0))  # type: ignore[operator]


def test_relaxation_functions_do_not_modify_inputs() -> None:
    prior, analysis = ring_ensemble(K, N, seed=4), ring_ensemble(K, N, seed=5)
    before = (prior.clone(), analysis.clone())
    for fn in (rtpp, rtps):
        for alpha in (0.0, 0.5, 1.0):
            out = fn(prior, analysis, alpha)
            assert out.data_ptr() not in (prior.data_ptr(), analysis.data_ptr())
    assert torch.equal(prior, before[0]) and torch.equal(analysis, before[1])


def test_analysis_of_single_member_and_fields() -> None:
    ens = ring_ensemble(4, 6, seed=6)
    a = Analysis.of(ens, torch.zeros(2))
    torch.testing.assert_close(a.mean, ens.mean(0))
    torch.testing.assert_close(a.spread, ens.std(0))
    one = Analysis.of(ens[:1], torch.zeros(2))
    assert torch.equal(one.spread, torch.zeros(6, dtype=torch.float64))
    # only the ensemble and the innovation are stored: mean and spread are derived
    assert [f.name for f in dataclasses.fields(Analysis)] == ["ensemble", "innovation"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.mean = ens[0]  # type: ignore[misc]


def test_check_inputs_errors() -> None:
    op = every_kth(N, 3, 0.5)
    prior = ring_ensemble(K, N, seed=7)
    y = op(prior.mean(0))
    cfg = ETKFConfig()
    with pytest.raises(ValueError, match="members, n_state"):
        etkf(prior[0], y, op, cfg)
    with pytest.raises(ValueError, match="at least 2 members"):
        etkf(prior[:1], y, op, cfg)
    with pytest.raises(ValueError, match="state variables"):
        etkf(prior[:, :-1], y, op, cfg)
    with pytest.raises(ValueError, match="observations must have shape"):
        etkf(prior, y[:-1], op, cfg)
