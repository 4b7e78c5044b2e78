"""Products of the real-time service: PNG colours and orientation, the colour scales' rain rates, issue folders."""

from __future__ import annotations

import io
import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dacast.workflow.realtime.products import (
    DBZ_SCALE,
    INDEX,
    NO_DATA,
    PROBABILITY_SCALE,
    ColourScale,
    amend_issue,
    apply_retention,
    clean_partials,
    issue_name,
    issues_dir,
    list_issues,
    publish_issue,
    rain_rate,
    render_png,
)

T0 = datetime(2026, 7, 1, 0, 0, 30, tzinfo=UTC)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def rgba(colour: str) -> tuple[int, int, int, int]:
    """``#rrggbb`` as an opaque RGBA tuple."""
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16), 255


def decode(png: bytes) -> np.ndarray:
    """The PNG's pixels as ``(rows, columns, 4)`` RGBA, transparency applied."""
    assert png.startswith(PNG_SIGNATURE)
    with Image.open(io.BytesIO(png)) as image:
        image.verify()
    with Image.open(io.BytesIO(png)) as image:
        return np.asarray(image.convert("RGBA"))


def folder_bytes(folder: Path) -> dict[str, bytes]:
    """Every file of ``folder`` by name, with its content."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# ---------------------------------------------------------------------------------------------- render_png


def test_png_is_valid_and_has_the_fields_shape() -> None:
    field = np.linspace(0.0, 70.0, 5 * 7).reshape(5, 7)
    png = render_png(field, DBZ_SCALE)
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG"
        assert image.size == (7, 5)  # (width, height) = (nx, ny)
        assert image.mode == "P"
    assert decode(png).shape == (5, 7, 4)


def test_colours_of_bins_no_data_transparency_and_overflow() -> None:
    levels, colours = DBZ_SCALE.levels, DBZ_SCALE.colours
    field = np.array(
        [
            [levels[0], 12.5, levels[1], np.nan],  # first edge and inside the first bin; second edge; no data
            [levels[0] - 0.01, -30.0, levels[-1], 1e6],  # below the first level (transparent); at/above the top
        ]
    )
    pixels = decode(render_png(field, DBZ_SCALE, north_up=False))
    assert tuple(pixels[0, 0]) == rgba(colours[0])
    assert tuple(pixels[0, 1]) == rgba(colours[0])
    assert tuple(pixels[0, 2]) == rgba(colours[1])
    assert tuple(pixels[0, 3]) == NO_DATA
    assert pixels[1, 0, 3] == 0 and pixels[1, 1, 3] == 0
    assert tuple(pixels[1, 2]) == rgba(colours[-1])
    assert tuple(pixels[1, 3]) == rgba(colours[-1])


def test_every_bin_gets_its_own_colour() -> None:
    levels = np.asarray(DBZ_SCALE.levels)
    centres = 0.5 * (levels[:-1] + levels[1:])
    pixels = decode(render_png(centres[None, :], DBZ_SCALE, north_up=False))
    assert [tuple(p) for p in pixels[0]] == [rgba(c) for c in DBZ_SCALE.colours]


def test_probability_scale_colours() -> None:
    field = np.array([[0.0, 0.05, 0.55, 1.0]])
    pixels = decode(render_png(field, PROBABILITY_SCALE, north_up=False))
    assert pixels[0, 0, 3] == 0
    assert tuple(pixels[0, 1]) == rgba(PROBABILITY_SCALE.colours[0])
    assert tuple(pixels[0, 2]) == rgba(PROBABILITY_SCALE.colours[5])
    assert tuple(pixels[0, 3]) == rgba(PROBABILITY_SCALE.colours[-1])


def test_north_up_puts_the_first_row_at_the_bottom() -> None:
    field = np.full((4, 3), np.nan)
    field[0] = 12.0  # the southernmost row of a model grid
    first = rgba(DBZ_SCALE.colours[0])
    flipped = decode(render_png(field, DBZ_SCALE, north_up=True))
    assert all(tuple(p) == first for p in flipped[-1])
    assert all(tuple(p) == NO_DATA for row in flipped[:-1] for p in row)
    plain = decode(render_png(field, DBZ_SCALE, north_up=False))
    assert all(tuple(p) == first for p in plain[0])
    assert np.array_equal(plain[::-1], flipped)


def test_render_refuses_a_field_that_is_not_2d() -> None:
    with pytest.raises(ValueError, match=r"\(ny, nx\)"):
        render_png(np.zeros((2, 3, 4)), DBZ_SCALE)


# ---------------------------------------------------------------------------------------------- rain rates


def test_marshall_palmer_rain_rate_by_hand() -> None:
    # Z = 200 R^1.6: R = 1 mm/h is Z = 200 mm^6 m^-3, 10 log10(200) = 23.01 dBZ; R = 10 mm/h is 200 * 10^1.6
    assert rain_rate(10.0 * math.log10(200.0)) == pytest.approx(1.0, rel=1e-12)
    assert rain_rate(10.0 * math.log10(200.0 * 10.0**1.6)) == pytest.approx(10.0, rel=1e-12)
    assert rain_rate(23.0) == pytest.approx(1.0, abs=0.01)
    # Z = 316 R^1.5 (zr=(316, 1.5)): R = 1 mm/h at 10 log10(316) = 25.0 dBZ
    assert rain_rate(10.0 * math.log10(316.0), 316.0, 1.5) == pytest.approx(1.0, rel=1e-12)
    assert rain_rate(40.0, 316.0, 1.5) == pytest.approx((1e4 / 316.0) ** (1 / 1.5), rel=1e-12)


@pytest.mark.parametrize("zr", [(200.0, 1.6), (316.0, 1.5)])
def test_scale_json_gives_each_level_in_mm_per_h(zr: tuple[float, float]) -> None:
    data = DBZ_SCALE.to_json(zr=zr)
    assert data["quantity"] == "reflectivity" and data["units"] == "dBZ"
    assert data["levels"] == list(DBZ_SCALE.levels) and data["colours"] == list(DBZ_SCALE.colours)
    a, b = zr
    by_hand = [round((10.0 ** (z / 10.0) / a) ** (1.0 / b), 2) for z in DBZ_SCALE.levels]
    assert data["mm_per_h"] == by_hand
    assert data["mm_per_h"] == [round(rain_rate(z, a, b), 2) for z in DBZ_SCALE.levels]
    assert data["mm_per_h"] == sorted(data["mm_per_h"])
    json.dumps(data, allow_nan=False)


def test_default_scale_json_is_marshall_palmer_and_probability_has_no_rain_rate() -> None:
    assert DBZ_SCALE.to_json() == DBZ_SCALE.to_json(zr=(200.0, 1.6))
    assert DBZ_SCALE.to_json()["mm_per_h"][0] == round(rain_rate(10.0), 2) == 0.15
    assert "mm_per_h" not in PROBABILITY_SCALE.to_json()
    custom = ColourScale(quantity="reflectivity", units="dBZ", levels=(23.0, 30.0), colours=("#000000",))
    assert custom.to_json()["mm_per_h"] == [1.0, round(rain_rate(30.0), 2)]


# ---------------------------------------------------------------------------------------------- issues


def publish(products: Path, t: datetime, marker: bytes = b"a") -> Path | None:
    return publish_issue(products, t, {"forecast_00.png": b"png-" + marker, "observation.png": marker}, {"note": 1})


def test_publish_writes_a_whole_folder_with_its_index(tmp_path: Path) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    folder = publish(tmp_path, T0)
    assert folder == issues_dir(tmp_path) / issue_name(T0) == tmp_path / "issues" / "20260701T000030Z"
    assert sorted(p.name for p in folder.iterdir()) == ["forecast_00.png", INDEX, "observation.png"]
    assert (folder / "forecast_00.png").read_bytes() == b"png-a"
    index = json.loads((folder / INDEX).read_text())
    assert index["note"] == 1 and index["issue_time"] == "2026-07-01T00:00:30Z"
    published = datetime.strptime(index["published"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert before <= published <= datetime.now(UTC)
    assert list_issues(tmp_path) == ["20260701T000030Z"]
    assert [p.name for p in issues_dir(tmp_path).iterdir()] == ["20260701T000030Z"]  # no partial left


def test_a_second_publish_of_the_same_time_keeps_the_first(tmp_path: Path) -> None:
    folder = publish(tmp_path, T0, b"first")
    assert folder is not None
    first = folder_bytes(folder)
    assert publish(tmp_path, T0, b"second") is None
    assert folder_bytes(folder) == first
    assert [p.name for p in issues_dir(tmp_path).iterdir()] == [folder.name]


@pytest.mark.parametrize("bad", ["sub/forecast.png", ".hidden.png"])
def test_a_failing_publish_leaves_nothing(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="bad product file name"):
        publish_issue(tmp_path, T0, {"observation.png": b"x", bad: b"y"}, {})
    assert list(issues_dir(tmp_path).iterdir()) == []
    assert list_issues(tmp_path) == []
    # the time can still be published afterwards
    assert publish(tmp_path, T0) is not None


def test_amend_adds_files_and_merges_the_index_but_never_rewrites_a_file(tmp_path: Path) -> None:
    folder = publish(tmp_path, T0)
    assert folder is not None
    first = folder_bytes(folder)
    update = {"products": {"convlstm": ["convlstm_00.png"]}, "note": 2}
    files = {"convlstm_00.png": b"net", "observation.png": b"would overwrite"}
    assert amend_issue(tmp_path, T0, files, update) == folder
    index = json.loads((folder / INDEX).read_text())
    assert index["note"] == 2 and index["products"] == {"convlstm": ["convlstm_00.png"]} and "amended" in index
    assert (folder / "convlstm_00.png").read_bytes() == b"net"
    assert (folder / "observation.png").read_bytes() == first["observation.png"]  # kept byte for byte
    assert sorted(p.name for p in folder.iterdir()) == ["convlstm_00.png", "forecast_00.png", INDEX, "observation.png"]
    # products are merged kind by kind, in tab order
    amend_issue(tmp_path, T0, {}, {"products": {"forecast": ["forecast_00.png"], "observation": ["observation.png"]}})
    assert list(json.loads((folder / INDEX).read_text())["products"]) == ["observation", "forecast", "convlstm"]
    # an issue that is not published (or was removed by retention) is not created
    assert amend_issue(tmp_path, T0 + timedelta(minutes=5), files, update) is None
    assert list_issues(tmp_path) == [folder.name]
    with pytest.raises(ValueError, match="bad product file name"):
        amend_issue(tmp_path, T0, {"../x.png": b"x"}, {})


def test_list_issues_skips_partials_and_folders_without_index(tmp_path: Path) -> None:
    assert list_issues(tmp_path) == []  # no issues folder yet
    publish(tmp_path, T0 + timedelta(minutes=1))
    publish(tmp_path, T0)
    root = issues_dir(tmp_path)
    partial = root / ".partial-20260701T000200Z-123"
    partial.mkdir()
    (partial / INDEX).write_text("{}")
    (root / "20260701T000300Z").mkdir()  # a folder without index.json
    (root / "notes").mkdir()
    (root / "notes" / INDEX).write_text("{}")  # not an issue name
    assert list_issues(tmp_path) == ["20260701T000030Z", "20260701T000130Z"]


def test_clean_partials_removes_only_partials(tmp_path: Path) -> None:
    assert clean_partials(tmp_path) == 0
    publish(tmp_path, T0)
    root = issues_dir(tmp_path)
    for pid in (11, 12):
        partial = root / f".partial-20260701T000100Z-{pid}"
        partial.mkdir()
        (partial / "forecast_00.png").write_bytes(b"half")
    assert clean_partials(tmp_path) == 2
    assert sorted(p.name for p in root.iterdir()) == ["20260701T000030Z"]
    assert list_issues(tmp_path) == ["20260701T000030Z"]
    assert clean_partials(tmp_path) == 0


def test_retention_removes_only_issues_older_than_the_window_before_the_newest(tmp_path: Path) -> None:
    assert apply_retention(tmp_path, 1.0) == []
    times = [T0, T0 + timedelta(minutes=30), T0 + timedelta(hours=1), T0 + timedelta(hours=2)]
    for t in times:
        publish(tmp_path, t)
    names = [issue_name(t) for t in times]
    # the newest is T0 + 2 h: the cutoff of 1 h is T0 + 1 h, itself kept
    assert apply_retention(tmp_path, 1.0) == names[:2]
    assert list_issues(tmp_path) == names[2:]
    assert sorted(p.name for p in issues_dir(tmp_path).iterdir()) == names[2:]
    assert apply_retention(tmp_path, 1.0) == []
    assert apply_retention(tmp_path, 0.5) == names[2:3]
    assert list_issues(tmp_path) == names[3:]
