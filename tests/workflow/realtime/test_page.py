"""The real-time page in a headless Chromium: images on every tab, animation, live updates, the status badge.

Needs Debian's Chromium at `CHROMIUM` (Playwright drives it; its own browser download is not used). A
missing browser fails the tests with the command that installs it: they are never skipped silently.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, expect, sync_playwright

from dacast.workflow.realtime.products import (
    DBZ_SCALE,
    KINDS,
    PROBABILITY_SCALE,
    amend_issue,
    frame_names,
    index_products,
    iso,
    issue_name,
    publish_issue,
    render_png,
    write_status,
)
from dacast.workflow.realtime.server import running_server

CHROMIUM = Path("/usr/bin/chromium")
T0 = datetime(2026, 7, 1, 0, 0, 30, tzinfo=UTC)
FRAMES = 5
#: The shown image's RGBA pixels as a flat list (null until it is loaded), read back through a canvas.
PIXELS = """() => {
  const img = document.getElementById("product");
  if (!img.complete || img.naturalWidth === 0) return null;
  const canvas = document.createElement("canvas");
  canvas.width = img.naturalWidth;
  canvas.height = img.naturalHeight;
  const g = canvas.getContext("2d");
  g.drawImage(img, 0, 0);
  return Array.from(g.getImageData(0, 0, canvas.width, canvas.height).data);
}"""


def publish(products: Path, t: datetime, *, mode: str = "bda") -> dict[str, bytes]:
    """A synthetic 64x64 issue at ``t`` (Gaussian rain cells moving east); its files. Nowcasts (``replay``) have
    no analysis (and the ConvLSTM joins them later: `amend`)."""
    y, x = np.mgrid[0:64, 0:64]

    def cell(cx: float, peak: float) -> np.ndarray:
        return peak * np.exp(-((x - cx) ** 2 + (y - 30) ** 2) / 120.0) + 20.0 * np.exp(-((x - 50) ** 2) / 40.0)

    fields = [cell(16 + 4 * k, 55.0) for k in range(FRAMES)]
    files = {
        "observation.png": render_png(cell(14, 50.0), DBZ_SCALE),
        "verification.png": render_png(fields[2], DBZ_SCALE),
    }
    files |= dict(zip(frame_names("forecast", FRAMES), (render_png(f, DBZ_SCALE) for f in fields), strict=True))
    probability = (render_png(np.clip(f / 50.0, 0, 1), PROBABILITY_SCALE) for f in fields)
    files |= dict(zip(frame_names("probability", FRAMES), probability, strict=True))
    if mode == "bda":
        files["analysis.png"] = render_png(cell(15, 52.0), DBZ_SCALE)
    kinds = {k: sorted(f for f in files if f.startswith(k)) for k in KINDS}
    leads = list(range(FRAMES))
    index = {
        "mode": mode,
        "title": f"{mode} test 64x64",
        "grid": {"ny": 64, "nx": 64, "dx_km": 0.5},
        "lead_minutes": leads,
        "valid_times": [iso(t + timedelta(minutes=m)) for m in leads],
        "products": index_products({k: v for k, v in kinds.items() if v}),
        "scales": dict.fromkeys(("observation", "analysis", "forecast"), DBZ_SCALE.to_json())
        | {"probability": PROBABILITY_SCALE.to_json()},
        "flags": {"analysis": mode == "bda", "missing_volume": False, "late": False, "skipped_before": 0},
        "timing": {"arrival": iso(t), "latency_s": 1.5, "seconds_forecast": 0.3, "seconds_products": 0.1},
        "verification": {
            "threshold": 30.0,
            "units": "dBZ",
            "lead_minutes": leads,
            "csi": {"forecast": [0.9, 0.8, 0.7, 0.6, 0.5], "persistence": [0.9, 0.7, 0.5, 0.3, 0.2]},
            "fss": None,
            "pairs": [],
        },
        "notes": [f"synthetic {mode} issue"],
    }
    assert publish_issue(products, t, files, index) is not None
    return files


def status(
    products: Path, t: datetime, *, rejected: int = 0, events: list[dict[str, Any]] | None = None, revision: int = 0
) -> None:
    """A running service whose latest issue ``t`` was published a second ago (and amended ``revision`` times)."""
    now = time.time()
    counts = dict.fromkeys(("issues", "analyses", "forecast_only", "skipped", "late", "restarts"), 0)
    write_status(
        products,
        {
            "mode": "bda",
            "title": "bda test 64x64",
            "state": "running",
            "started": iso(T0),
            "updated_wall": now,
            "cycle_wall_seconds": 30.0,
            "latest_issue": issue_name(t),
            "latest_issue_time": iso(t),
            "latest_published_wall": now - 1.0,
            "latest_revision": revision,
            "counts": counts | {"rejected": rejected},
            "latency_s": {"last": 1.5, "p50": 1.5, "p95": 1.5, "n": 1},
            "events": events or [],
        },
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the module."""
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: the page tests need Debian's Chromium (apt-get install chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM))
        yield browser
        browser.close()


