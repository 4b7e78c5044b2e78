"""The one cycle engine: the same analyses as a hand-written loop, outages, failures, hooks, and its helpers."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
import torch
from torch import Tensor

from dacast.da import Analysis, ETKFConfig, FreeRunConfig, GriddedLETKFConfig, LETKFConfig, Localization, etkf
from dacast.da.inflation import AdaptiveInflation
from dacast.models import Lorenz96, advance, integrate
from dacast.obs import every_kth, observe
from dacast.workflow.cycle import (
    FilterAnalyser,
    GriddedAnalyser,
    Observation,
    array_observations,
    cycle,
    model_forecast,
)
from dacast.workflow.runtime import spawn_seeds, torch_generator


def _twin(cycles: int = 12) -> tuple[Lorenz96, Tensor, Tensor, object]:
    model = Lorenz96(n_state=12)
    gen = torch.Generator().manual_seed(3)
    truth = integrate(model, model.default_initial_state(dtype=torch.float64), cycles * 2, 0.05)[2::2]
    op = every_kth(12, 2, error_std=0.5)
    y = observe(truth, op, gen)
    ens0 = truth[0] + torch.randn((8, 12), generator=gen, dtype=torch.float64)
    return model, ens0, y, op


def test_cycle_equals_a_hand_written_loop() -> None:
    model, ens0, y, op = _twin()
    config = ETKFConfig(inflation=1.05)
    steps = list(
        cycle(
            ens0,
            forecast=model_forecast(model, 2, 0.05),
            observations=array_observations(y, op),
            analyse=FilterAnalyser(config),
            cycles=range(12),
        )
    )
    ens = ens0
    for c, step in enumerate(steps):
        ens = advance(model, ens, 2, 0.05, t0=c * 0.1)
        assert torch.equal(step.prior, ens)
        ens = etkf(ens, y[c], op, config).ensemble
        assert step.analysis is not None and torch.equal(step.posterior, ens)
        assert set(step.seconds) == {"forecast", "observation", "analysis"} and not step.failure
    assert [s.cycle for s in steps] == list(range(12))


def test_cycle_holds_no_earlier_ensemble_while_it_forecasts() -> None:
    """At 1000 members an ensemble is a GB: while cycle c forecasts, the loop holds neither cycle c-1's
    forecast and analysis nor the ensemble the run started from (a consumer that drops its step)."""
    model, ens0, y, op = _twin(6)
    alive: list[list[str]] = []
    earlier: list[tuple[str, weakref.ref]] = []
    base = model_forecast(model, 2, 0.05)

    def forecast(ensemble: Tensor, c: int) -> Tensor:
        gc.collect()
        alive.append([name for name, ref in earlier if ref() is not None])
        return base(ensemble, c)

    start = ens0.clone()
    earlier.append(("start", weakref.ref(start)))
    steps = cycle(start, forecast=forecast, observations=array_observations(y, op),
                  analyse=FilterAnalyser(ETKFConfig(inflation=1.05)), cycles=range(6))  # fmt: skip
    del start
    for step in steps:
        earlier.append((f"prior {step.cycle}", weakref.ref(step.prior)))
        earlier.append((f"analysis {step.cycle}", weakref.ref(step.analysis.ensemble)))
        del step
    # the start is still the caller's at cycle 0 (the forecast's own argument); later only the
    # analysis the forecast starts from lives
    assert alive[0] == ["start"]
    assert alive[1:] == [[f"analysis {c}"] for c in range(5)]


def test_cycle_does_not_modify_its_input_and_resumes_from_any_cycle() -> None:
    model, ens0, y, op = _twin()
    before = ens0.clone()
    kwargs = dict(forecast=model_forecast(model, 2, 0.05), observations=array_observations(y, op))
    full = list(cycle(ens0, analyse=FilterAnalyser(ETKFConfig()), cycles=range(12), **kwargs))
    assert torch.equal(ens0, before)
    tail = list(cycle(full[5].posterior, analyse=FilterAnalyser(ETKFConfig()), cycles=range(6, 12), **kwargs))
    assert torch.equal(tail[-1].posterior, full[-1].posterior)


def test_outage_runs_the_forecast_only() -> None:
    model, ens0, y, op = _twin()
    stream = array_observations(y, op)
    steps = list(
        cycle(
            ens0,
            forecast=model_forecast(model, 2, 0.05),
            observations=lambda c: None if c == 1 else stream(c),
            analyse=FilterAnalyser(ETKFConfig()),
            cycles=range(3),
        )
    )
    assert steps[1].observation is None and steps[1].analysis is None
    assert torch.equal(steps[1].posterior, steps[1].prior)
    assert torch.equal(steps[2].prior, advance(model, steps[1].prior, 2, 0.05, t0=0.2))


def test_a_failing_analysis_ends_the_cycle_with_the_reason() -> None:
    model, ens0, y, op = _twin()

    def broken(prior: Tensor, obs: Observation, hx: Tensor | None, c: int) -> Analysis:
        if c == 2:
            raise torch.linalg.LinAlgError("singular")
        return Analysis.of(prior, obs.y - prior.mean(0)[::2])

    steps = list(
        cycle(
            ens0,
            forecast=model_forecast(model, 2, 0.05),
            observations=array_observations(y, op),
            analyse=broken,
            cycles=range(10),
        )
    )
    assert len(steps) == 3 and steps[-1].analysis is None
    assert "non-finite" in steps[-1].failure and not steps[1].failure


def test_precomputed_hx_reaches_the_analyser() -> None:
    model, ens0, y, op = _twin()
    seen: list[Tensor | None] = []

    def spy(prior: Tensor, obs: Observation, hx: Tensor | None, c: int) -> Analysis:
        seen.append(hx)
        assert hx is not None and torch.equal(hx, obs.operator(prior))
        return Analysis.of(prior, obs.y - hx.mean(0))

    list(
        cycle(
            ens0,
            forecast=model_forecast(model, 2, 0.05),
            observations=array_observations(y, op),
            analyse=spy,
            cycles=range(2),
            precompute_hx=True,
        )
    )
    assert len(seen) == 2


def test_filter_analyser_adaptive_inflation_and_errors() -> None:
    model, ens0, y, op = _twin()
    analyser = FilterAnalyser(ETKFConfig(inflation=1.0), adaptive=AdaptiveInflation(weight=0.5))
    assert analyser.covariance_inflation == 1.0
    tiny = ens0[0] + 1e-3 * (ens0 - ens0.mean(0))  # far too little spread: the innovations ask for inflation
    analyser(tiny, Observation(y=y[0], operator=op), None, 0)
    assert analyser.covariance_inflation > 1.0
    with pytest.raises(ValueError, match="inflating filter"):
        FilterAnalyser(FreeRunConfig(), adaptive=AdaptiveInflation())
    with pytest.raises(ValueError, match="grid"):
        FilterAnalyser(LETKFConfig(localization=Localization(length=2.0)))


def test_letkf_analyser_builds_its_neighbour_table_once() -> None:
    model, ens0, y, op = _twin()
    analyser = FilterAnalyser(LETKFConfig(localization=Localization(length=2.0)), grid=model.grid())
    analyser(ens0, Observation(y=y[0], operator=op), None, 0)
    table = analyser.local
    analyser(ens0, Observation(y=y[1], operator=op), None, 1)
    assert table is not None and analyser.local is table


def test_gridded_analyser_without_observations_returns_the_prior() -> None:
    prior = torch.randn((4, 4, 8, 8), generator=torch.Generator().manual_seed(0))

    class NoObs:
        n_obs = 0

    result = GriddedAnalyser(GriddedLETKFConfig(), dx_km=0.5)(prior, Observation(torch.zeros(0), NoObs()), None, 0)  # type: ignore[arg-type]
    assert torch.equal(result.ensemble, prior) and result.innovation.shape == (0,)


def test_advance_keeps_no_trajectory_but_ends_where_integrate_ends() -> None:
    model = Lorenz96(n_state=10)
    x0 = model.default_initial_state(dtype=torch.float64)
    assert torch.equal(advance(model, x0, 7, 0.05), integrate(model, x0, 7, 0.05)[-1])
    assert advance(model, x0, 0, 0.05) is x0
    with pytest.raises(ValueError, match="n_steps"):
        advance(model, x0, -1, 0.05)


def test_one_seed_derivation_for_every_application() -> None:
    # The twin used SeedSequence(seed), the BDA SeedSequence(seed) as uint32, the surrogate SeedSequence([seed, *key]).
    assert spawn_seeds(7, n=3) == [int(s) for s in np.random.SeedSequence(7).generate_state(3, dtype=np.uint64)]
    assert spawn_seeds(7, n=3, bits=32) == [int(s) for s in np.random.SeedSequence(7).generate_state(3, np.uint32)]
    state = int(np.random.SeedSequence([7, 2, 5]).generate_state(1, dtype=np.uint64)[0]) & 0x7FFF_FFFF_FFFF_FFFF
    assert torch.equal(
        torch.rand(3, generator=torch_generator(7, 2, 5)), torch.rand(3, generator=torch.Generator().manual_seed(state))
    )
    assert spawn_seeds(7, 1) != spawn_seeds(7, 2)
