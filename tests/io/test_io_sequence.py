"""Finding frames, gap-aware sequence loading, valid masks, event listing and the data root."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from dacast.io import (
    RadarReadError,
    SequenceReadError,
    default_radar_root,
    find_frames,
    list_events,
    load_sequence,
    read_radar,
    valid_mask,
)

T = np.datetime64


def _link(root: Path, real_root: Path, rel: str, name: str | None = None) -> Path:
    """Symlink one real file into the same layout under ``root`` (optionally renamed)."""
    target = root / Path(rel).parent / (name or Path(rel).name)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(real_root / rel)
    return target


@pytest.fixture
def gappy_root(tmp_path: Path, radar_root: Path) -> Path:
    """mch 15:45..16:10 with 16:00 missing and 15:55 corrupt."""
    for hhmm in ("1545", "1550", "1605", "1610"):
        _link(tmp_path, radar_root, f"mch/20150515/AQC15135{hhmm}F_00005.801.gif")
    (tmp_path / "mch/20150515/AQC151351555F_00005.801.gif").write_bytes(b"GIF89a broken")
    return tmp_path


def test_gap_and_corrupt_file_are_reported(gappy_root: Path) -> None:
    rain, report = load_sequence("mch", "2015-05-15 15:45", "2015-05-15 16:10", root=gappy_root)
    assert rain.dims == ("time", "y", "x") and rain.shape == (4, 640, 710) and rain.dtype == np.float32
    times = [T(f"2015-05-15T{t}", "ns") for t in ("15:45", "15:50", "16:05", "16:10")]
    assert list(rain.time.values) == times == list(report.found)
    assert len(report.expected) == 6 and not report.complete
    assert report.missing == (T("2015-05-15T16:00", "ns"),)
    (bad,) = report.unreadable
    assert bad.time == T("2015-05-15T15:55", "ns") and bad.path.name == "AQC151351555F_00005.801.gif"
    assert "AQC151351555F_00005.801.gif" in bad.error
    assert report.gaps == (T("2015-05-15T15:55", "ns"), T("2015-05-15T16:00", "ns"))
    summary = report.summary()
    assert "4/6 read" in summary and "1 missing" in summary and "1 unreadable" in summary and "\n" not in summary
    np.testing.assert_array_equal(rain.sel(time=times[2]).values, read_radar(report.files[2]).values)
    assert [Path(f).name for f in rain.filename.values] == [p.name for p in report.files]
    assert rain.attrs["units"] == "mm/h" and rain.attrs["source"] == "mch" and "filename" not in rain.attrs

    with pytest.raises(RadarReadError, match="1 missing, 1 unreadable"):
        load_sequence("mch", "2015-05-15 15:45", "2015-05-15 16:10", root=gappy_root, strict=True)


def test_nothing_readable_raises(gappy_root: Path) -> None:
    with pytest.raises(RadarReadError, match="no mch frame could be read"):
        load_sequence("mch", "2015-05-15 15:55", n_frames=2, root=gappy_root)
    with pytest.raises(RadarReadError, match="no such folder"):
        load_sequence("knmi", "2010-08-26 00:00", n_frames=2, root=gappy_root)


def test_bad_arguments(gappy_root: Path) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        load_sequence("mch", "2015-05-15 15:45", root=gappy_root)
    with pytest.raises(ValueError, match="valid sources: mch, fmi, knmi"):
        load_sequence("opera", "2015-05-15 15:45", n_frames=2, root=gappy_root)


def test_duplicates_and_off_grid_files_are_reported(tmp_path: Path, radar_root: Path) -> None:
    _link(tmp_path, radar_root, "mch/20150515/AQC151351545F_00005.801.gif")
    _link(tmp_path, radar_root, "mch/20150515/AQC151351550F_00005.801.gif")
    _link(tmp_path, radar_root, "mch/20150515/AQC151351550F_00005.801.gif", "AQC151351550V_00005.801.gif")
    _link(tmp_path, radar_root, "mch/20150515/AQC151351555F_00005.801.gif", "AQC151351547F_00005.801.gif")
    rain, report = load_sequence("mch", "2015-05-15 15:45", n_frames=2, root=tmp_path)
    assert rain.sizes["time"] == 2 and report.complete
    assert [p.name for p in report.duplicates] == ["AQC151351550V_00005.801.gif"]
    assert [p.name for p in report.off_grid] == ["AQC151351547F_00005.801.gif"]


def test_mch_folder_quirk(radar_root: Path) -> None:
    """The 2016-07-12 00:00 frame lives in folder 20160711 and is still found."""
    (frame,) = find_frames(radar_root, "mch", "2016-07-12 00:00", "2016-07-12 00:00")
    assert frame.path.parent.name == "20160711" and frame.time == T("2016-07-12T00:00", "ns")
    rain, report = load_sequence("mch", "2016-07-11 23:45", "2016-07-12 00:00", root=radar_root)
    assert report.complete and rain.sizes["time"] == 4


def test_find_frames_window(radar_root: Path) -> None:
    frames = find_frames(radar_root, "knmi", "2010-08-26 00:00", "2010-08-26 07:35")
    assert len(frames) == 92 and all(f.source == "knmi" for f in frames)
    assert [f.time for f in frames] == sorted(f.time for f in frames)
    assert find_frames(radar_root, "fmi", "2016-09-28 14:50", "2016-09-28 15:00")[-1].time == T("2016-09-28T15:00")
    assert find_frames(radar_root, "fmi", "2020-01-01", "2020-01-02") == []


def test_full_fmi_sequence_and_valid_mask(radar_root: Path) -> None:
    rain, report = load_sequence("fmi", "2016-09-28 14:45", n_frames=40, root=radar_root)
    assert report.complete and rain.shape == (40, 1226, 760)
    mask = valid_mask(rain)
    assert mask.dims == ("y", "x") and mask.dtype == bool
    assert abs(float(mask.mean()) - 0.757) < 0.001  # the FMI coverage is the same in every frame
    np.testing.assert_array_equal(valid_mask(rain.values), mask.values)
    np.testing.assert_array_equal(valid_mask(torch.from_numpy(rain.values[:3])).numpy(), mask.values)
    np.testing.assert_array_equal(valid_mask(rain.isel(time=0)).values, np.isfinite(rain.values[0]))


def test_valid_mask_needs_every_frame() -> None:
    rain = np.zeros((3, 2, 2))
    rain[1, 0, 0] = np.nan
    assert valid_mask(rain).tolist() == [[False, True], [True, True]]


def test_list_events_on_shared_data(radar_root: Path) -> None:
    events = list_events(radar_root)
    got = [(e.source, str(e.start)[:16], str(e.end)[:16], e.n_frames) for e in events]
    assert got == [
        ("mch", "2015-05-15T15:45", "2015-05-15T19:00", 40),
        ("mch", "2016-07-11T20:45", "2016-07-12T00:00", 40),
        ("fmi", "2016-09-28T14:45", "2016-09-28T18:00", 40),
        ("knmi", "2010-08-26T00:00", "2010-08-26T07:35", 92),
    ]
    assert all(e.complete for e in events)


def test_list_events_with_gap(gappy_root: Path) -> None:
    (event,) = list_events(gappy_root)
    assert event.n_frames == 5 and event.n_expected == 6 and not event.complete  # the corrupt file still counts
    assert event.root == gappy_root and "5/6 frames" in str(event)
    assert len(list_events(gappy_root, max_gap_min=5)) == 2


def test_default_radar_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DACAST_RADAR_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)  # nothing above tmp_path: found from the package location
    beside_repo = Path(__file__).resolve().parents[3] / "shared" / "data" / "radar"
    if beside_repo.is_dir():
        assert default_radar_root() == beside_repo.resolve()
    monkeypatch.setenv("DACAST_RADAR_ROOT", str(tmp_path))
    assert default_radar_root() == tmp_path.resolve()
    monkeypatch.setenv("DACAST_RADAR_ROOT", str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="DACAST_RADAR_ROOT"):
        default_radar_root()
    monkeypatch.delenv("DACAST_RADAR_ROOT")
    nested = tmp_path / "shared" / "data" / "radar"
    nested.mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "shared")  # found walking up from the current directory first
    assert default_radar_root() == nested.resolve()


def test_sequence_error_carries_the_report(gappy_root: Path) -> None:
    """Nothing readable: the error names the corrupt file and holds the report (also after pickling)."""
    with pytest.raises(SequenceReadError, match="AQC151351555F_00005.801.gif") as err:
        load_sequence("mch", "2015-05-15 15:55", n_frames=2, root=gappy_root)
    report = err.value.report
    assert report.found == () and [u.path.name for u in report.unreadable] == ["AQC151351555F_00005.801.gif"]
    assert report.missing == (T("2015-05-15T16:00", "ns"),)
    again = pickle.loads(pickle.dumps(err.value))
    assert str(again) == str(err.value) and again.report == report
    with pytest.raises(SequenceReadError) as strict:
        load_sequence("mch", "2015-05-15 15:45", n_frames=3, root=gappy_root, strict=True)
    assert strict.value.report.found == (T("2015-05-15T15:45", "ns"), T("2015-05-15T15:50", "ns"))


def test_frame_on_another_grid_is_blamed_even_first(tmp_path: Path, radar_root: Path) -> None:
    """The odd frame out (here the first, its pixel size slightly off) is reported, not the frames after it."""
    names = [f"20160928{hhmm}_fmi.radar.composite.lowest_FIN_SUOMI1.pgm.gz" for hhmm in ("1550", "1555", "1600")]
    folder = tmp_path / "fmi" / "pgm" / "20160928"
    folder.mkdir(parents=True)
    for name in names[1:]:
        _link(tmp_path, radar_root, f"fmi/pgm/20160928/{name}")
    raw = gzip.decompress((radar_root / "fmi/pgm/20160928" / names[0]).read_bytes())
    (folder / names[0]).write_bytes(
        gzip.compress(raw.replace(b"metersperpixel_x 999.674053", b"metersperpixel_x 999.7"))
    )
    assert read_radar(folder / names[0]).x.values[0] != read_radar(folder / names[1]).x.values[0]
    rain, report = load_sequence("fmi", "2016-09-28 15:50", n_frames=3, root=tmp_path)
    assert rain.sizes["time"] == 2 and [p.name for p in report.files] == names[1:]
    (odd,) = report.unreadable
    assert odd.path == folder / names[0] and odd.time == T("2016-09-28T15:50", "ns")
    assert str(odd.path) in odd.error and "differs from the other frames" in odd.error


def test_directory_and_wrong_grid_in_a_sequence(gappy_root: Path) -> None:
    """A folder named like a frame and a GIF on another grid: both unreadable, with their paths."""
    from PIL import Image

    folder = gappy_root / "mch/20150515/AQC151351600F_00005.801.gif"
    folder.mkdir()
    small = gappy_root / "mch/20150515/AQC151351605F_00005.801.gif"
    small.unlink()
    Image.new("P", (71, 64), 3).save(small)
    rain, report = load_sequence("mch", "2015-05-15 15:45", "2015-05-15 16:10", root=gappy_root)
    assert rain.sizes["time"] == 3 and report.missing == ()
    errors = {u.path.name: u.error for u in report.unreadable}
    assert set(errors) == {"AQC151351555F_00005.801.gif", folder.name, small.name}
    assert "is a directory" in errors[folder.name] and str(folder) in errors[folder.name]
    assert "(64, 71)" in errors[small.name] and "(640, 710)" in errors[small.name]
