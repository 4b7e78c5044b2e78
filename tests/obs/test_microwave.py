"""The AMSU-A microwave operator: pyrtlib agreement, physics checks, gradients, batching, input errors, the operator."""

from __future__ import annotations

import json
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch

from dacast.models.column import ColumnAtmosphere
from dacast.obs import (
    AMSUA_CHANNELS,
    MicrowaveOperator,
    ObsOperator,
    brightness_temperature,
    load_amsua_tables,
    peak_pressure,
    weighting_functions,
)
from dacast.obs.microwave import modified_planck, planck_temperature
from dacast.obs.microwave_tables import AMSUA_TABLES_FILE

REFERENCE = Path(__file__).resolve().parents[1] / "regression" / "amsua_pyrtlib_reference.npz"
#: The specification: dacast within 0.05 K of pyrtlib. The shipped tables give about 0.002 K.
TOLERANCE_K = 0.05


@pytest.fixture(scope="module")
def ref() -> dict[str, torch.Tensor]:
    """The stored pyrtlib case: t (20, 26) K, q g/kg, p (26,) hPa, zenith_deg (20,), tb (20, 3) K."""
    with np.load(REFERENCE) as data:
        return {k: torch.from_numpy(data[k]) for k in ("t", "q", "p", "zenith_deg", "tb")}


@pytest.fixture(scope="module")
def model() -> ColumnAtmosphere:
    return ColumnAtmosphere(n_columns=8)


def _tb(ref: dict[str, torch.Tensor], **kw: object) -> torch.Tensor:
    return brightness_temperature(ref["t"], ref["q"], ref["p"], ref["zenith_deg"], **kw)


def test_tables_shipped_with_provenance() -> None:
    tables = load_amsua_tables()
    assert load_amsua_tables() is tables
    assert dict(zip(tables.channels, tables.frequency_ghz, strict=True)) == AMSUA_CHANNELS
    meta = tables.provenance_dict()
    assert meta["pyrtlib_version"] == "1.2.0"
    assert meta["models"] == {"H2O": "R22SD", "N2": "R22SD", "O2": "R22"}
    lo, hi = tables.pressure_range
    assert lo <= 5.0 + 1e-9 and hi >= 1100.0 - 1e-9
    assert tables.temperature_range == pytest.approx((150.0, 340.0))
    data = resources.files("dacast.obs").joinpath(AMSUA_TABLES_FILE).read_bytes()
    assert len(data) < 1_000_000


def test_matches_stored_pyrtlib(ref: dict[str, torch.Tensor]) -> None:
    diff = (_tb(ref) - ref["tb"]).abs()
    assert diff.shape == (20, 3)
    assert float(diff.max()) < TOLERANCE_K, f"max |dacast - pyrtlib| per channel: {diff.amax(0).tolist()} K"


def test_matches_pyrtlib_live(ref: dict[str, torch.Tensor]) -> None:
    pytest.importorskip("pyrtlib")
    from dacast.obs.pyrtlib_reference import pyrtlib_brightness_temperature

    gen = torch.Generator().manual_seed(11)
    idx = torch.tensor([1, 8, 15])
    t = ref["t"][idx] + 3.0 * torch.rand((3, 1), generator=gen, dtype=torch.float64) - 1.5
    q = ref["q"][idx] * 0.8
    zen = torch.tensor([5.0, 33.0, 57.0], dtype=torch.float64)
    expected = pyrtlib_brightness_temperature(t, q, ref["p"], zen, (8, 6))
    got = brightness_temperature(t, q, ref["p"], zen, channels=(8, 6)).numpy()
    assert np.abs(got - expected).max() < TOLERANCE_K


def test_planck_round_trip() -> None:
    t = torch.linspace(3.0, 340.0, 50, dtype=torch.float64)
    f = torch.tensor(AMSUA_CHANNELS[7], dtype=torch.float64)
    torch.testing.assert_close(planck_temperature(modified_planck(t, f), f), t, rtol=1e-13, atol=0)


