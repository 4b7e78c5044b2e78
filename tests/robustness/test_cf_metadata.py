"""Every netCDF file dacast writes follows CF-1.10: global attributes, units and long names, one quantity per variable.

Each file is produced through the real code path with tiny settings (twin, Big Data
Assimilation, surrogate cycle, radar nowcast and its re-verification, radiance experiments, the learned
regional model in the 30-s LETKF, the diffusion filter against the LETKF, the latent filter on the
radar twin) and read back with `xarray.open_dataset` without decoding times, so the attributes on
disk are checked.
Units are checked against UDUNITS syntax for the symbols dacast uses (``cf_units`` is
not a dependency): a product of symbols with integer exponents, ``1``, or
``<unit> since <date>``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from dacast.da import ETKFConfig, LETKFConfig, Localization
from dacast.ml import SurrogateTrainConfig
from dacast.workflow import TwinConfig, get_preset, run_experiment, with_overrides
from dacast.workflow.bda.config import BDAConfig
from dacast.workflow.bda.plots import make_bda_plots
from dacast.workflow.bda.run import run_bda_experiment
from dacast.workflow.nowcast.config import NowcastRunConfig
from dacast.workflow.nowcast.run import run_nowcast, verify_nowcast
from dacast.workflow.surrogate.config import NetSpec, SurrogateConfig
from dacast.workflow.surrogate.plots import plot_surrogate
from dacast.workflow.surrogate.run import run_surrogate
from dacast.workflow.twin.config import ModelSpec, ObsSpec
from dacast.workflow.twin.plots import make_plots

#: Unit symbols dacast writes (UDUNITS names); a unit is a space-separated product of them with integer exponents.
SYMBOLS = ("1", "m", "km", "mm", "s", "min", "h", "kg", "g", "K", "hPa")
_TERM = rf"(?:{'|'.join(SYMBOLS)})(?:-?[1-9])?"
UNIT = re.compile(rf"^{_TERM}(?: {_TERM})*$")
SINCE = re.compile(r"^(?:days|hours|minutes|seconds|milliseconds|microseconds|nanoseconds) since \d{4}-\d{2}-\d{2}")

#: The CF standard names dacast uses and the units each may carry ("since" = a reference-time unit).
STANDARD_UNITS = {
    "time": {"since"},
    "forecast_period": {"s", "min", "h"},
    "projection_x_coordinate": {"m", "km"},
    "projection_y_coordinate": {"m", "km"},
    "x_wind": {"m s-1"},
    "y_wind": {"m s-1"},
    "eastward_wind": {"m s-1"},
    "northward_wind": {"m s-1"},
    "rainfall_rate": {"kg m-2 s-1"},
    "air_pressure": {"hPa"},
}

BDA_UNITS = {"u": "m s-1", "v": "m s-1", "h": "m", "r": "1"}


@dataclass(frozen=True)
class Files:
    """The netCDF files of one application, by name."""

    paths: dict[str, Path]


def _open(path: Path) -> xr.Dataset:
    with xr.open_dataset(path, decode_times=False, decode_timedelta=False) as ds:
        return ds.load()


def _is_numeric(var: xr.Variable) -> bool:
    return np.issubdtype(var.dtype, np.number) or np.issubdtype(var.dtype, np.bool_)


def cf_problems(ds: xr.Dataset) -> Iterator[str]:
    """Every way ``ds`` falls short of the CF rules dacast keeps (empty when it keeps them all)."""
    if not str(ds.attrs.get("Conventions", "")).startswith("CF-"):
        yield f"Conventions is {ds.attrs.get('Conventions')!r}"
    for key in ("title", "source", "history"):
        if not str(ds.attrs.get(key, "")).strip():
            yield f"no global attribute {key!r}"
    for name, var in ds.variables.items():
        attrs = var.attrs
        if not str(attrs.get("long_name", "")).strip():
            yield f"{name}: no long_name"
        if not _is_numeric(var):
            continue  # labels (model names) carry a long_name only
        units = attrs.get("units")
        if not isinstance(units, str) or not (UNIT.match(units) or SINCE.match(units)):
            yield f"{name}: units {units!r} do not parse"
            continue
        standard = attrs.get("standard_name")
        if standard is not None:
            allowed = STANDARD_UNITS.get(standard)
            kind = "since" if SINCE.match(units) else units
            if allowed is None:
                yield f"{name}: standard_name {standard!r} is not one dacast uses"
            elif kind not in allowed:
                yield f"{name}: standard_name {standard!r} with units {units!r}"
    for dim in ds.dims:
        if dim == "var" or (dim in ds.coords and not _is_numeric(ds[dim].variable)):
            yield f"dimension {dim!r} stacks quantities"


# ----------------------------------------------------------------------------- the files


@pytest.fixture(scope="module")
def twin_files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    out = tmp_path_factory.mktemp("twin")
    config = TwinConfig(
        model=ModelSpec(name="lorenz96", n_state=12),
        dt=0.05,
        obs=ObsSpec(kind="every_kth", k=2, error_std=0.5),
        obs_every=1,
        filter=LETKFConfig(localization=Localization(length=2.0), inflation=1.05),
        members=6,
        cycles=10,
        burn_in=0.2,
        initial_std=1.0,
        seed=2,
    )
    plain = run_experiment(config, out / "plain", progress=False, plots=False)
    preset = get_preset("lorenz96-etkf")
    from_preset = run_experiment(
        with_overrides(preset.config, cycles=5, members=5), out / "preset", preset=preset, progress=False, plots=False
    )
    return Files({"results.nc": plain.paths.results, "results.nc (preset)": from_preset.paths.results})


@pytest.fixture(scope="module")
def bda_files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    out = tmp_path_factory.mktemp("bda")
    config = BDAConfig(
        members=6,
        grid=32,
        cycles=2,
        spinup_minutes=5.0,
        ensemble_pool=3,
        ensemble_lag_minutes=1.0,
        forecast_every=0,
        forecast_minutes=2.0,
        checkpoint_every=2,
        device="cpu",
        seed=3,
    )
    run_bda_experiment(config, out, progress=False, plots=False, say=lambda _m: None)
    return Files({"cycles.nc": out / "cycles.nc"})


@pytest.fixture(scope="module")
def surrogate_files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    out = tmp_path_factory.mktemp("surrogate")
    config = SurrogateConfig(
        name="tiny",
        truth=ModelSpec(name="lorenz96", n_state=8, forcing=8.0),
        imperfect=ModelSpec(name="lorenz96", n_state=8, forcing=5.0),
        dt=0.05,
        obs_every=1,
        obs=ObsSpec(kind="identity", error_std=0.5),
        filter=ETKFConfig(inflation=1.1),
        members=6,
        cycles=60,
        burn_in=0.5,
        net=NetSpec(kind="cnn", window=1, hidden=4, layers=1, base="imperfect"),
        train=SurrogateTrainConfig(epochs=2, batch_size=32, lr=1e-2, patience=2),
        iterations=1,
        patience=2,
        test_cycles=30,
        test_starts=4,
        free_leads=10,
        seed=4,
    )
    run = run_surrogate(config, out, plots=False)
    return Files({"surrogate_run.nc": run.paths["dataset"]})


@pytest.fixture(scope="module")
def nowcast_files(tmp_path_factory: pytest.TempPathFactory, radar_root: Path) -> Files:
    out = tmp_path_factory.mktemp("nowcast")
    config = NowcastRunConfig(source="mch", start="2015-05-15T16:30", method="persistence", n_leads=2, root=radar_root)
    result = run_nowcast(config, out / "run", plots=False)
    again = verify_nowcast(out / "run" / "nowcast.nc", out / "verified", thresholds=(1.0,), plots=False)
    assert result.paths.nowcast and result.paths.scores_nc and again.paths.scores_nc
    return Files(
        {
            "nowcast.nc": result.paths.nowcast,
            "scores.nc": result.paths.scores_nc,
            "scores.nc (verify_nowcast)": again.paths.scores_nc,
        }
    )


@pytest.fixture(scope="module")
def radiance_files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    from dacast.workflow.radiance.config import ColumnSpec, ConventionalSpec, MLSpec, RadianceConfig, SatelliteSpec
    from dacast.workflow.radiance.run import run_radiance

    config = RadianceConfig(
        experiments=("conv", "physical", "ml"),
        seeds=(1,),
        model=ColumnSpec(n_columns=12, n_levels=14),
        conventional=ConventionalSpec(stations=3),
        satellite=SatelliteSpec(fovs=6, step=5),
        members=5,
        cycles=4,
        spinup_cycles=1,
        training_cycles=12,
        truth_samples=100,
        ml=MLSpec(hidden=8, depth=1, epochs=1, patience=1),
    )
    run = run_radiance(config, tmp_path_factory.mktemp("radiance") / "run", plots=False)
    return Files({"radiance_run.nc": run.paths["dataset"]})


@pytest.fixture(scope="module")
def diffusion_files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    from dacast.workflow.diffusion.config import DiffusionConfig, SamplerSpec, TrainingSpec
    from dacast.workflow.diffusion.run import run_diffusion

    config = DiffusionConfig(
        networks=("all",),
        seeds=(1,),
        members=5,
        cycles=6,
        skip=2,
        sampler=SamplerSpec(steps=2),
        training=TrainingSpec(runs=1, cycles=40, steps=5, batch_size=8, channels=4, layers=1, kernel=3),
        threads=1,
    )
    run = run_diffusion(config, tmp_path_factory.mktemp("diffusion") / "run", plots=False)
    return Files({"diffusion_run.nc": run.paths["dataset"]})


@pytest.fixture(scope="module")
def latent_files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    from dacast.workflow.diffusion.radar_config import radar_config_from_dict
    from dacast.workflow.diffusion.radar_run import run_latent

    bda = {"members": 4, "cycles": 2, "spinup_minutes": 5.0, "ensemble_pool": 2, "forecast_minutes": 2.0}
    config = radar_config_from_dict({"preset": "latent-radar-quick", "bda": bda, "train_cycles": 2, "keep_members": 1,
                                     "members_per_sample": 1})  # fmt: skip
    run = run_latent(config, tmp_path_factory.mktemp("latent") / "run", plots=False)
    return Files({"latent_run.nc": run.paths["dataset"]})


@pytest.fixture(scope="module")
def bda_surrogate_files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    from dacast.workflow.bda_surrogate.config import bda_surrogate_config_from_dict
    from dacast.workflow.bda_surrogate.run import run_bda_surrogate

    bda = {"preset": "bda-small", "grid": 16, "members": 6, "cycles": 3, "ensemble_pool": 3, "spinup_minutes": 5}
    config = bda_surrogate_config_from_dict(
        {
            "preset": "bda-surrogate-analyses",
            "bda": {**bda, "forecast_every": 0, "forecast_minutes": 2, "device": "cpu"},
            "training_cycles": 10,
            "training_members": 2,
            "train": {"epochs": 1},
            "stability_cycles": 3,
            "stability_members": 1,
        }
    )
    run = run_bda_surrogate(config, tmp_path_factory.mktemp("bda_surrogate") / "run", plots=False)
    return Files({"bda_surrogate.nc": run.paths["dataset"]})


# ----------------------------------------------------------------------------- the checks


@pytest.mark.parametrize(
    "app",
    [
        "twin_files",
        "bda_files",
        "surrogate_files",
        "nowcast_files",
        "radiance_files",
        "bda_surrogate_files",
        "diffusion_files",
        "latent_files",
    ],
)
def test_every_file_is_cf(app: str, request: pytest.FixtureRequest) -> None:
    files: Files = request.getfixturevalue(app)
    for name, path in files.paths.items():
        problems = list(cf_problems(_open(path)))
        assert not problems, f"{name}:\n" + "\n".join(problems)


def test_the_checker_finds_the_old_faults() -> None:
    """The old faults are found: no Conventions, a stacked ``var`` axis, no units, "mm/h", a misused standard name."""
    ds = xr.Dataset(
        {
            "rmse": (("cycle", "var"), np.zeros((2, 4))),
            "rain": ("cycle", np.zeros(2), {"long_name": "rain", "units": "mm/h", "standard_name": "rainfall_rate"}),
        },
        coords={"var": ["u", "v", "h", "r"]},
        attrs={"title": "t", "source": "s", "history": "h"},
    )
    problems = "\n".join(cf_problems(ds))
    for fault in ("Conventions", "rmse: no long_name", "units None", "'mm/h'", "stacks quantities"):
        assert fault in problems, fault
    ds["rain"].attrs["units"] = "mm h-1"
    assert "standard_name 'rainfall_rate' with units 'mm h-1'" in "\n".join(cf_problems(ds))


def test_bda_splits_the_variables_and_its_plots_read_the_file(bda_files: Files, tmp_path: Path) -> None:
    ds = _open(bda_files.paths["cycles.nc"])
    assert "var" not in ds.dims
    for var, units in BDA_UNITS.items():
        for key in ("rmse_analysis", "rmse_forecast", "rmse_free_run", "spread_analysis", "spread_forecast"):
            assert ds[f"{key}_{var}"].dims == ("cycle",) and ds[f"{key}_{var}"].attrs["units"] == units
        for key in ("truth", "analysis_mean", "analysis_spread"):
            assert ds[f"{key}_{var}"].dims == ("cycle", "y", "x") and ds[f"{key}_{var}"].attrs["units"] == units
    assert ds["truth_u"].attrs["standard_name"] == "x_wind" and ds["analysis_mean_v"].attrs["standard_name"] == "y_wind"
    for axis in ("x", "y"):
        assert ds[axis].attrs == ds[axis].attrs | {"units": "km", "axis": axis.upper()}
        assert ds[axis].attrs["standard_name"] == f"projection_{axis}_coordinate"
    assert ds["time_s"].attrs["units"] == "s" and list(ds["time_s"].values) == [30.0, 60.0]
    assert ds["seconds_letkf"].attrs["units"] == "s" and ds["n_obs_dbz"].attrs["units"] == "1"
    assert ds["threat_score_forecast"].attrs["units"] == "1" and ds["lead"].attrs["units"] == "min"
    with xr.open_dataset(bda_files.paths["cycles.nc"]) as back:
        names = {p.name for p in make_bda_plots(back.load(), [], tmp_path)}
    assert names == {"rmse.png", "fields.png", "threat_score.png"}


def test_twin_keeps_the_preset_reference_and_plots_from_the_file(twin_files: Files, tmp_path: Path) -> None:
    plain = _open(twin_files.paths["results.nc"])
    preset = _open(twin_files.paths["results.nc (preset)"])
    assert plain.attrs["source"].startswith("dacast ") and "references" not in plain.attrs
    assert "sakov2008.py" in preset.attrs["references"] and preset.attrs["source"].startswith("dacast ")
    with xr.open_dataset(twin_files.paths["results.nc"]) as back:
        assert {p.name for p in make_plots(back.load(), tmp_path)} == {"rmse.png", "hovmoller.png"}


def test_surrogate_plots_from_the_file(surrogate_files: Files, tmp_path: Path) -> None:
    with xr.open_dataset(surrogate_files.paths["surrogate_run.nc"]) as back:
        assert len(plot_surrogate(back.load(), tmp_path)) == 3


def test_nowcast_rain_rates_and_scores(nowcast_files: Files) -> None:
    ds = _open(nowcast_files.paths["nowcast.nc"])
    for name in ("forecast", "observed", "last_observed"):
        assert ds[name].attrs["units"] == "mm h-1" and "standard_name" not in ds[name].attrs
    assert ds["lead_time"].attrs["units"] == "min" and ds["lead_time"].attrs["standard_name"] == "forecast_period"
    assert ds["x"].attrs["standard_name"] == "projection_x_coordinate" and ds["x"].attrs["axis"] == "X"
    scores = _open(nowcast_files.paths["scores.nc"])
    assert scores["threshold"].attrs["units"] == "mm h-1" and scores["mae"].attrs["units"] == "mm h-1"
    for name in ("csi", "fss", "pod", "far", "frequency_bias", "hits", "n_valid"):
        assert scores[name].attrs["units"] == "1", name
    assert "fractions skill score" in scores["fss"].attrs["long_name"]
    assert "critical success index" in scores["csi"].attrs["long_name"]
    assert "mean absolute error" in scores["mae"].attrs["long_name"]
    assert scores["scale"].attrs["units"] == "km"
