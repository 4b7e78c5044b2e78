"""Surrogate networks: the Model protocol, batching, dt check, use inside ETKF and LETKF."""

from __future__ import annotations

import pytest
import torch

from dacast.da import ETKFConfig, LETKFConfig, Localization, analyse
from dacast.ml import LSTMSurrogate, ResidualCNN, SurrogateSpec, build_surrogate
from dacast.models import Model
from dacast.obs import Grid, subset


@pytest.fixture
def lstm() -> LSTMSurrogate:
    net = build_surrogate(SurrogateSpec(kind="lstm", n_var=3, dt=0.05, window=4, hidden=8), seed=0)
    assert isinstance(net, LSTMSurrogate)
    return net


@pytest.fixture
def cnn() -> ResidualCNN:
    net = build_surrogate(SurrogateSpec(kind="cnn", n_var=12, dt=0.05, window=1, hidden=4, layers=1), seed=0)
    assert isinstance(net, ResidualCNN)
    return net


pytestmark = pytest.mark.usefixtures("one_thread")


def test_surrogates_meet_model_protocol(lstm: LSTMSurrogate, cnn: ResidualCNN) -> None:
    assert isinstance(lstm, Model) and isinstance(cnn, Model)
    assert lstm.n_state == 12 and cnn.n_state == 12
    torch.testing.assert_close(lstm.view, torch.arange(9, 12))


def test_lstm_step_shifts_window_and_batches(lstm: LSTMSurrogate) -> None:
    x = torch.randn(2, 5, 12, dtype=torch.float64)
    y = lstm.step(x, 0.0, 0.05)
    assert y.shape == x.shape and y.dtype == torch.float64
    torch.testing.assert_close(y[..., :9], x[..., 3:])  # oldest slot dropped
    # batched equals one at a time
    torch.testing.assert_close(y[1, 3], lstm.step(x[1, 3], 0.0, 0.05), rtol=1e-5, atol=1e-6)


def test_step_refuses_other_dt(lstm: LSTMSurrogate, cnn: ResidualCNN) -> None:
    with pytest.raises(ValueError, match="dt=0.05"):
        lstm.step(torch.zeros(12), 0.0, 0.01)
    with pytest.raises(ValueError, match="dt"):
        cnn.step(torch.zeros(12), 0.0, 0.1)


def test_cnn_is_translation_equivariant(cnn: ResidualCNN) -> None:
    x = torch.randn(3, 12, dtype=torch.float64)
    torch.testing.assert_close(
        cnn.step(torch.roll(x, 2, -1), 0.0, 0.05), torch.roll(cnn.step(x, 0.0, 0.05), 2, -1), rtol=1e-5, atol=1e-5
    )


def test_bad_specs_raise() -> None:
    with pytest.raises(ValueError, match="window 1"):
        SurrogateSpec(kind="cnn", n_var=4, dt=0.1, window=3)
    with pytest.raises(ValueError, match="kind"):
        SurrogateSpec(kind="gru", n_var=4, dt=0.1)  # type: ignore[arg-type]


def test_surrogates_run_inside_etkf_and_letkf(lstm: LSTMSurrogate, cnn: ResidualCNN) -> None:
    gen = torch.Generator().manual_seed(0)
    ens = torch.randn(6, 12, generator=gen, dtype=torch.float64)
    for net, op in ((lstm, subset(12, lstm.view, 1.0)), (cnn, subset(12, list(range(0, 12, 2)), 1.0))):
        prior = net.step(ens, 0.0, 0.05)
        y = op(prior.mean(0)) + 0.1
        post = analyse(ETKFConfig(inflation=1.05), prior, y, op)
        assert post.ensemble.shape == prior.shape and torch.isfinite(post.ensemble).all()
        # an observation above the prior mean pulls the analysis towards it
        assert bool((op(post.mean) > op(prior.mean(0))).all())
    grid = Grid.ring(12)
    op = subset(12, list(range(0, 12, 2)), 1.0)
    prior = cnn.step(ens, 0.0, 0.05)
    cfg = LETKFConfig(localization=Localization(length=3.0), inflation=1.05)
    post = analyse(cfg, prior, op(prior.mean(0)) + 0.1, op, grid=grid)
    assert torch.isfinite(post.ensemble).all()
    assert bool((op(post.mean) > op(prior.mean(0))).all())


def test_residual_base_anchors_on_the_physical_model() -> None:
    from dacast.models import Lorenz63

    spec = SurrogateSpec(kind="lstm", n_var=3, dt=0.05, window=2, hidden=4, base="lorenz63", base_steps=5)
    net = build_surrogate(spec, seed=0)
    for p in net.head[-1].parameters():  # zero read-out: the network adds nothing
        torch.nn.init.zeros_(p)
    x = torch.tensor([[1.0, 2.0, 20.0, -3.0, 1.0, 25.0]], dtype=torch.float64)
    ref = x[:, 3:]
    for _ in range(5):
        ref = Lorenz63().step(ref, 0.0, 0.01)
    torch.testing.assert_close(net.step(x, 0.0, 0.05)[:, 3:], ref)
    with pytest.raises(ValueError, match="n_var 3"):
        SurrogateSpec(kind="lstm", n_var=4, dt=0.05, base="lorenz63")


def test_linear_skip_adds_a_linear_map_of_the_normalised_window() -> None:
    spec = SurrogateSpec(kind="lstm", n_var=3, dt=0.05, window=4, hidden=8, linear_skip=True)
    net = build_surrogate(spec, seed=1)
    assert isinstance(net, LSTMSurrogate) and net.skip is not None
    hist = torch.randn(5, 4, 3, generator=torch.Generator().manual_seed(0))
    without = LSTMSurrogate(SurrogateSpec(kind="lstm", n_var=3, dt=0.05, window=4, hidden=8))
    without.load_state_dict({k: v for k, v in net.state_dict().items() if not k.startswith("skip.")})
    with torch.no_grad():
        z = ((hist - net.state_mean) / net.state_std).flatten(1)
        torch.testing.assert_close(net.normalized_increment(hist), without.normalized_increment(hist) + net.skip(z))
    with pytest.raises(ValueError, match="LSTM option"):
        SurrogateSpec(kind="cnn", n_var=4, dt=0.1, window=1, linear_skip=True)