def test_isothermal_column_emits_its_temperature(ref: dict[str, torch.Tensor]) -> None:
    # Weights of the layers and of the surface sum to 1: an isothermal column gives Tb = T exactly.
    t = torch.full_like(ref["t"][:4], 250.0)
    q = ref["q"][:4]
    for shift in (0.0, 1.0):
        tb = brightness_temperature(t + shift, q, ref["p"], ref["zenith_deg"][:4])
        torch.testing.assert_close(tb, torch.full_like(tb, 250.0 + shift), rtol=0, atol=1e-9)
    # Emissivity 0 removes the surface's share exp(-tau): a colder Tb, most so for channel 6 (most transparent).
    cold = 250.0 - brightness_temperature(t, q, ref["p"], 0.0, emissivity=0.0)
    assert bool((cold > 0).all()) and bool((cold[:, 0] > cold[:, 2]).all())


def test_plus_one_kelvin_everywhere(ref: dict[str, torch.Tensor]) -> None:
    # +1 K in T (and T_s) raises Tb by 1 K less a few tenths: the absorption also changes with T (the
    # high-N O2 lines near 55 GHz strengthen as the air warms, lifting the weighting functions where it
    # is colder); pyrtlib gives the same (0.91, 0.95, 0.99 K for profile 0).
    delta = brightness_temperature(ref["t"] + 1.0, ref["q"], ref["p"], ref["zenith_deg"]) - _tb(ref)
    assert bool((delta > 0.85).all()) and bool((delta < 1.005).all())
    assert bool((delta[:, 0] < delta[:, 2]).all())


