"""Corrupt radar files of every provider: one typed error naming the file, from the readers up to the CLI.

Real frames are copied into temporary folders and damaged there: truncated, zeroed, overwritten with
random bytes, replaced by another provider's file, an empty file or a folder, an image on another
grid, a field without valid pixels, garbage or NaN values, a header claiming a huge image. Whatever
the damage, ``read_*`` either raises one `RadarReadError` naming the file or returns a well-formed
frame (identical to the original after a truncation); ``load_sequence`` reports the bad file and
accounts for every expected time; ``dacast nowcast run`` exits 2 with one ``error:`` line naming a
bad input file, and 0 naming a bad observed file. The number of examples scales with the Hypothesis
profile's ``max_examples`` (``--hypothesis-profile``); the module ends by printing how many damaged
files of each provider and kind were tried.
"""

from __future__ import annotations

import gzip
import io
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from dacast.cli import app
from dacast.io import SPECS, RadarReadError, SequenceReadError, find_frames, load_sequence
from dacast.io.readers import READERS

PROVIDERS = ("mch", "fmi", "knmi")
T0 = {"mch": "2015-05-15T16:30", "fmi": "2016-09-28T16:00", "knmi": "2010-08-26T05:40"}
STEP = np.timedelta64(5, "m")
COUNTS: Counter[tuple[str, str, str]] = Counter()  # (provider, kind, "rejected" | "accepted") -> files


def _examples(share: float) -> int:
    """A share of the active profile's ``max_examples``, so a longer profile tries more files."""
    return max(2, round(share * settings.default.max_examples))


