"""The inbox: twin radar volumes give the batch twin's observations; bad files are rejected; atomic delivery."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from dacast.models.wursch_craig import WurschCraig, WurschCraigConfig
from dacast.obs.radar import RadarConfig, RadarOperator, observe_radar
from dacast.workflow.realtime.config import load_realtime_target
from dacast.workflow.realtime.inbox import (
    Rejected,
    arrived,
    deliver,
    move,
    read_volume,
    volume_dataset,
    volume_name,
    volume_observation,
    volume_time,
    write_volume,
)

T0 = datetime(2026, 7, 1, 0, 0, 30, tzinfo=UTC)


@dataclasses.dataclass(frozen=True)
class Twin:
    """One simulated radar volume of the ``bda-tiny`` truth and what it was made from."""

    model: WurschCraigConfig
    radar: RadarConfig
    truth: torch.Tensor  # (4, ny, nx)
    y: torch.Tensor  # (n_obs,)
    operator: RadarOperator
    dataset: xr.Dataset


@pytest.fixture(scope="module")
def twin() -> Twin:
    bda = load_realtime_target("bda-tiny")[0].bda
    model = WurschCraig(bda.model)
    truth = model.forecast(model.initial_state(1, seed=0), 10 * 60.0, seed=1)[0]
    y, operator = observe_radar(truth, bda.model, bda.radar, torch.Generator().manual_seed(2))
    return Twin(bda.model, bda.radar, truth, y, operator, volume_dataset(y, operator, T0, bda.model, bda.radar))


def test_the_twin_volume_has_rain(twin: Twin) -> None:
    dbz = twin.y[: twin.operator.n_dbz]
    assert int((dbz > 10.0).sum()) >= 20
    assert twin.operator.n_vr == int((dbz >= twin.radar.clear_air_dbz).sum()) > 0


def test_dataset_is_cf_with_the_observations_in_their_cells(twin: Twin) -> None:
    ds = twin.dataset
    assert ds.attrs["Conventions"] == "CF-1.10" and ds.attrs["dx_m"] == twin.model.dx
    assert ds["reflectivity"].attrs["units"] == "dBZ" and ds["radial_velocity"].attrs["units"] == "m s-1"
    assert ds["reflectivity"].dtype == np.float32 and ds["reflectivity"].shape == (twin.model.ny, twin.model.nx)
    dbz = ds["reflectivity"].values.reshape(-1)
    nd = twin.operator.n_dbz
    assert np.count_nonzero(~np.isnan(dbz)) == nd
    assert np.array_equal(dbz[twin.operator.cell[:nd].numpy()], twin.y[:nd].numpy())
    assert int(ds["coverage"].sum()) >= nd


def test_round_trip_gives_the_batch_twins_observations(twin: Twin, tmp_path: Path) -> None:
    path = write_volume(tmp_path, twin.dataset, T0)
    assert path == tmp_path / "radar_20260701T000030Z.nc" and arrived(tmp_path) == [path]
    volume = read_volume(path, twin.model)
    assert volume.time == T0 and volume.path == path
    obs = volume_observation(volume, twin.model, twin.radar, dtype=torch.float32, device=torch.device("cpu"))
    op, ref = obs.operator, twin.operator
    assert obs.y.dtype == torch.float32
    assert torch.equal(obs.y, twin.y.to(torch.float32))
    for name in ("cell", "kind", "ex", "ey", "error_std", "locations"):
        assert torch.equal(getattr(op, name), getattr(ref, name)), name
    assert (op.n_dbz, op.n_vr) == (ref.n_dbz, ref.n_vr)
    noise = torch.randn(5, twin.truth.numel(), generator=torch.Generator().manual_seed(3))
    ensemble = twin.truth.reshape(1, -1) + noise
    rain = 3 * twin.model.ny * twin.model.nx
    ensemble[:, rain:] = ensemble[:, rain:].abs()
    assert torch.equal(op(ensemble), ref(ensemble))


def test_volume_names() -> None:
    assert volume_name(T0) == "radar_20260701T000030Z.nc"
    assert volume_time("radar_20260701T000030Z.nc") == T0
    for name in ("radar_20260701T000030Z.nc.reason", "radar_2026.nc", "composite_20260701T000030Z.nc"):
        assert volume_time(name) is None


# ---------------------------------------------------------------------------------------------- rejections


def reason(path: Path, model: WurschCraigConfig) -> str:
    """The one-line message of the `Rejected` that reading ``path`` raises."""
    with pytest.raises(Rejected) as info:
        read_volume(path, model)
    message = str(info.value)
    assert message and "\n" not in message
    return message


def test_truncated_file_is_rejected(twin: Twin, tmp_path: Path) -> None:
    path = write_volume(tmp_path, twin.dataset, T0)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert reason(path, twin.model).startswith("unreadable (")


def test_random_bytes_are_rejected(twin: Twin, tmp_path: Path) -> None:
    path = tmp_path / volume_name(T0)
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    assert reason(path, twin.model).startswith("unreadable (")


def test_another_grid_is_rejected(twin: Twin, tmp_path: Path) -> None:
    big = dataclasses.replace(twin.model, ny=64, nx=64)
    ds = volume_dataset(torch.zeros(0), RadarOperator.empty(big, twin.radar), T0, big, twin.radar)
    path = write_volume(tmp_path, ds, T0)
    message = reason(path, twin.model)
    assert message.startswith("wrong grid:") and "y=32, x=32" in message and "64" in message
    assert read_volume(path, big).reflectivity.shape == (64, 64)  # the file itself is fine


def test_another_grid_spacing_is_rejected(twin: Twin, tmp_path: Path) -> None:
    ds = twin.dataset.copy()
    ds.attrs = {**ds.attrs, "dx_m": 2.0 * twin.model.dx}
    message = reason(write_volume(tmp_path, ds, T0), twin.model)
    assert message.startswith("wrong grid spacing") and "dx_m=1000" in message and "500 m" in message


def test_a_file_whose_name_time_differs_from_its_content_is_rejected(twin: Twin, tmp_path: Path) -> None:
    later = T0 + timedelta(seconds=30)
    path = deliver(lambda tmp: twin.dataset.to_netcdf(tmp, engine="netcdf4"), tmp_path, volume_name(later))
    message = reason(path, twin.model)
    assert "differs from its name" in message and "2026-07-01T00:01:00Z" in message and "00:00:30" in message


@pytest.mark.parametrize("name", ["notes.nc", "radar_20260701.nc", "radar_20260701T000030Z.txt"])
def test_a_file_that_is_not_a_volume_name_is_rejected(twin: Twin, tmp_path: Path, name: str) -> None:
    path = deliver(lambda tmp: twin.dataset.to_netcdf(tmp, engine="netcdf4"), tmp_path, name)
    assert reason(path, twin.model).startswith("not a radar volume name")


@pytest.mark.parametrize(
    ("variable", "value"), [("reflectivity", np.inf), ("radial_velocity", -np.inf), ("reflectivity", 250.0)]
)
def test_values_out_of_range_are_rejected(twin: Twin, tmp_path: Path, variable: str, value: float) -> None:
    ds = twin.dataset.copy(deep=True)
    ds[variable].values[3, 4] = value
    assert reason(write_volume(tmp_path, ds, T0), twin.model).startswith("values out of range")


def test_a_missing_variable_is_rejected(twin: Twin, tmp_path: Path) -> None:
    ds = twin.dataset.drop_vars("radial_velocity")
    assert reason(write_volume(tmp_path, ds, T0), twin.model) == "no radial_velocity variable"


# ---------------------------------------------------------------------------------------------- delivery


def test_deliver_hides_the_file_until_it_is_whole(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    seen: list[list[Path]] = []
    temporary: list[Path] = []

    def writer(tmp: Path) -> None:
        temporary.append(tmp)
        tmp.write_bytes(b"half")
        seen.append(arrived(inbox))
        assert not (inbox / "radar_20260701T000030Z.nc").exists()
        with open(tmp, "ab") as fh:
            fh.write(b" and the rest")
        seen.append(arrived(inbox))

    final = deliver(writer, inbox, "radar_20260701T000030Z.nc")
    assert seen == [[], []]
    assert temporary[0].parent == inbox and temporary[0].name.startswith(".")
    assert final == inbox / "radar_20260701T000030Z.nc"
    assert arrived(inbox) == [final] and final.read_bytes() == b"half and the rest"
    assert sorted(p.name for p in inbox.iterdir()) == [final.name]


def test_a_failed_delivery_leaves_nothing(tmp_path: Path) -> None:
    def writer(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        deliver(writer, tmp_path, "radar_20260701T000030Z.nc")
    assert list(tmp_path.iterdir()) == []


def test_deliver_copies_a_source_file(tmp_path: Path) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(b"\x00\x01volume")
    inbox = tmp_path / "inbox"
    final = deliver(source, inbox, "radar_20260701T000030Z.nc")
    assert final.read_bytes() == source.read_bytes() and source.exists()
    assert arrived(inbox) == [final]


def test_arrived_lists_files_by_name_without_hidden_ones(tmp_path: Path) -> None:
    assert arrived(tmp_path / "absent") == []
    for name in ("radar_b.nc", ".radar_c.nc.1.tmp", "radar_a.nc"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "folder").mkdir()
    assert [p.name for p in arrived(tmp_path)] == ["radar_a.nc", "radar_b.nc"]


def test_move_with_a_reason_writes_it_beside_the_file(tmp_path: Path) -> None:
    inbox, rejected, done = tmp_path / "inbox", tmp_path / "state" / "rejected", tmp_path / "state" / "done"
    inbox.mkdir()
    bad = inbox / "radar_20260701T000030Z.nc"
    bad.write_bytes(b"garbage")
    target = move(bad, rejected, "unreadable (OSError: no netCDF)")
    assert target == rejected / bad.name and target.read_bytes() == b"garbage" and not bad.exists()
    assert (rejected / f"{bad.name}.reason").read_text() == "unreadable (OSError: no netCDF)\n"
    good = inbox / "radar_20260701T000100Z.nc"
    good.write_bytes(b"new")
    (done).mkdir(parents=True)
    (done / good.name).write_bytes(b"old")
    assert move(good, done) == done / good.name
    assert sorted(p.name for p in done.iterdir()) == [good.name]  # replaced, no reason file
    assert (done / good.name).read_bytes() == b"new" and arrived(inbox) == []


def test_a_volume_time_in_another_zone_is_stored_in_utc(twin: Twin, tmp_path: Path) -> None:
    """The same instant written with a +02:00 time reads back as the UTC volume."""
    from datetime import timezone

    local = T0.astimezone(timezone(timedelta(hours=2)))
    ds = volume_dataset(twin.y, twin.operator, local, twin.model, twin.radar)
    path = write_volume(tmp_path, ds, local)
    assert path.name == volume_name(T0)
    assert read_volume(path, twin.model).time == T0


def test_an_unreadable_reason_names_the_file_not_its_folder(twin: Twin, tmp_path: Path) -> None:
    path = write_volume(tmp_path, twin.dataset, T0)
    path.write_bytes(path.read_bytes()[:500])
    message = reason(path, twin.model)
    assert str(tmp_path) not in message and message.startswith("unreadable")
