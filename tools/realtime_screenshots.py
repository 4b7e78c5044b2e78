"""Screenshots of the real-time page, one per tab, with Playwright and the system's Chromium.

Usage (against a running ``dacast`` real-time server)::

    python3 tools/realtime_screenshots.py http://127.0.0.1:8000 OUTDIR

writes ``OUTDIR/realtime_observation.png`` ... ``OUTDIR/realtime_verification.png`` (1280x800);
a tab that the current issue lacks (e.g. the analysis in nowcast mode) is shot as it is shown,
disabled, and named in the summary. Exit status 1 when the page shows no issue within the timeout.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

KINDS = ("observation", "analysis", "forecast", "probability", "verification")
CHROMIUM = "/usr/bin/chromium"
#: True once the shown image is in (the page's policy forbids `wait_for_function`'s string evaluation).
LOADED = "() => { const i = document.querySelector('#product'); return i.complete && i.naturalWidth > 0; }"


def wait_for(page: Page, script: str, timeout_s: float) -> None:
    """Poll ``script`` (a JavaScript function) in ``page`` until it returns true; TimeoutError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(script):
        if time.monotonic() > deadline:
            raise TimeoutError(f"page: {script} still false after {timeout_s} s")
        time.sleep(0.05)


def screenshots(url: str, outdir: Path, *, timeout_s: float = 15.0, chromium: str = CHROMIUM) -> list[Path]:
    """Open ``url``, wait for its first issue, and save one screenshot per tab into ``outdir``; the files."""
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(url, wait_until="domcontentloaded")
            wait_for(page, "() => Boolean(document.querySelector('#product').getAttribute('src'))", timeout_s)
            for kind in KINDS:
                tab = page.locator(f'#tabs [data-tab="{kind}"]')
                if tab.is_enabled():
                    tab.click()
                    wait_for(page, LOADED, timeout_s)
                else:
                    print(f"{kind}: not in this issue ({tab.get_attribute('title')})")
                path = outdir / f"realtime_{kind}.png"
                page.screenshot(path=str(path))
                written.append(path)
        finally:
            browser.close()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="the page, e.g. http://127.0.0.1:8000")
    parser.add_argument("outdir", type=Path, help="folder for realtime_<tab>.png")
    parser.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for the first issue")
    parser.add_argument("--chromium", default=CHROMIUM, help="the Chromium executable")
    args = parser.parse_args(argv)
    try:
        paths = screenshots(args.url, args.outdir, timeout_s=args.timeout, chromium=args.chromium)
    except Exception as e:  # one line for the user, whatever failed
        print(f"screenshots of {args.url} failed: {str(e).splitlines()[0]}", file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
