"""The learned radiance operator (Liang et al. 2023): features, networks, training, checkpoints, the operator."""

from __future__ import annotations

import copy
import json
from dataclasses import replace as dataclasses_replace
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from dacast.ml import (
    AMSU_CHANNELS,
    LearnedRadianceOperator,
    RadianceNetwork,
    RadianceTrainConfig,
    feature_names,
    load_radiance_network,
    radiance_features,
    save_radiance_network,
    train_radiance_network,
)
from dacast.ml.obsop import Q_TINY
from dacast.models.column import ColumnAtmosphere
from dacast.obs import ObsOperator

pytestmark = pytest.mark.usefixtures("one_thread")

L = 10
N_COL = 8
SMALL = RadianceTrainConfig(hidden=32, depth=2, epochs=60, batch_size=64, patience=60, seed=0)


def _synthetic(model: ColumnAtmosphere, n: int, seed: int) -> tuple[Tensor, Tensor]:
    """Features ``(n, 2L + 3)`` and a smooth 3-channel target ``(n, 3)`` (K) from states on the attractor.

    Channel 6/7/8: weighted means of T peaking low, mid and high, plus a limb term 0.5 scan² / 48².
    """
    gen = torch.Generator().manual_seed(seed)
    x = model.initial_state(gen, spin_up=2.0)
    states = []
    for i in range(60):
        x = model.step(x, i * 0.05, 0.05)
        states.append(x)
    rows = torch.randint(0, len(states), (n,), generator=gen)
    cols = torch.randint(0, model.n_columns, (n,), generator=gen)
    t_all, q_all = model.split(torch.stack(states)[rows])  # (n, L, N)
    t, q = t_all[torch.arange(n), :, cols], q_all[torch.arange(n), :, cols]  # (n, L)
    scan = (2 * torch.rand(n, generator=gen, dtype=torch.float64) - 1) * 48.0
    zenith = 1.1 * scan.abs()
    features = radiance_features(t, q, scan, zenith, model.latitude[cols])
    k = torch.arange(L, dtype=torch.float64)
    peaks = [torch.exp(-((k - c) ** 2) / 4.0) for c in (2.0, 5.0, 8.0)]
    tb = torch.stack([(t * w / w.sum()).sum(-1) for w in peaks], dim=-1) + (0.5 * scan**2 / 48.0**2)[:, None]
    return features, tb


@pytest.fixture(scope="module")
def model() -> ColumnAtmosphere:
    return ColumnAtmosphere(n_columns=N_COL, n_levels=L)


@pytest.fixture(scope="module")
def data(model: ColumnAtmosphere) -> tuple[Tensor, Tensor]:
    return _synthetic(model, 400, seed=0)


@pytest.fixture(scope="module")
def trained(data: tuple[Tensor, Tensor]) -> tuple[RadianceNetwork, dict]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is faster on a shared CPU
    try:
        return train_radiance_network(*data, SMALL)
    finally:
        torch.set_num_threads(threads)


def _meta(history: dict, model: ColumnAtmosphere) -> dict:
    return {**history, "kind": "truth", "pressure_hpa": model.pressure.tolist()}


# --- features --------------------------------------------------------------------------------------


def test_feature_names_and_shapes() -> None:
    names = feature_names(L)
    assert len(names) == 2 * L + 3
    assert names[0] == "T_00" and names[L - 1] == "T_09" and names[L] == "lnq_00"
    assert names[-3:] == ["scan_deg", "zenith_deg", "lat_deg"]
    t = 250 + torch.rand(4, 5, L, dtype=torch.float64)
    q = torch.rand(4, 5, L, dtype=torch.float64)
    q[0, 0, 0] = 0.0
    scan = torch.linspace(-40, 40, 5, dtype=torch.float64)  # (5,): broadcast over the leading batch axis
    f = radiance_features(t, q, scan, scan.abs(), torch.tensor(30.0))
    assert f.shape == (4, 5, 2 * L + 3) and f.dtype == torch.float64
    torch.testing.assert_close(f[..., :L], t)
    torch.testing.assert_close(f[..., L : 2 * L], torch.log(q.clamp_min(Q_TINY)))
    assert float(f[0, 0, L]) == pytest.approx(torch.log(torch.tensor(Q_TINY)).item())
    torch.testing.assert_close(f[2, :, -3], scan)
    assert bool((f[..., -1] == 30.0).all())


