"""Radar readers against the README's conversions, recomputed from raw pixels of the real files."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from dacast.io import RadarReadError, read_fmi_pgm, read_knmi_hdf5, read_mch_gif, read_radar

# Strings copied from shared/data/radar/README.md.
README_PROJ = {
    "mch": "+proj=somerc +lon_0=7.43958333333333 +lat_0=46.9524055555556 +k_0=1 +x_0=600000 +y_0=200000 "
    "+ellps=bessel +towgs84=674.374,15.056,405.346,0,0,0,0 +units=m +no_defs",
    "fmi": "+proj=stere +lon_0=25E +lat_0=90N +lat_ts=60 +a=6371288 +x_0=380886.310 +y_0=3395677.920 +no_defs",
    "knmi": "+proj=stere +lat_0=90 +lon_0=0.0 +lat_ts=60.0 +a=6378.137 +b=6356.752 +x_0=0 +y_0=0",
}
README_ZR = {"mch": (316.0, 1.5), "fmi": (223.0, 1.53), "knmi": (200.0, 1.6)}
README_ATTRIBUTION = {
    "mch": "MeteoSwiss, via pySTEPS/pysteps-data",
    "fmi": "Radar data: Finnish Meteorological Institute (FMI), via pySTEPS/pysteps-data",
    "knmi": "Radar data: Royal Netherlands Meteorological Institute (KNMI), via pySTEPS/pysteps-data",
}


def _raw_mch(path: Path) -> np.ndarray:
    dn = np.array(Image.open(path)).astype(np.float64)
    rain = 12.0 * (10.0 ** ((dn - 71.5) / 20.0) / 316.0) ** (1.0 / 1.5)
    rain[np.isin(dn, [0, 1, 251, 252, 253, 254])] = 0.0
    rain[dn == 255] = np.nan
    return rain


def _raw_fmi(path: Path) -> np.ndarray:
    dn = np.array(Image.open(gzip.open(path))).astype(np.float64)
    dbz = (dn - 64.0) / 2.0
    rain = (10.0 ** (dbz / 10.0) / 223.0) ** (1.0 / 1.53)
    rain[dn == 0] = 0.0
    rain[dn == 255] = np.nan
    return rain


def _raw_knmi(path: Path) -> np.ndarray:
    with h5py.File(path, "r") as f:
        pv = f["image1/image_data"][()].astype(np.float64)
    return np.where(pv == 65535, np.nan, 12.0 * 0.01 * pv)


@pytest.mark.parametrize(
    ("source", "reader", "raw", "shape", "when"),
    [
        ("mch", read_mch_gif, _raw_mch, (640, 710), "2015-05-15T15:50"),
        ("fmi", read_fmi_pgm, _raw_fmi, (1226, 760), "2016-09-28T16:00"),
        ("knmi", read_knmi_hdf5, _raw_knmi, (765, 700), "2010-08-26T05:40"),
    ],
)
def test_reader_matches_readme_conversion(source, reader, raw, shape, when, request) -> None:
    path = request.getfixturevalue(f"{source}_file")
    da = reader(path)
    expected = raw(path)
    assert da.name == "rain_rate" and da.dims == ("y", "x") and da.shape == shape
    assert da.dtype == np.float32
    np.testing.assert_array_equal(np.isnan(da.values), np.isnan(expected))
    np.testing.assert_allclose(da.values, expected, rtol=1e-6, atol=0, equal_nan=True)
    assert da.time.values == np.datetime64(when, "ns") and da.time.dtype == "datetime64[ns]"
    assert da.attrs["units"] == "mm/h" and da.attrs["source"] == source
    assert da.attrs["projection"] == README_PROJ[source]
    assert (da.attrs["zr_a"], da.attrs["zr_b"]) == README_ZR[source]
    assert README_ATTRIBUTION[source] in da.attrs["attribution"]
    assert da.attrs["filename"] == str(path) and da.attrs["institution"]
    assert np.all(np.diff(da.x.values) > 0) and np.all(np.diff(da.y.values) < 0)  # row 0 = north
    assert da.x.ndim == da.y.ndim == 1
    assert 999.0 < da.attrs["pixel_size_m"] <= 1000.0
    xr_ = read_radar(path)
    assert xr_.identical(da)


def test_grid_coordinates_match_readme(mch_file: Path, fmi_file: Path, knmi_file: Path) -> None:
    """Cell centres half a pixel inside the README's domain edges."""
    mch, fmi, knmi = read_mch_gif(mch_file), read_fmi_pgm(fmi_file), read_knmi_hdf5(knmi_file)
    np.testing.assert_array_equal(mch.x.values[[0, -1]], [255_500.0, 964_500.0])
    np.testing.assert_array_equal(mch.y.values[[0, -1]], [479_500.0, -159_500.0])
    np.testing.assert_allclose(fmi.x.values[[0, -1]] + [-500, 500], [0.0, 759_752.0], atol=1.0)
    np.testing.assert_allclose(fmi.y.values[[0, -1]] + [500, -500], [1_225_545.0, 0.0], atol=1.0)
    assert knmi.attrs["xy_units"] == "km" and knmi.x.attrs["units"] == "km"
    np.testing.assert_array_equal(knmi.x.values[[0, -1]], [0.5, 699.5])
    np.testing.assert_array_equal(knmi.y.values[[0, -1]], [-3650.5, -4414.5])