@pytest.fixture
def products(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    """A products folder with one BDA issue at `T0` and a running status; the issue's files."""
    root = tmp_path / "products"
    files = publish(root, T0)
    status(root, T0)
    return root, files


@pytest.fixture
def page(browser: Browser, products: tuple[Path, dict[str, bytes]]) -> Iterator[tuple[Page, list[str]]]:
    """The page, open on a live server of `products`, with the list of its problems (errors, failed requests)."""
    problems: list[str] = []
    with running_server(products[0]) as url:
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        page = context.new_page()
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: problems.append(f"failed: {r.url} {r.failure}"))
        page.on("response", lambda r: problems.append(f"{r.status}: {r.url}") if r.status >= 400 else None)
        page.goto(url, wait_until="domcontentloaded")
        expect(page.locator("#issue-time")).to_have_text("2026-07-01 00:00:30 UTC", timeout=5000)
        expect(page.locator("html")).to_have_attribute("data-frames", issue_name(T0))  # all frames preloaded
        yield page, problems
        context.close()


def shown_pixels(page: Page, timeout_s: float = 5.0) -> np.ndarray:
    """The RGBA pixels ``(ny, nx, 4)`` of the image on show, once it is loaded."""
    deadline = time.monotonic() + timeout_s
    while (data := page.evaluate(PIXELS)) is None:
        assert time.monotonic() < deadline, "the product image did not load"
        time.sleep(0.05)
    size = page.evaluate(
        "() => [document.getElementById('product').naturalHeight, document.getElementById('product').naturalWidth]"
    )
    return np.asarray(data, dtype=np.uint8).reshape(size[0], size[1], 4)


