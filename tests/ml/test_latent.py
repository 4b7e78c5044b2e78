"""The latent diffusion filter: autoencoder, latent prior, analyser interface, checkpoints (tiny grids)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from dacast.da import Analysis
from dacast.ml.diffusion import NoiseSchedule
from dacast.ml.diffusion_filter import PriorMismatch
from dacast.ml.diffusion_sampling import SamplerConfig
from dacast.ml.diffusion_train import DiffusionTrainConfig
from dacast.ml.latent import AutoencoderSpec, AutoencoderTrainConfig, StateAutoencoder, train_autoencoder
from dacast.ml.latent_filter import LatentDiffusionAnalyser, load_latent_filter, save_latent_filter, train_latent_prior
from dacast.obs import identity
from dacast.workflow.cycle import Observation

MODEL = {"name": "toy", "dt": 10.0}


def _states(n: int, seed: int = 0, size: int = 16) -> torch.Tensor:
    """Smooth periodic fields: u, v near (5, 2.5) m/s, h near 90 m, rain log-normal, ``(n, 4, size, size)``."""
    g = torch.Generator().manual_seed(seed)
    k = torch.arange(size, dtype=torch.float64) * 2 * torch.pi / size
    phase = torch.rand(n, 4, 2, generator=g, dtype=torch.float64) * 2 * torch.pi
    amp = torch.rand(n, 4, 1, 1, generator=g, dtype=torch.float64)
    wave = torch.sin(k[None, None, :, None] + phase[..., 0, None, None]) * torch.cos(k + phase[..., 1, None, None])
    x = amp * wave
    base = torch.tensor([5.0, 2.5, 90.0, 0.0], dtype=torch.float64)[:, None, None]
    scale = torch.tensor([0.01, 0.01, 0.1, 1.0], dtype=torch.float64)[:, None, None]
    x = base + scale * x
    x[:, 3] = 1e-5 * torch.exp(1.5 * x[:, 3])
    return x.float()


@pytest.fixture(scope="module")
def trained() -> dict:
    states = _states(96)
    ae, record = train_autoencoder(
        states, AutoencoderTrainConfig(latent_channels=4, width=16, epochs=30, batch_size=16, lr=5e-3)
    )
    truth = _states(48, seed=1)
    mean = truth + 0.3 * (_states(48, seed=2) - truth)
    config = DiffusionTrainConfig(steps=60, batch_size=8, channels=8, layers=2, kernel=3)
    filt, prior_record = train_latent_prior(ae, mean, truth, model=MODEL, config=config)
    return {"ae": ae, "ae_record": record, "filter": filt, "prior_record": prior_record, "truth": truth, "mean": mean}


def test_encoder_and_decoder_shapes_and_periodic_shift_equivariance() -> None:
    torch.manual_seed(0)
    ae = StateAutoencoder(AutoencoderSpec(latent_channels=3, width=8)).eval()
    x = _states(2)
    phi = ae.encode(x)
    assert phi.shape == (2, 3, 4, 4) and ae.decode(phi).shape == x.shape
    shifted = ae.encode(torch.roll(x, shifts=(4, 8), dims=(-2, -1)))
    torch.testing.assert_close(shifted, torch.roll(phi, shifts=(1, 2), dims=(-2, -1)), rtol=1e-4, atol=1e-5)


def test_normalisation_round_trip_keeps_rain_non_negative_and_height_gradients_finite() -> None:
    ae = StateAutoencoder(AutoencoderSpec(mean=(5.0, 2.5, 90.0, -11.0), std=(0.01, 0.01, 0.1, 1.0)))
    x = _states(3).double()
    ae = ae.double()
    torch.testing.assert_close(ae.denormalise(ae.normalise(x)), x, rtol=1e-6, atol=1e-12)
    assert float(ae.denormalise(torch.full((1, 4, 2, 2), -50.0, dtype=torch.float64))[:, 3].min()) == 0.0
    t = torch.zeros(1, 4, 2, 2, dtype=torch.float64, requires_grad=True)
    ae.denormalise(t).sum().backward()  # exp of a 90-m height would be inf: its gradient must not be NaN
    assert bool(torch.isfinite(t.grad).all())


def test_training_is_reproducible_and_learns(trained: dict) -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the trainer's initial weights
        initial = StateAutoencoder(trained["ae"].spec)
    held = initial.normalise(_states(96)[-9:])
    with torch.no_grad():
        untrained = float((initial.decoder(initial.encoder(held)) - held).pow(2).mean())
    assert trained["ae_record"]["validation_loss"] < 0.75 * untrained
    again, _ = train_autoencoder(_states(96), AutoencoderTrainConfig(latent_channels=4, width=16, epochs=30, lr=5e-3,
                                                                     batch_size=16))  # fmt: skip
    for a, b in zip(again.state_dict().values(), trained["ae"].state_dict().values(), strict=True):
        assert torch.equal(a, b)
    spec = trained["filter"].spec
    assert spec.grid == (16, 16) and len(spec.error_scale) == 4 and min(spec.error_scale) > 0


def _analyser(filt, seed: int = 0) -> LatentDiffusionAnalyser:
    sampler = SamplerConfig(steps=3, covariance="isotropic", cg_iterations=3, schedule=NoiseSchedule(sigma_max=5.0))
    return LatentDiffusionAnalyser(filt, sampler, torch.Generator().manual_seed(seed))


def _obs(truth: torch.Tensor) -> Observation:
    return Observation(y=truth.flatten(), operator=identity(truth.numel(), 0.05))


def test_the_analyser_meets_the_engine_interface_and_moves_towards_the_observations(trained: dict) -> None:
    truth, mean = trained["truth"][0], trained["mean"][0]
    g = torch.Generator().manual_seed(3)
    prior = mean + 0.02 * torch.randn((5, *mean.shape), generator=g) * mean.abs().clamp_min(1e-5)
    prior[:, 3] = prior[:, 3].clamp_min(0)
    result = _analyser(trained["filter"])(prior, _obs(truth), None, 0)
    assert isinstance(result, Analysis) and result.ensemble.shape == prior.shape
    assert result.ensemble.dtype == prior.dtype and bool(torch.isfinite(result.ensemble).all())
    assert float(result.ensemble[:, 3].min()) >= 0
    scale = torch.tensor([0.01, 0.01, 0.1, 1e-5])[:, None, None]
    before = ((prior.mean(0) - truth) / scale).pow(2).mean()
    after = ((result.mean - truth) / scale).pow(2).mean()
    assert float(after) < float(before)
    again = _analyser(trained["filter"])(prior, _obs(truth), None, 0)
    assert torch.equal(again.ensemble, result.ensemble)
    other = _analyser(trained["filter"], seed=1)(prior, _obs(truth), None, 0)
    assert not torch.equal(other.ensemble, result.ensemble)


def test_transport_moves_the_members_deterministically_towards_the_observations(trained: dict) -> None:
    truth, mean = trained["truth"][0], trained["mean"][0]
    g = torch.Generator().manual_seed(3)
    prior = mean + 0.02 * torch.randn((5, *mean.shape), generator=g) * mean.abs().clamp_min(1e-5)
    prior[:, 3] = prior[:, 3].clamp_min(0)

    def analyse(seed: int) -> Analysis:
        analyser = _analyser(trained["filter"], seed)
        analyser = dataclasses.replace(analyser, sampler=dataclasses.replace(analyser.sampler, transport=True))
        return analyser(prior, _obs(truth), None, 0)

    result = analyse(0)
    assert bool(torch.isfinite(result.ensemble).all()) and float(result.ensemble[:, 3].min()) >= 0
    scale = torch.tensor([0.01, 0.01, 0.1, 1e-5])[:, None, None]
    assert float(((result.mean - truth) / scale).pow(2).mean()) < float(((prior.mean(0) - truth) / scale).pow(2).mean())
    assert torch.equal(analyse(1).ensemble, result.ensemble)  # the generator plays no part
    assert not torch.equal(_analyser(trained["filter"])(prior, _obs(truth), None, 0).ensemble, result.ensemble)


def test_another_grid_is_refused(trained: dict) -> None:
    prior = _states(3, size=8)
    with pytest.raises(PriorMismatch, match="grid"):
        _analyser(trained["filter"])(prior, _obs(prior[0]), None, 0)
    with pytest.raises(ValueError, match="inflation"):
        LatentDiffusionAnalyser(trained["filter"], _analyser(trained["filter"]).sampler, torch.Generator(), 0.0)


def test_checkpoint_round_trip_and_mismatches(trained: dict, tmp_path) -> None:
    path = save_latent_filter(trained["filter"], tmp_path / "f.pt", extra={"record": {"note": 1}})
    loaded = load_latent_filter(path, grid=(16, 16), model=MODEL)
    for a, b in zip(loaded.state_dict().values(), trained["filter"].state_dict().values(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(PriorMismatch, match="16x16 grid"):
        load_latent_filter(path, grid=(32, 32), model=MODEL)
    with pytest.raises(PriorMismatch, match="model.dt"):
        load_latent_filter(path, grid=(16, 16), model={**MODEL, "dt": 5.0})
    card = json.loads(path.with_suffix(".json").read_text())
    path.with_suffix(".json").write_text(json.dumps({**card, "format": "other"}))
    with pytest.raises(PriorMismatch, match="not a dacast latent"):
        load_latent_filter(path, grid=(16, 16), model=MODEL)
    path.with_suffix(".json").write_text(json.dumps(card))
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(PriorMismatch, match="cannot load the weights"):
        load_latent_filter(path, grid=(16, 16), model=MODEL)
    card["prior"]["error_scale"] = [float("nan")] * 4
    path.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(PriorMismatch, match="not finite"):
        load_latent_filter(path, grid=(16, 16), model=MODEL)