def test_feature_errors() -> None:
    with pytest.raises(ValueError, match="same shape"):
        radiance_features(torch.zeros(3, L), torch.zeros(3, L + 1), torch.zeros(3), torch.zeros(3), torch.zeros(3))
    with pytest.raises(ValueError, match="broadcast"):
        radiance_features(torch.zeros(3, L), torch.zeros(3, L), torch.zeros(4), torch.zeros(3), torch.zeros(3))


# --- network ---------------------------------------------------------------------------------------


def test_network_default_is_four_by_300() -> None:
    net = RadianceNetwork(2 * L + 3)
    assert net.channels == AMSU_CHANNELS and net.n_levels == L
    assert len(net.nets) == 3
    linears = [m for m in net.nets[0] if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (23, 300),
        (300, 300),
        (300, 300),
        (300, 300),
        (300, 1),
    ]
    assert sum(isinstance(m, nn.ReLU) for m in net.nets[0]) == 4
    out = net(torch.randn(2, 7, 2 * L + 3))
    assert out.shape == (2, 7, 3) and out.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in net.parameters())


def test_network_small_and_standardisation() -> None:
    f = torch.zeros(5)
    net = RadianceNetwork(
        5,
        (7,),
        hidden=8,
        depth=1,
        input_mean=torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0]),
        input_std=torch.tensor([1.0, 2.0, 0.0, 1.0, 1.0]),  # a constant feature: std -> 1
        output_mean=torch.tensor([250.0]),
        output_std=torch.tensor([3.0]),
    )
    assert float(net.input_std[2]) == 1.0
    assert net(f).shape == (1,) and net(torch.zeros(4, 5)).shape == (4, 1)
    torch.testing.assert_close(net(f), net.standardised(f) * 3.0 + 250.0)
    with pytest.raises(ValueError, match="reads 5 features"):
        net(torch.zeros(4, 6))
    with pytest.raises(ValueError, match="distinct"):
        RadianceNetwork(5, (6, 6))


def test_network_backward_and_one_step_lowers_loss(data: tuple[Tensor, Tensor]) -> None:
    features, tb = data
    x, y = features[:128].float(), tb[:128].float()
    net = RadianceNetwork(
        x.shape[1],
        hidden=16,
        depth=2,
        input_mean=x.mean(0),
        input_std=x.std(0),
        output_mean=y.mean(0),
        output_std=y.std(0),
    )
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    losses = []
    for _ in range(2):
        loss = (net(x) - y).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is not None and bool(torch.isfinite(p.grad).all()) for p in net.parameters())
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[1] < losses[0]


# --- training --------------------------------------------------------------------------------------


def test_training_fits_a_smooth_target(trained: tuple[RadianceNetwork, dict], data: tuple[Tensor, Tensor]) -> None:
    net, history = trained
    spread = float(data[1].std(0).min())
    assert spread > 2.0
    assert history["val_rmse"][-1] < history["val_rmse"][0]
    assert max(history["val_rmse_per_channel"].values()) < 0.25 * spread
    assert set(history["val_rmse_per_channel"]) == {"6", "7", "8"}
    assert history["epochs_run"] == len(history["train_rmse"]) == len(history["val_rmse"]) <= SMALL.epochs
    assert history["n_train"] + history["n_val"] == 400 and history["n_val"] == 40
    assert history["seconds"] > 0 and len(history["data_sha256"]) == 64
    assert not net.training and next(net.parameters()).device.type == "cpu"
    with torch.no_grad():
        rmse = (net(data[0].float()) - data[1].float()).pow(2).mean().sqrt()
    assert float(rmse) < 0.25 * spread