def test_jacobian_equals_finite_differences(ref: dict[str, torch.Tensor]) -> None:
    t0, q0, p, zen = ref["t"][0], ref["q"][0], ref["p"], ref["zenith_deg"][0]
    jt, jq = torch.autograd.functional.jacobian(lambda t, q: brightness_temperature(t, q, p, zen), (t0, q0))
    assert jt.shape == (3, 26) and jq.shape == (3, 26)
    h_t, h_q = 1e-5, 1e-4 * q0  # q down to 1e-3 g/kg: a smaller step drowns in round-off
    eye = torch.eye(26, dtype=torch.float64)
    fd_t = torch.stack(
        [
            brightness_temperature(t0 + h_t * e, q0, p, zen) - brightness_temperature(t0 - h_t * e, q0, p, zen)
            for e in eye
        ],
        -1,
    ) / (2 * h_t)
    fd_q = torch.stack(
        [
            brightness_temperature(t0, q0 + h * e, p, zen) - brightness_temperature(t0, q0 - h * e, p, zen)
            for h, e in zip(h_q, eye, strict=True)
        ],
        -1,
    ) / (2 * h_q)
    torch.testing.assert_close(jt, fd_t, rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(jq, fd_q, rtol=1e-3, atol=1e-3 * float(jq.abs().max()))
    assert float(jt.sum(-1).min()) > 0.85  # the +1 K test, linearised


def test_weighting_functions_and_peak_order(ref: dict[str, torch.Tensor], model: ColumnAtmosphere) -> None:
    w = weighting_functions(ref["t"], ref["q"], ref["p"], ref["zenith_deg"])
    assert w.shape == (20, 3, 26) and bool((w >= 0).all())
    # It integrates over ln p to the absorbed fraction 1 - exp(-tau) (all of it for these opaque channels).
    total = -torch.trapezoid(w, torch.log(ref["p"]), dim=-1)
    assert float((total - 1).abs().max()) < 0.1
    peaks = peak_pressure(ref["t"], ref["q"], ref["p"], ref["zenith_deg"])
    assert bool((peaks[:, 0] > peaks[:, 1]).all()) and bool((peaks[:, 1] > peaks[:, 2]).all())
    # A mid-latitude column at nadir: channel 6 near 400 hPa, 7 near 270 hPa, 8 near 180 hPa.
    t, q = model.t_clim[:, 1], model.q_clim[:, 1]
    mid = peak_pressure(t, q, model.pressure, 0.0)
    torch.testing.assert_close(mid, torch.tensor([400.0, 270.0, 180.0], dtype=torch.float64), rtol=0.15, atol=0)
    # Slant views peak higher up.
    assert bool((peak_pressure(t, q, model.pressure, 50.0) < mid).all())


def test_float32_close_to_float64(ref: dict[str, torch.Tensor]) -> None:
    tb32 = brightness_temperature(ref["t"].float(), ref["q"].float(), ref["p"].float(), ref["zenith_deg"].float())
    assert tb32.dtype == torch.float32
    assert float((tb32.double() - _tb(ref)).abs().max()) < 2e-3


def test_batch_equals_loop(ref: dict[str, torch.Tensor]) -> None:
    t, q, zen = ref["t"].reshape(4, 5, 26), ref["q"].reshape(4, 5, 26), ref["zenith_deg"].reshape(4, 5)
    batched = brightness_temperature(t, q, ref["p"], zen, channels=(7,))
    assert batched.shape == (4, 5, 1)
    for i in range(4):
        for j in range(5):
            one = brightness_temperature(t[i, j], q[i, j], ref["p"], float(zen[i, j]), channels=(7,))
            torch.testing.assert_close(batched[i, j], one, rtol=0, atol=1e-10)
    # A scalar zenith broadcasts over the batch.
    torch.testing.assert_close(
        brightness_temperature(t, q, ref["p"], 20.0), brightness_temperature(t, q, ref["p"], torch.full((4, 5), 20.0))
    )


def _bad(
    ref: dict[str, torch.Tensor], case: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, tuple[int, ...]]:
    t, q, p, zen = ref["t"][:4].clone(), ref["q"][:4].clone(), ref["p"].clone(), ref["zenith_deg"][:4].clone()
    channels = (6, 7, 8)
    if case == "t_low":
        t[2, 5] = 120.0
    elif case == "t_high":
        t[2, 5] = 400.0
    elif case == "t_nan":
        t[2, 5] = float("nan")
    elif case == "t_inf":
        t[2, 5] = float("inf")
    elif case == "q_negative":
        q[2, 5] = -0.1
    elif case == "q_nan":
        q[2, 5] = float("nan")
    elif case == "vapour":
        q[2, 5] = 90.0
    elif case == "p_order":
        p[5] = p[4]
    elif case == "p_range":
        p[-1] = 1.0
    elif case == "zenith":
        zen[2] = 95.0
    elif case == "channel":
        channels = (6, 9)
    return t, q, p, zen, channels


@pytest.mark.parametrize(
    ("case", "needles"),
    [
        ("t_low", ("profile 2", "level 5", "120 K", "150..340 K")),
        ("t_high", ("profile 2", "level 5", "400 K")),
        ("t_nan", ("profile 2", "level 5", "nan K")),
        ("t_inf", ("profile 2", "level 5", "inf K")),
        ("q_negative", ("profile 2", "level 5", "-0.1 g/kg")),
        ("q_nan", ("profile 2", "level 5", "nan g/kg")),
        ("vapour", ("profile 2", "level 5", "vapour pressure", "q = 90 g/kg")),
        ("p_order", ("strictly decreasing", "level 5")),
        ("p_range", ("level 25", "1 hPa", "5..1100 hPa")),
        ("zenith", ("profile 2", "95 deg")),
        ("channel", ("channel 9", "6, 7, 8")),
    ],
)
def test_bad_input_one_line_error(ref: dict[str, torch.Tensor], case: str, needles: tuple[str, ...]) -> None:
    t, q, p, zen, channels = _bad(ref, case)
    with pytest.raises(ValueError) as info:
        brightness_temperature(t, q, p, zen, channels=channels)
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message


def _operator(model: ColumnAtmosphere, **overrides: object) -> MicrowaveOperator:
    kw: dict[str, object] = {
        "model": model,
        "columns": torch.tensor([3, 0, 6, 3]),
        "zenith_deg": torch.tensor([0.0, 20.0, 40.0, 58.0], dtype=torch.float64),
        "channels": (6, 8),
        "error_std": torch.full((8,), 0.3, dtype=torch.float64),
        "locations": torch.zeros((8, 2), dtype=torch.float64),
    }
    kw.update(overrides)
    return MicrowaveOperator(**kw)  # type: ignore[arg-type]


def test_operator_shape_order_and_protocol(model: ColumnAtmosphere) -> None:
    op = _operator(model)
    assert isinstance(op, ObsOperator)
    assert op.n_state == model.n_state and op.n_obs == 8
    gen = torch.Generator().manual_seed(0)
    clim = model.climatology()
    x = clim + 0.5 * torch.randn((2, 3, model.n_state), generator=gen, dtype=torch.float64) * (clim > 50)
    y = op(x)
    assert y.shape == (2, 3, 8)
    t, q = model.profiles(x[1, 2], op.columns)
    tb = brightness_temperature(t, q, model.pressure, op.zenith_deg, channels=(6, 8))  # (fov, channel)
    torch.testing.assert_close(y[1, 2], tb.reshape(-1))  # fov-major, channel-minor
    assert float((y[..., 0] - y[..., 6]).abs().max()) > 0.1  # same column, other zenith angle


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"columns": torch.tensor([0, 8, 1, 2])}, "columns must lie in [0, 7]"),
        ({"columns": torch.tensor([0.0, 1.0, 2.0, 3.0])}, "long"),
        ({"zenith_deg": torch.zeros(3, dtype=torch.float64)}, "zenith_deg must have shape (4,)"),
        ({"zenith_deg": torch.tensor([0.0, 10.0, 90.0, 5.0])}, "[0, 90)"),
        ({"channels": (6, 5)}, "channel 5"),
        ({"error_std": torch.ones(4, dtype=torch.float64)}, "error_std must have shape (8,)"),
        ({"locations": torch.zeros((8, 1), dtype=torch.float64)}, "locations must have shape (8, 2)"),
    ],
)
def test_operator_validation(model: ColumnAtmosphere, overrides: dict[str, object], needle: str) -> None:
    with pytest.raises(ValueError) as info:
        _operator(model, **overrides)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_operator_error_names_fov_and_column(model: ColumnAtmosphere) -> None:
    op = _operator(model)
    x = model.climatology().repeat(2, 1)
    t, q = model.split(x)
    t[1, 4, 6] = 100.0  # level 4 of column 6 (fov 2) in member 1
    with pytest.raises(ValueError, match=r"state 1, fov 2 \(model column 6\), level 4 .* 100 K"):
        op(x)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_equals_cpu(ref: dict[str, torch.Tensor], model: ColumnAtmosphere) -> None:
    cpu = _tb(ref)
    args = [ref[k].cuda() for k in ("t", "q", "p", "zenith_deg")]
    gpu64 = brightness_temperature(*args)
    assert gpu64.device.type == "cuda"
    torch.testing.assert_close(gpu64.cpu(), cpu, rtol=0, atol=1e-9)
    gpu32 = brightness_temperature(*(a.float() for a in args))
    assert float((gpu32.double().cpu() - cpu).abs().max()) < 2e-3
    t = args[0].clone().requires_grad_(True)
    brightness_temperature(t, *args[1:]).sum().backward()
    assert t.grad is not None and bool(torch.isfinite(t.grad).all())
    op = _operator(model)
    y = op(model.climatology().cuda())
    torch.testing.assert_close(y.cpu(), op(model.climatology()), rtol=0, atol=1e-9)