def _fuzz(share: float) -> settings:
    return settings(
        max_examples=_examples(share),
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


@dataclass(frozen=True)
class Window:
    """Three past frames up to ``t0`` and two observed ones of a provider, as relative paths and bytes."""

    source: str
    t0: np.datetime64
    rel: tuple[Path, ...]
    data: tuple[bytes, ...]
    target: np.ndarray  # the t0 frame as read, for the "identical after truncation" check


@pytest.fixture(scope="module")
def windows(radar_root: Path) -> dict[str, Window]:
    out = {}
    for source in PROVIDERS:
        t0 = np.datetime64(T0[source], "ns")
        frames = find_frames(radar_root, source, t0 - 2 * STEP, t0 + 2 * STEP)
        assert len(frames) == 5, frames
        rel = tuple(f.path.relative_to(radar_root) for f in frames)
        target = READERS[source](frames[2].path).values
        out[source] = Window(source, t0, rel, tuple(f.path.read_bytes() for f in frames), target)
    return out


@pytest.fixture(scope="module", autouse=True)
def corruption_table(request: pytest.FixtureRequest) -> Iterator[Counter[tuple[str, str, str]]]:
    """Print, once the module is done, how many damaged files of each provider and kind were tried."""
    COUNTS.clear()
    yield COUNTS
    kinds = sorted({k for _, k, _ in COUNTS})
    profile = settings.get_current_profile_name()
    lines = ["", f"damaged radar files tried, rejected+accepted (hypothesis profile {profile!r})"]
    lines.append(f"{'kind':<32}" + "".join(f"{p:>12}" for p in PROVIDERS))
    for kind in kinds:
        cells = [f"{COUNTS[p, kind, 'rejected']}+{COUNTS[p, kind, 'accepted']}" for p in PROVIDERS]
        lines.append(f"{kind:<32}" + "".join(f"{c:>12}" for c in cells))
    per_source = [sum(n for (p, _, _), n in COUNTS.items() if p == source) for source in PROVIDERS]
    lines.append(f"{'all kinds':<32}" + "".join(f"{n:>12}" for n in per_source) + f"   total {sum(per_source)}")
    capture = request.config.pluginmanager.getplugin("capturemanager")
    if capture is None:
        print("\n".join(lines))
    else:
        with capture.global_and_fixture_disabled():
            print("\n".join(lines))


def _write(path: Path, content: bytes | None) -> Path:
    """Put ``content`` at ``path`` (a folder when None), replacing whatever is there."""
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    return path


def _check(source: str, kind: str, path: Path, *, rule: str, target: np.ndarray | None = None) -> str:
    """Read ``path``: one `RadarReadError` naming it, or a well-formed frame when ``rule`` allows one.

    ``rule``: ``"error"`` (must be rejected), ``"same"`` (rejected, or identical to ``target``),
    ``"frame"`` (rejected, or a well-formed frame) or ``"accept"`` (a well-formed frame).
    """
    try:
        da = READERS[source](path)
    except RadarReadError as err:
        msg = str(err)
        assert str(path) in msg and "\n" not in msg, msg
        assert rule != "accept", msg
        COUNTS[source, kind, "rejected"] += 1
        return msg
    assert rule != "error", f"{kind}: {path} was read"
    v = da.values
    assert da.shape == SPECS[source].grid_shape and v.dtype == np.float32
    assert not np.isinf(v).any() and np.isfinite(v).any() and (v[np.isfinite(v)] >= 0).all()
    assert np.all(np.diff(da.x.values) > 0) and np.all(np.diff(da.y.values) < 0)
    if rule == "same":
        np.testing.assert_array_equal(v, target)
    COUNTS[source, kind, "accepted"] += 1
    return ""


BYTE_KINDS = ("truncated", "zeroed", "zeroed span", "random bytes", "random header bytes", "random file")


@st.composite
def damaged_bytes(draw: st.DrawFn, data: bytes) -> tuple[str, bytes, str]:
    """``(kind, damaged bytes, rule)`` for a file of bytes ``data``."""
    kind = draw(st.sampled_from(BYTE_KINDS))
    n = len(data)
    if kind == "truncated":
        return kind, data[: draw(st.integers(0, n - 1))], "same"
    if kind == "zeroed":
        return kind, bytes(n), "error"
    if kind == "random file":
        return kind, draw(st.binary(min_size=1, max_size=4096)), "error"
    start = draw(st.integers(0, (min(n, 512) if kind == "random header bytes" else n) - 1))
    patch = bytes(draw(st.integers(1, 4096))) if kind == "zeroed span" else draw(st.binary(min_size=1, max_size=64))
    patch = patch[: n - start]
    return kind, data[:start] + patch + data[start + len(patch) :], "frame"


@pytest.mark.parametrize("source", PROVIDERS)
@_fuzz(1.0)
@given(data=st.data())
def test_damaged_bytes(source: str, data: st.DataObject, windows: dict[str, Window], tmp_path: Path) -> None:
    w = windows[source]
    kind, content, rule = data.draw(damaged_bytes(w.data[2]), label="damage")
    _check(source, kind, _write(tmp_path / w.rel[2].name, content), rule=rule, target=w.target)


def _pgm(original: bytes, shape: tuple[int, int], body: bytes | None = None, **header: str) -> bytes:
    """A gzipped FMI PGM: the real header with another ``shape`` (rows, columns) and header values."""
    raw = gzip.decompress(original)
    end = raw.index(b"\n255\n") + 5
    head = re.sub(rb"\n\d+ \d+\n255\n$", f"\n{shape[1]} {shape[0]}\n255\n".encode(), raw[:end])
    for key, value in header.items():
        line = f"# {key} {value}".encode()
        head = re.sub(rf"# {key} \S+".encode(), lambda _, line=line: line, head)
    return gzip.compress(head + (raw[end:] if body is None else body), compresslevel=1)


def _gif(dn: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(dn.astype(np.uint8), mode="P").save(buf, format="GIF")
    return buf.getvalue()


def _h5(path: Path, original: bytes, pv: np.ndarray | None, attrs: dict[tuple[str, str], object]) -> Path:
    """The real KNMI file at ``path`` with ``image_data`` replaced by ``pv`` and ``(group, attr)`` values set."""
    _write(path, original)
    with h5py.File(path, "r+") as f:
        if pv is not None:
            del f["image1/image_data"]
            f["image1/image_data"] = pv
        for (group, name), value in attrs.items():
            f[group].attrs[name] = value
    return path


def _gif_sizes(gif: bytes) -> list[int]:
    """Offsets of the two (width, height) fields of a GIF: the logical screen and the first image."""
    pos = 13 + (3 << ((gif[10] & 7) + 1) if gif[10] & 0x80 else 0)
    while gif[pos] == 0x21:  # extension blocks (the comment, ...): skip their sub-blocks
        pos += 2
        while gif[pos]:
            pos += gif[pos] + 1
        pos += 1
    assert gif[pos] == 0x2C, "no image descriptor"
    return [6, pos + 5]


CONTENT_KINDS = {
    "mch": ("wrong grid", "no-data field", "garbage values", "huge header size"),
    "fmi": ("wrong grid", "no-data field", "garbage values", "huge header size", "bad metadata"),
    "knmi": ("wrong grid", "no-data field", "garbage values", "NaN values", "bad metadata"),
}
ASCII = st.text(st.characters(codec="ascii", exclude_characters="\x00"), max_size=20)
SHAPES = st.tuples(st.integers(1, 800), st.integers(1, 800))
FLOATS = st.one_of(st.sampled_from([np.nan, np.inf, -1.0, 0.0, 1e300]), st.floats(allow_nan=True))


@pytest.mark.parametrize("source", PROVIDERS)
@_fuzz(1.0)
@given(data=st.data())
def test_damaged_content(source: str, data: st.DataObject, windows: dict[str, Window], tmp_path: Path) -> None:
    """Well-formed files with wrong content: the grid check names both shapes; empty fields are rejected."""
    w, grid = windows[source], SPECS[source].grid_shape
    kind = data.draw(st.sampled_from(CONTENT_KINDS[source]), label="kind")
    path, original, rule = tmp_path / w.rel[2].name, w.data[2], "error"
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    shape = data.draw(SHAPES.filter(lambda s: s != grid), label="shape") if kind == "wrong grid" else grid
    if source == "mch":
        if kind == "huge header size":
            size = data.draw(st.tuples(st.integers(0, 65535), st.integers(0, 65535)).filter(lambda s: s != (710, 640)))
            head = bytearray(original)
            for at in _gif_sizes(original):
                head[at : at + 4] = np.array(size, "<u2").tobytes()
            _write(path, bytes(head))
        else:
            _write(path, _gif(np.full(shape, 255) if kind == "no-data field" else rng.integers(0, 256, shape)))
        rule = "accept" if kind == "garbage values" else "error"
    elif source == "fmi":
        if kind == "huge header size":
            big = data.draw(st.tuples(st.integers(0, 10**9), st.integers(0, 10**9)).filter(lambda s: s != grid))
            _write(path, _pgm(original, big))
        elif kind == "bad metadata":
            value = data.draw(st.one_of(FLOATS.map(str), ASCII).filter(lambda t: t.strip() == t and t))
            _write(path, _pgm(original, grid, metersperpixel_x=value))
            rule = "frame"
        else:
            dn = np.full(shape, 255) if kind == "no-data field" else rng.integers(0, 256, shape)
            _write(path, _pgm(original, shape, dn.astype(np.uint8).tobytes()))
            rule = "accept" if kind == "garbage values" else "error"
    else:
        pv = None
        if kind in ("wrong grid", "no-data field", "garbage values"):
            pv = (
                np.full(shape, 65535, np.uint16)
                if kind == "no-data field"
                else rng.integers(0, 65535, shape, np.uint16)
            )
        elif kind == "NaN values":
            pv = np.where(rng.random(grid) < data.draw(st.floats(0, 1)), np.nan, 1.0).astype(np.float32)
        attrs: dict[tuple[str, str], object] = {}
        if kind == "wrong grid":
            attrs = {("geographic", "geo_number_rows"): np.int32([shape[0]])}
            attrs[("geographic", "geo_number_columns")] = np.int32([shape[1]])
        elif kind == "bad metadata":
            key = data.draw(st.sampled_from(["geo_pixel_size_x", "geo_row_offset", "geo_column_offset", "formula"]))
            if key == "formula":
                attrs = {("image1/calibration", "calibration_formulas"): np.bytes_(data.draw(ASCII).encode())}
            else:
                attrs = {("geographic", key): np.float64([data.draw(FLOATS)])}
            rule = "frame"
        _h5(path, original, pv, attrs)
        rule = "accept" if kind == "garbage values" else rule
    msg = _check(source, kind, path, rule=rule)
    if kind == "wrong grid":
        assert "wrong grid" in msg and str(tuple(shape)) in msg and str(grid) in msg, msg


@pytest.mark.parametrize("source", PROVIDERS)
def test_foreign_and_special_files(source: str, windows: dict[str, Window], tmp_path: Path) -> None:
    """Another provider's file, an uncompressed PGM, a PNG, an empty file, a folder: all rejected by name."""
    w = windows[source]
    path = tmp_path / w.rel[2].name
    for other in PROVIDERS:
        if other != source:
            _check(source, f"{other} file as {source}", _write(path, windows[other].data[2]), rule="error")
    png = io.BytesIO()
    Image.fromarray(np.zeros(SPECS[source].grid_shape, np.uint8)).save(png, format="PNG")
    _check(source, "PNG image", _write(path, png.getvalue()), rule="error")
    _check(source, "uncompressed PGM", _write(path, gzip.decompress(windows["fmi"].data[2])), rule="error")
    _check(source, "empty file", _write(path, b""), rule="error")
    assert "directory" in _check(source, "directory", _write(path, None), rule="error")


def _root(base: Path, w: Window, bad: int | None, content: bytes | None, n: int = 5) -> Path:
    """A radar root holding the first ``n`` frames of ``w``, frame ``bad`` replaced by ``content``."""
    root = Path(tempfile.mkdtemp(dir=base))
    for k in range(n):
        _write(root / w.rel[k], content if k == bad else w.data[k])
    return root


@pytest.mark.parametrize("source", PROVIDERS)
@_fuzz(0.3)
@given(data=st.data())
def test_sequence_names_the_bad_file(
    source: str, data: st.DataObject, windows: dict[str, Window], tmp_path: Path
) -> None:
    """One damaged frame among three: reported with its path and error, every expected time accounted for."""
    w = windows[source]
    bad = data.draw(st.integers(0, 2), label="position")
    folder = st.just(("directory", None, "error"))
    kind, content, _ = data.draw(st.one_of(damaged_bytes(w.data[bad]), folder), label="damage")
    root = _root(tmp_path, w, bad, content, n=3)
    path = root / w.rel[bad]
    rejected = _check(source, f"sequence: {kind}", path, rule="frame") != ""
    rain, report = load_sequence(source, w.t0 - 2 * STEP, w.t0, root=root)
    times = [*report.found, *report.missing, *(u.time for u in report.unreadable)]
    assert sorted(times) == list(report.expected) and len(set(times)) == 3
    assert list(rain.time.values) == list(report.found) and rain.sizes["time"] == len(report.found)
    if not rejected:
        assert report.complete and rain.sizes["time"] == 3
        return
    (unreadable,) = report.unreadable
    assert unreadable.path == path and str(path) in unreadable.error and unreadable.time == report.expected[bad]
    assert not report.complete and str(path) in report.summary() and report.expected[bad] not in report.found
    with pytest.raises(SequenceReadError) as err:
        load_sequence(source, w.t0 - 2 * STEP, w.t0, root=root, strict=True)
    assert str(path) in str(err.value) and err.value.report.unreadable[0].path == path
    shutil.rmtree(root)


runner = CliRunner()


def _nowcast(source: str, w: Window, root: Path, leads: int) -> list[str]:
    args = ["nowcast", "run", "--source", source, "--start", str(w.t0)[:16], "--leads", str(leads)]
    return [*args, "--root", str(root), "--motion", "dis", "--no-plots", "--out", str(root / "out")]


@pytest.mark.parametrize("source", PROVIDERS)
@_fuzz(0.15)
@given(data=st.data())
def test_cli_bad_input_frame(source: str, data: st.DataObject, windows: dict[str, Window], tmp_path: Path) -> None:
    """A damaged past frame: exit 2, exactly one ``error:`` line naming the file, no traceback, nothing written."""
    w = windows[source]
    bad = data.draw(st.integers(0, 2), label="position")
    kind, content, _ = data.draw(damaged_bytes(w.data[bad]), label="damage")
    root = _root(tmp_path, w, bad, content, n=3)
    if _check(source, f"CLI input: {kind}", root / w.rel[bad], rule="frame") == "":
        return  # the damage left a readable frame (e.g. only the GIF trailer cut): nothing to report
    result = runner.invoke(app, _nowcast(source, w, root, 1))
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and str(root / w.rel[bad]) in lines[0], lines
    assert "Traceback" not in result.output and not (root / "out").exists()
    shutil.rmtree(root)


@pytest.mark.parametrize("source", PROVIDERS)
def test_cli_bad_observed_frame(source: str, windows: dict[str, Window], tmp_path: Path) -> None:
    """A truncated observed frame: exit 0, one yellow line naming it; a missing one stays "no observed frame".

    Run, then verify the written nowcast.nc: both name the file. Leads: t0+5 read, t0+10 truncated,
    t0+15 without a file.
    """
    w = windows[source]
    root = _root(tmp_path, w, 4, w.data[4][: len(w.data[4]) // 3])
    path = root / w.rel[4]
    _check(source, "CLI observed: truncated", path, rule="error")
    for args in (_nowcast(source, w, root, 3), ["nowcast", "verify", str(root / "out" / "nowcast.nc"), "--no-plots"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0 and not result.stderr.strip() and "Traceback" not in result.output, result.output
        (line,) = [x for x in result.stdout.splitlines() if "unreadable observed frame" in x]
        assert f"at {str(w.t0 + 2 * STEP)[11:16]} UTC" in line and str(path) in line and "not scored" in line, line
        assert f"no observed frame at {str(w.t0 + 3 * STEP)[11:16]} UTC" in result.stdout, result.stdout