def test_training_is_deterministic_and_reports_progress(data: tuple[Tensor, Tensor]) -> None:
    cfg = RadianceTrainConfig(hidden=16, depth=2, epochs=3, batch_size=64, seed=3)
    seen: list[tuple[int, int, float]] = []
    a, ha = train_radiance_network(*data, cfg, progress=lambda e, n, v: seen.append((e, n, v)))
    b, hb = train_radiance_network(*data, cfg)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)
    assert ha["val_rmse"] == hb["val_rmse"]
    assert [s[:2] for s in seen] == [(1, 3), (2, 3), (3, 3)] and [s[2] for s in seen] == ha["val_rmse"]
    c, _ = train_radiance_network(*data, RadianceTrainConfig(hidden=16, depth=2, epochs=3, batch_size=64, seed=4))
    assert not torch.equal(a.nets[0][0].weight, c.nets[0][0].weight)


def test_plateau_schedule_and_early_stopping(data: tuple[Tensor, Tensor]) -> None:
    cfg = RadianceTrainConfig(hidden=8, depth=1, epochs=50, patience=1, min_delta=0.5, lr_schedule="plateau")
    _, history = train_radiance_network(*data, cfg)
    assert history["epochs_run"] < 50


def test_non_finite_rows_are_rejected(data: tuple[Tensor, Tensor]) -> None:
    features, tb = data[0].clone(), data[1].clone()
    features[7, 3] = float("nan")
    tb[5, 0] = float("inf")
    with pytest.raises(ValueError, match=r"^row 5 of the training data is not finite") as err:
        train_radiance_network(features, tb, SMALL)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="3 channels"):
        train_radiance_network(data[0], data[1][:, :2], SMALL)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"epochs": 0}, "epochs"),
        ({"lr": -1.0}, "lr"),
        ({"val_fraction": 0.7}, "val_fraction"),
        ({"lr_schedule": "step"}, "lr_schedule"),
        ({"lr_min_factor": 0.0}, "lr_min_factor"),
        ({"device": "tpu"}, "device"),
    ],
)
def test_config_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match) as err:
        RadianceTrainConfig(**kwargs)
    assert "\n" not in str(err.value)


# --- checkpoints -----------------------------------------------------------------------------------


def test_save_load_round_trip(
    tmp_path: Path, trained: tuple[RadianceNetwork, dict], data: tuple[Tensor, Tensor], model: ColumnAtmosphere
) -> None:
    net, history = trained
    save_radiance_network(tmp_path / "ck", net, {**_meta(history, model), "note": "test"})
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["metadata.json", "weights.pt"]
    loaded, meta = load_radiance_network(tmp_path / "ck", pressure=model.pressure, channels=(6, 7, 8))
    x = data[0][:50].float()
    assert torch.equal(loaded(x), net(x))
    assert meta["channels"] == [6, 7, 8] and meta["n_levels"] == L and meta["kind"] == "truth"
    assert meta["feature_names"] == feature_names(L) and meta["note"] == "test"
    assert meta["data_sha256"] == history["data_sha256"] and meta["config"]["hidden"] == 32
    assert len(meta["normalisation"]["input_mean"]) == 2 * L + 3
    doc = json.loads((tmp_path / "ck" / "metadata.json").read_text())
    assert doc["pressure_hpa"] == pytest.approx(model.pressure.tolist())


def _one_line_error(folder: Path, match: str, **kwargs: object) -> None:
    with pytest.raises(ValueError, match=match) as err:
        load_radiance_network(folder, **kwargs)  # type: ignore[arg-type]
    assert "\n" not in str(err.value)