def test_reference_file_provenance() -> None:
    with np.load(REFERENCE) as data:
        meta = json.loads(str(data["meta"]))
    assert meta["pyrtlib_version"] == "1.2.0" and meta["models"]["O2"] == "R22"


def test_interpolation_reproduces_the_nodes() -> None:
    tables = load_amsua_tables()
    ip, it, iw = torch.tensor([0, 40, 108]), torch.tensor([0, 17, 47]), torch.tensor([0, 3, 5])
    ln_dry, wet_per_e = tables.interpolate(tables.ln_p[ip], tables.ln_t[it], tables.vapour_fraction[iw], (7,))
    torch.testing.assert_close(ln_dry[0], tables.ln_dry[1, ip, it, iw].double(), rtol=0, atol=1e-6)
    torch.testing.assert_close(wet_per_e[0], tables.wet_per_e[1, ip, it, iw].double(), rtol=1e-6, atol=0)


def test_reference_without_pyrtlib_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, ref: dict[str, torch.Tensor]
) -> None:
    from dacast.obs.pyrtlib_reference import pyrtlib_brightness_temperature

    monkeypatch.setitem(sys.modules, "pyrtlib.tb_spectrum", None)
    with pytest.raises(ImportError, match=r'pip install -e "\.\[rt\]"'):
        pyrtlib_brightness_temperature(ref["t"][:1], ref["q"][:1], ref["p"], 0.0)