def test_knmi_time_is_end_of_accumulation(knmi_file: Path) -> None:
    with h5py.File(knmi_file, "r") as f:
        end = f["overview"].attrs["product_datetime_end"][0].decode()
    assert end == "26-AUG-2010;05:40:00.000"
    assert read_knmi_hdf5(knmi_file).time.values == np.datetime64("2010-08-26T05:40", "ns")


# README per-event table: (folder glob, frames, valid %, wet >0.1 %, >=1 %, >=5 %, max mm/h).
# The mch 2016-07-11 row covers the 39 frames pysteps reads (20:45-23:55).
README_EVENTS = [
    ("mch/20150515/*.gif", 40, 69.1, 17.1, 8.44, 1.29, 115.5),
    ("mch/20160711/AQC16193*.gif", 39, 70.4, 13.2, 8.31, 1.99, 115.5),
    ("fmi/pgm/20160928/*.pgm.gz", 40, 75.7, 30.3, 7.80, 0.25, 167.2),
    ("KNMI/2010/08/*.h5", 92, 25.6, 52.8, 11.74, 0.37, 29.4),
]


@pytest.mark.parametrize("row", README_EVENTS, ids=lambda r: r[0].split("/")[0] + r[0].split("/")[-2])
def test_event_statistics_match_readme_table(row, radar_root: Path) -> None:
    pattern, n, valid, wet, ge1, ge5, vmax = row
    files = sorted(radar_root.glob(pattern))
    assert len(files) == n
    rain = np.stack([read_radar(f).values for f in files])
    ok = np.isfinite(rain)
    v = rain[ok]
    got = [100 * ok.mean(), 100 * (v > 0.1).mean(), 100 * (v >= 1).mean(), 100 * (v >= 5).mean()]
    # Each figure as printed in the README, so within half its last digit.
    tol = np.array([0.05, 0.05, 0.005, 0.005])
    assert np.all(np.abs(np.array(got) - [valid, wet, ge1, ge5]) <= tol), (got, [valid, wet, ge1, ge5])
    assert abs(float(v.max()) - vmax) <= 0.05
    assert float(v.min()) == 0.0


def test_single_frame_valid_fraction_and_max(mch_file: Path, knmi_file: Path, radar_root: Path) -> None:
    """A few frames: KNMI's valid area is fixed; MCH's 15:50 frame holds the 115.5 mm/h ceiling."""
    assert abs(np.isfinite(read_knmi_hdf5(knmi_file).values).mean() - 0.256) < 0.001
    mch = read_mch_gif(mch_file)
    assert abs(float(mch.max()) - 115.5) < 0.05
    other = read_mch_gif(radar_root / "mch" / "20150515" / "AQC151351630F_00005.801.gif")
    assert abs(np.isfinite(other.values).mean() - 0.691) < 0.005
    assert 0.66 < np.isfinite(mch.values).mean() < 0.67  # this frame lacks some coverage