def test_load_rejects_mismatches_and_corruption(
    tmp_path: Path, trained: tuple[RadianceNetwork, dict], model: ColumnAtmosphere
) -> None:
    net, history = trained
    folder = tmp_path / "ck"
    with pytest.raises(ValueError, match="meta lacks kind"):
        save_radiance_network(folder, net, {k: v for k, v in _meta(history, model).items() if k != "kind"})
    save_radiance_network(folder, net, _meta(history, model))
    other = ColumnAtmosphere(n_columns=N_COL, n_levels=12)
    _one_line_error(folder, "was trained for 10 levels, this model has 12", pressure=other.pressure)
    shifted = ColumnAtmosphere(n_columns=N_COL, n_levels=L, p_top=50.0)
    _one_line_error(folder, "other pressure levels: level 1", pressure=shifted.pressure)
    _one_line_error(folder, r"trained for channels \(6, 7, 8\), asked for \(6, 7\)", channels=(6, 7))
    weights = folder / "weights.pt"
    good = weights.read_bytes()
    weights.write_bytes(good[: len(good) // 2])
    _one_line_error(folder, "does not match")
    weights.write_bytes(good)
    meta_path = folder / "metadata.json"
    doc = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**doc, "feature_names": doc["feature_names"][::-1]}))
    _one_line_error(folder, "another feature set")
    meta_path.write_text("{not json")
    _one_line_error(folder, "unreadable")
    meta_path.unlink()
    _one_line_error(folder, "has no metadata.json")


# --- operator --------------------------------------------------------------------------------------


def _operator(model: ColumnAtmosphere, net: RadianceNetwork, columns: list[int]) -> LearnedRadianceOperator:
    n_fov = len(columns)
    scan = torch.linspace(-30.0, 30.0, n_fov, dtype=torch.float64)
    cols = torch.tensor(columns)
    locations = torch.stack([cols.repeat_interleave(3).double(), torch.tensor([1.0, 2.0, 3.0]).repeat(n_fov)], -1)
    return LearnedRadianceOperator(
        model=model,
        network=net,
        columns=cols,
        scan_deg=scan,
        zenith_deg=1.1 * scan.abs(),
        error_std=torch.full((3 * n_fov,), 0.3),
        locations=locations,
    )


def test_operator_protocol_order_and_batches(trained: tuple[RadianceNetwork, dict], model: ColumnAtmosphere) -> None:
    net, _ = trained
    op = _operator(model, net, [0, 3, 3, 5])
    assert isinstance(op, ObsOperator)
    assert op.n_state == model.n_state and op.n_obs == 12 and op.channels == (6, 7, 8)
    assert op.error_std.dtype == torch.float64 and op.locations.shape == (12, 2)
    x = model.initial_state(torch.Generator().manual_seed(1), spin_up=1.0)
    y = op(x)
    assert y.shape == (12,) and y.dtype == torch.float64 and y.grad_fn is None
    t, q = model.profiles(x, op.columns)
    with torch.no_grad():
        direct = net(radiance_features(t, q, op.scan_deg, op.zenith_deg, model.latitude[op.columns]).float())
    for fov in range(4):
        for c in range(3):
            assert float(y[fov * 3 + c]) == pytest.approx(float(direct[fov, c]), abs=1e-4)
    assert float(y[3]) == pytest.approx(float(direct[1, 0]), abs=1e-4)  # fov 1, channel 6
    ens = torch.stack([x, x + 0.1, x - 0.1])  # (members, n_state)
    y_ens = op(ens)
    assert y_ens.shape == (3, 12)
    torch.testing.assert_close(y_ens[0], y)
    assert op(ens.reshape(1, 3, -1)).shape == (1, 3, 12)


def test_operator_is_differentiable(trained: tuple[RadianceNetwork, dict], model: ColumnAtmosphere) -> None:
    op = _operator(model, trained[0], [1, 2])
    x = model.initial_state(torch.Generator().manual_seed(2), spin_up=1.0).requires_grad_(True)
    y = op(x)
    y.sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape
    t_grad, _ = model.split(x.grad)
    assert float(t_grad[:, [1, 2]].abs().sum()) > 0 and float(t_grad[:, 0].abs().sum()) == 0