def png_pixels(data: bytes) -> np.ndarray:
    """The RGBA pixels ``(ny, nx, 4)`` of a PNG file's bytes."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGBA"))


def test_page_loads_without_errors(page: tuple[Page, list[str]]) -> None:
    p, problems = page
    expect(p.locator("#badge")).to_have_class("ok", timeout=3000)
    expect(p.locator("#badge")).to_contain_text("running · last cycle 00:00:30Z · lag")
    assert p.locator("#legend .legend-item").count() == len(DBZ_SCALE.colours)
    assert "0.15" in p.locator("#legend").inner_text()  # mm/h under 10 dBZ
    assert "1.5 s" in p.locator("#timing").inner_text() and "synthetic bda" in p.locator("#notes").inner_text()
    assert not problems, problems


def test_every_tab_shows_its_image(page: tuple[Page, list[str]], products: tuple[Path, dict[str, bytes]]) -> None:
    p, problems = page
    files = products[1]
    for kind in (k for k in KINDS if k != "convlstm"):  # the ConvLSTM: nowcast mode only (below)
        p.locator(f'#tabs [data-tab="{kind}"]').click()
        name = (
            "forecast_00.png"
            if kind == "forecast"
            else "probability_00.png"
            if kind == "probability"
            else f"{kind}.png"
        )
        expect(p.locator("#product")).to_have_attribute("src", re.compile(f"/{name}$"))
        pixels = shown_pixels(p)
        assert len(np.unique(pixels.reshape(-1, 4), axis=0)) > 3, kind
        np.testing.assert_array_equal(pixels, png_pixels(files[name]), err_msg=kind)
    assert p.locator("#verification-table tr").count() == 1 + FRAMES  # a header and one row per lead
    p.locator('#tabs [data-tab="probability"]').click()
    expect(p.locator("#legend")).to_contain_text("90%")
    assert not problems, problems


def test_animation_changes_the_frame(page: tuple[Page, list[str]]) -> None:
    p, problems = page
    p.locator('#tabs [data-tab="forecast"]').click()
    image, label = p.locator("#product"), p.locator("#frame-label")
    expect(label).to_have_text("+0 min · valid 00:00:30Z")
    p.locator("#slider").fill("3")
    expect(image).to_have_attribute("src", re.compile("/forecast_03.png$"))
    expect(label).to_have_text("+3 min · valid 00:03:30Z")
    p.locator("#play").click()
    expect(image).to_have_attribute("src", re.compile("/forecast_04.png$"), timeout=3000)
    expect(image).to_have_attribute("src", re.compile("/forecast_00.png$"), timeout=5000)
    expect(label).to_have_text("+0 min · valid 00:00:30Z")
    assert not problems, problems


def test_a_new_issue_replaces_the_shown_one(
    page: tuple[Page, list[str]], products: tuple[Path, dict[str, bytes]]
) -> None:
    p, problems = page
    root = products[0]
    p.locator('#tabs [data-tab="forecast"]').click()
    p.locator("#play").click()
    t1 = T0 + timedelta(seconds=30)
    publish(root, t1, mode="replay")
    status(root, t1)
    start = time.monotonic()
    expect(p.locator("#issue-time")).to_have_text("2026-07-01 00:01:00 UTC", timeout=5000)
    assert time.monotonic() - start < 5.0
    expect(p.locator("html")).to_have_attribute("data-frames", issue_name(t1))
    expect(p.locator("#product")).to_have_attribute("src", re.compile(f"/{issue_name(t1)}/forecast_0"))
    expect(p.locator("#play")).to_contain_text("Pause")  # still playing, on the same tab
    analysis = p.locator('#tabs [data-tab="analysis"]')
    expect(analysis).to_be_disabled()
    assert "nowcast" in (analysis.get_attribute("title") or "")
    assert not problems, problems


def test_the_convlstm_tab_appears_when_the_issue_is_amended(
    page: tuple[Page, list[str]], products: tuple[Path, dict[str, bytes]]
) -> None:
    p, problems = page
    root, t1 = products[0], T0 + timedelta(seconds=30)
    publish(root, t1, mode="replay")
    status(root, t1)
    expect(p.locator("#issue-time")).to_have_text("2026-07-01 00:01:00 UTC", timeout=5000)
    tab = p.locator('#tabs [data-tab="convlstm"]')
    expect(tab).to_be_disabled()
    assert "not ready" in (tab.get_attribute("title") or "")
    y, x = np.mgrid[0:64, 0:64]
    names = frame_names("convlstm", FRAMES)
    files = {n: render_png(50.0 * np.exp(-((x - 20 - 5 * k) ** 2 + (y - 20) ** 2) / 90.0), DBZ_SCALE)
             for k, n in enumerate(names)}  # fmt: skip
    verification = {
        "threshold": 1.0, "units": "mm/h", "lead_minutes": list(range(FRAMES)), "pairs": [],
        "csi": {"forecast": [0.9] * FRAMES, "convlstm": [0.95] * FRAMES, "persistence": [0.5] * FRAMES},
        "fss": {"forecast": [0.8] * FRAMES, "convlstm": [0.85] * FRAMES, "persistence": [0.4] * FRAMES},
    }  # fmt: skip
    update = {"products": {"convlstm": names}, "scales": {"convlstm": DBZ_SCALE.to_json()}}
    assert amend_issue(root, t1, files, update | {"verification": verification}) is not None
    status(root, t1, revision=1)  # the same issue, amended: the page reloads it
    expect(tab).to_be_enabled(timeout=5000)
    tab.click()
    expect(p.locator("#animation")).to_be_visible()
    p.locator("#slider").fill("2")
    expect(p.locator("#product")).to_have_attribute("src", re.compile("/convlstm_02.png$"))
    np.testing.assert_array_equal(shown_pixels(p), png_pixels(files["convlstm_02.png"]))
    p.locator('#tabs [data-tab="verification"]').click()
    head = p.locator("#verification-table tr").first.inner_text()
    assert "CSI ConvLSTM" in head and "FSS ConvLSTM" in head and "CSI extr" in head
    assert not problems, problems


def test_a_rejected_volume_shows_on_the_badge(
    page: tuple[Page, list[str]], products: tuple[Path, dict[str, bytes]]
) -> None:
    p, problems = page
    event = {"wall": time.time(), "kind": "rejected", "message": "reflectivity has NaN", "file": "vol_000100.nc"}
    status(products[0], T0, rejected=1, events=[event])
    badge = p.locator("#badge")
    expect(badge).to_contain_text("rejected 1", timeout=5000)
    expect(badge).to_have_class("warn")
    expect(p.locator("#events-panel")).to_be_hidden()
    badge.click()
    expect(p.locator("#events")).to_contain_text("reflectivity has NaN")
    expect(p.locator("#events")).to_contain_text("vol_000100.nc")
    assert not problems, problems


def test_the_3d_view_shows_the_reflectivity_as_relief(page: tuple[Page, list[str]]) -> None:
    p, problems = page
    canvas, toggle = p.locator("#view3d"), p.locator("#toggle3d")
    p.locator('#tabs [data-tab="forecast"]').click()
    expect(toggle).to_be_enabled()
    toggle.click()
    expect(canvas).to_be_visible()
    expect(p.locator("#product")).to_be_hidden()

    def colours() -> tuple[bytes, set[tuple[int, int, int]]]:
        data = p.evaluate(
            "() => Array.from(document.getElementById('view3d').getContext('2d').getImageData(0, 0, 512, 512).data)"
        )
        rgb = np.asarray(data, dtype=np.uint8).reshape(-1, 4)[:, :3]
        return rgb.tobytes(), {tuple(int(v) for v in c) for c in np.unique(rgb, axis=0)}

    first, seen = colours()
    palette = {tuple(int(c[i : i + 2], 16) for i in (1, 3, 5)) for c in DBZ_SCALE.colours}
    assert len(seen & palette) >= 4  # the tops of the columns, in the legend's colours
    p.locator("#slider").fill("3")  # the cell moves east: another relief
    expect(p.locator("#product")).to_have_attribute("src", re.compile("/forecast_03.png$"))
    deadline = time.monotonic() + 5
    while colours()[0] == first:
        assert time.monotonic() < deadline, "the 3-D view did not follow the frame"
        time.sleep(0.05)
    p.locator('#tabs [data-tab="probability"]').click()  # not reflectivity: the flat image, no 3-D
    expect(toggle).to_be_disabled()
    expect(canvas).to_be_hidden()
    expect(p.locator("#product")).to_be_visible()
    p.locator('#tabs [data-tab="observation"]').click()  # back on reflectivity: still in 3-D
    expect(canvas).to_be_visible()
    assert not problems, problems