PYSTEPS_IMPORTERS = {
    "mch": ("import_mch_gif", {"product": "AQC", "unit": "mm", "accutime": 5}),
    "fmi": ("import_fmi_pgm", {"gzipped": True}),
    "knmi": ("import_knmi_hdf5", {"accutime": 5, "qty": "ACRR", "pixelsize": 1000.0}),
}


@pytest.mark.parametrize("source", ["mch", "fmi", "knmi"])
def test_matches_pysteps(source: str, request) -> None:
    """Cross-check with pysteps' importer + to_rainrate where the bench extra is installed."""
    pysteps_io = pytest.importorskip("pysteps.io")
    from pysteps.utils import conversion

    path = request.getfixturevalue(f"{source}_file")
    if source == "fmi" and not pysteps_io.importers.PYPROJ_IMPORTED:
        # import_fmi_pgm needs pyproj only for georeferencing: redo its pixel steps and
        # metadata (with pysteps' own threshold rule), then pysteps' to_rainrate.
        dn = np.array(Image.open(gzip.open(path)))
        dbz = np.where(dn == 255, np.nan, (dn.astype(float) - 64.0) / 2.0)
        metadata = {
            "unit": "dBZ",
            "transform": "dB",
            "accutime": 5.0,
            "zerovalue": np.nanmin(dbz),
            "threshold": pysteps_io.importers._get_threshold_value(dbz),
            "zr_a": 223.0,
            "zr_b": 1.53,
        }
        out = (dbz, metadata)
    else:
        name, kwargs = PYSTEPS_IMPORTERS[source]
        out = getattr(pysteps_io, name)(str(path), **kwargs)
    ref, _ = conversion.to_rainrate(out[0], out[-1])
    np.testing.assert_allclose(read_radar(path).values, ref, rtol=1e-6, atol=1e-12, equal_nan=True)
    assert np.array_equal(read_radar(path).values == 0, ref == 0)


def test_time_override_for_renamed_file(tmp_path: Path, mch_file: Path) -> None:
    renamed = tmp_path / "frame.gif"
    shutil.copyfile(mch_file, renamed)
    with pytest.raises(RadarReadError, match="frame.gif"):
        read_mch_gif(renamed)
    da = read_mch_gif(renamed, time="2015-05-15T15:50")
    np.testing.assert_array_equal(da.values, read_mch_gif(mch_file).values)


def _assert_one_line(exc: pytest.ExceptionInfo[RadarReadError], name: str) -> None:
    msg = str(exc.value)
    assert "\n" not in msg and name in msg
    assert isinstance(exc.value, ValueError)