def test_operator_shape_checks(trained: tuple[RadianceNetwork, dict], model: ColumnAtmosphere) -> None:
    net, _ = trained
    op = _operator(model, net, [0, 1])
    base = {f: getattr(op, f) for f in ("model", "network", "columns", "scan_deg", "zenith_deg", "error_std")}
    base["locations"] = op.locations
    cases = [
        ({"columns": torch.tensor([0, 8])}, r"columns must lie in \[0, 7\]"),
        ({"columns": torch.tensor([0.0, 1.0])}, "integer"),
        ({"scan_deg": torch.zeros(3)}, r"scan_deg must have shape \(2,\)"),
        ({"error_std": torch.ones(5)}, r"error_std must be positive, a scalar or shape \(6,\)"),
        ({"locations": torch.zeros(5, 2)}, r"locations must have shape \(6, ndim\)"),
        ({"model": ColumnAtmosphere(n_columns=N_COL, n_levels=12)}, "the model has 12 levels"),
    ]
    for change, match in cases:
        with pytest.raises(ValueError, match=match) as err:
            LearnedRadianceOperator(**{**base, **change})
        assert "\n" not in str(err.value)
    assert LearnedRadianceOperator(**{**base, "error_std": torch.tensor(0.5)}).error_std.shape == (6,)
    with pytest.raises(ValueError, match="state length"):
        op(torch.zeros(5))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_training_and_operator(
    data: tuple[Tensor, Tensor], trained: tuple[RadianceNetwork, dict], model: ColumnAtmosphere
) -> None:
    cfg = RadianceTrainConfig(hidden=16, depth=2, epochs=3, batch_size=64, device="cuda")
    net, history = train_radiance_network(*data, cfg)
    assert history["device"].startswith("cuda") and next(net.parameters()).device.type == "cpu"
    cpu_op = _operator(model, trained[0], [0, 4])
    gpu_op = _operator(model, copy.deepcopy(trained[0]).to("cuda"), [0, 4])
    x = model.initial_state(torch.Generator().manual_seed(3), spin_up=1.0)
    ens = torch.stack([x, x + 0.2])
    y = gpu_op(ens)  # network on CUDA, states on the CPU: the result comes back on the CPU
    assert y.device.type == "cpu" and y.dtype == torch.float64
    torch.testing.assert_close(y, cpu_op(ens), rtol=1e-4, atol=1e-3)
    y_cuda = gpu_op(ens.cuda())
    assert y_cuda.device.type == "cuda"


def test_humidity_on_the_lower_levels_only(
    tmp_path: Path, data: tuple[Tensor, Tensor], model: ColumnAtmosphere
) -> None:
    """The paper feeds humidity on the lower 40 of 78 levels: ``humidity_levels`` keeps the lowest Lq."""
    n_q = 4
    t = torch.full((2, L), 250.0, dtype=torch.float64)
    q = torch.arange(1.0, L + 1, dtype=torch.float64).expand(2, L)
    f = radiance_features(t, q, torch.zeros(2), torch.zeros(2), torch.zeros(2), n_q)
    assert f.shape == (2, L + n_q + 3)
    assert torch.allclose(f[0, L : L + n_q], torch.log(q[0, :n_q]))
    assert feature_names(L, n_q)[L + n_q - 1] == "lnq_03"
    with pytest.raises(ValueError, match="humidity_levels"):
        feature_names(L, L + 1)
    features = torch.cat([data[0][:, : L + n_q], data[0][:, 2 * L :]], dim=1)
    net, history = train_radiance_network(features, data[1], dataclasses_replace(SMALL, epochs=3), humidity_levels=n_q)
    assert net.n_levels == L and net.humidity_levels == n_q
    save_radiance_network(tmp_path / "ck", net, _meta(history, model))
    loaded, meta = load_radiance_network(tmp_path / "ck", pressure=model.pressure)
    assert meta["humidity_levels"] == n_q and torch.equal(loaded(features[:5].float()), net(features[:5].float()))
    op = LearnedRadianceOperator(
        model=model,
        network=loaded,
        columns=torch.tensor([0, 3]),
        scan_deg=torch.zeros(2),
        zenith_deg=torch.zeros(2),
        error_std=torch.tensor(0.3),
        locations=torch.zeros(6, 2),
    )
    assert op(model.climatology()).shape == (6,)
