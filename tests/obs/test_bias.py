"""VarBC-style bias correction: recovery of a known bias, batch equivalence, purity, bad input."""

import pytest
import torch

from dacast.obs.bias import BiasCorrection


def _data(n=600, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.cat([torch.ones(n, 1, dtype=torch.float64), torch.randn(n, 4, generator=g, dtype=torch.float64)], 1)
    beta = torch.tensor([[0.8, 0.1, 0.5, 0.3, 0.0], [-0.6, 0.2, 0.3, 0.0, 0.25]], dtype=torch.float64)
    d = x @ beta.T + 0.3 * torch.randn(n, 2, generator=g, dtype=torch.float64)
    return x, d, beta


def test_recovers_known_bias_from_departures():
    x, d, beta = _data()
    bc = BiasCorrection.initial(2, 5, process_var=0.0)
    for k in range(6):
        bc = bc.update(x[k * 100 : (k + 1) * 100], d[k * 100 : (k + 1) * 100], torch.tensor(0.09))
    assert bc.updates == 6
    assert torch.allclose(bc.coefficients, beta, atol=0.05)
    corrected = bc.correct(d, x)
    assert float(corrected.mean(0).abs().max()) < 0.03
    assert float(corrected.std(0).max()) < 0.33


def test_sequential_equals_batch_without_process_noise():
    x, d, _ = _data(200)
    one = BiasCorrection.initial(2, 5, process_var=0.0).update(x, d, torch.tensor(0.09))
    two = BiasCorrection.initial(2, 5, process_var=0.0).update(x[:100], d[:100], torch.tensor(0.09))
    two = two.update(x[100:], d[100:], torch.tensor(0.09))
    assert torch.allclose(one.coefficients, two.coefficients, atol=1e-9)


def test_update_is_pure_and_offset_only_case():
    bc = BiasCorrection.initial(1, 1)
    d = torch.full((50, 1), 0.7, dtype=torch.float64)
    new = bc.update(torch.ones(50, 1, dtype=torch.float64), d, torch.tensor(0.1))
    assert float(bc.coefficients) == 0.0  # the old state is untouched
    assert float(new.coefficients) == pytest.approx(0.7, abs=0.01)


def test_bad_input():
    bc = BiasCorrection.initial(1, 2)
    x = torch.ones(3, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="not finite"):
        bc.update(x, torch.tensor([[float("nan")]] * 3, dtype=torch.float64), torch.tensor(1.0))
    with pytest.raises(ValueError, match="positive"):
        bc.update(x, torch.zeros(3, 1, dtype=torch.float64), torch.tensor(0.0))
    with pytest.raises(ValueError, match="prior_std"):
        BiasCorrection.initial(1, 2, prior_std=0.0)