@pytest.mark.parametrize(
    "name",
    [
        "AQC151351545F_00005.801.gif",
        "201609281445_fmi.radar.composite.lowest_FIN_SUOMI1.pgm.gz",
        "RAD_NL25_RAP_5min_201008260000.h5",
    ],
)
@pytest.mark.parametrize("content", [b"", b"garbage, not radar data\n" * 10])
def test_corrupt_files_raise_radar_read_error(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(RadarReadError) as exc:
        read_radar(path)
    _assert_one_line(exc, name)


@pytest.mark.parametrize("source", ["mch", "fmi", "knmi"])
def test_truncated_files_raise_radar_read_error(tmp_path: Path, source: str, request) -> None:
    real: Path = request.getfixturevalue(f"{source}_file")
    path = tmp_path / real.name
    data = real.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(RadarReadError) as exc:
        read_radar(path)
    _assert_one_line(exc, real.name)


def test_bad_paths_raise_radar_read_error(tmp_path: Path, mch_file: Path) -> None:
    with pytest.raises(RadarReadError) as exc:
        read_radar(tmp_path / "AQC151351545F_00005.801.gif")
    _assert_one_line(exc, "AQC151351545F_00005.801.gif")
    unknown = tmp_path / "radar.png"
    unknown.write_bytes(b"x")
    with pytest.raises(RadarReadError, match="unknown radar file name") as exc:
        read_radar(unknown)
    _assert_one_line(exc, "radar.png")
    with pytest.raises(RadarReadError, match="does not match the fmi pattern"):
        read_fmi_pgm(mch_file)
    # A GIF that is not the CCS4 grid.
    small = tmp_path / "AQC151351545F_00005.801.gif"
    Image.new("P", (10, 10)).save(small)
    with pytest.raises(RadarReadError, match="CCS4"):
        read_mch_gif(small)


def _pgm_gz(original: Path, old: bytes, new: bytes) -> bytes:
    """The FMI file's bytes with one header text replaced."""
    raw = gzip.decompress(original.read_bytes())
    assert raw.count(old) == 1
    return gzip.compress(raw.replace(old, new), compresslevel=1)


def test_wrong_grid_names_the_file_and_both_shapes(tmp_path: Path, fmi_file: Path, knmi_file: Path) -> None:
    fmi = tmp_path / fmi_file.name
    fmi.write_bytes(_pgm_gz(fmi_file, b"\n760 1226\n255\n", b"\n10 20\n255\n"))
    with pytest.raises(RadarReadError, match=r"wrong grid: shape \(20, 10\) is not the fmi .* \(1226, 760\)") as exc:
        read_fmi_pgm(fmi)
    _assert_one_line(exc, str(fmi))
    fmi.write_bytes(_pgm_gz(fmi_file, b"metersperpixel_x 999.674053", b"metersperpixel_x 500"))
    with pytest.raises(RadarReadError, match="wrong grid: pixel size 500 x 999.629 m"):
        read_fmi_pgm(fmi)
    knmi = tmp_path / knmi_file.name
    shutil.copyfile(knmi_file, knmi)
    with h5py.File(knmi, "r+") as f:
        f["geographic"].attrs["geo_row_offset"] = np.float32([3000.0])
    with pytest.raises(RadarReadError, match=r"wrong grid: .*\(0.0, -3000.0, 1.0, -1.0\) km .* NL25") as exc:
        read_knmi_hdf5(knmi)
    _assert_one_line(exc, str(knmi))
    with h5py.File(knmi, "r+") as f:
        del f["image1/image_data"]
        f["image1/image_data"] = np.zeros((765, 699), np.uint16)
    with pytest.raises(RadarReadError, match=r"shape \(765, 699\) is not the knmi NL25 grid \(765, 700\)"):
        read_knmi_hdf5(knmi)


def test_field_without_valid_pixel_is_an_error(tmp_path: Path, knmi_file: Path) -> None:
    gif = tmp_path / "AQC151351545F_00005.801.gif"
    Image.new("P", (710, 640), 255).save(gif)
    with pytest.raises(RadarReadError, match="no valid pixel") as exc:
        read_mch_gif(gif)
    _assert_one_line(exc, str(gif))
    knmi = tmp_path / knmi_file.name
    shutil.copyfile(knmi_file, knmi)
    with h5py.File(knmi, "r+") as f:
        f["image1/image_data"][...] = 65535
    with pytest.raises(RadarReadError, match="no valid pixel"):
        read_knmi_hdf5(knmi)


def test_huge_size_in_a_header_is_an_error(tmp_path: Path, mch_file: Path, fmi_file: Path) -> None:
    """A corrupt size field must not reach Pillow's decompression-bomb error or a huge allocation."""
    gif = tmp_path / mch_file.name
    data = bytearray(mch_file.read_bytes())
    data[6:10] = b"\xff\xff\xff\xff"  # logical screen 65535 x 65535
    gif.write_bytes(bytes(data))
    with pytest.raises(RadarReadError) as exc:
        read_mch_gif(gif)
    _assert_one_line(exc, str(gif))
    fmi = tmp_path / fmi_file.name
    fmi.write_bytes(_pgm_gz(fmi_file, b"\n760 1226\n255\n", b"\n900000000 900000000\n255\n"))
    with pytest.raises(RadarReadError, match=r"wrong grid: shape \(900000000, 900000000\)"):
        read_fmi_pgm(fmi)


def test_directory_in_place_of_a_file(tmp_path: Path) -> None:
    folder = tmp_path / "RAD_NL25_RAP_5min_201008260000.h5"
    folder.mkdir()
    with pytest.raises(RadarReadError, match="is a directory, not a file") as exc:
        read_radar(folder)
    _assert_one_line(exc, str(folder))
