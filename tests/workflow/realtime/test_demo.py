"""`dacast realtime demo` end to end: feed, loop and server as processes, the page in Chromium, a kill -9, Ctrl-C.

The demo runs the `bda-tiny` service at 20x (a volume every 1.5 s). The test reads the page
in a headless Chromium (Debian's, driven by Playwright), kills the loop process with SIGKILL
(the demo restarts it and it carries on from its checkpoint), and stops everything with SIGINT, sent
to a demo that inherited SIGINT as ignored (as a shell's background job does).
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import psutil
from playwright.sync_api import expect, sync_playwright

from dacast.workflow.realtime.products import INDEX, issues_dir, list_issues

CHROMIUM = Path("/usr/bin/chromium")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return json.loads(answer.read())


def _wait(condition: Callable[[], bool], seconds: float, what: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert proc.poll() is None, f"the demo ended ({proc.returncode}) while waiting for {what}"
        assert time.monotonic() < deadline, f"no {what} after {seconds:g} s"
        time.sleep(0.2)


def _loop_process(demo: subprocess.Popen) -> psutil.Process:
    children = psutil.Process(demo.pid).children()
    return next(c for c in children if "run" in c.cmdline() and "realtime" in c.cmdline())


def test_demo_serves_the_page_survives_a_kill_and_stops_cleanly(tmp_path: Path) -> None:
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: install it with `apt-get install -y chromium`"
    port = _free_port()
    folder = tmp_path / "rt"
    demo = subprocess.Popen(
        [sys.executable, "-m", "dacast.cli", "realtime", "demo", "bda-tiny", "--speed", "20", "--folder", str(folder),
         "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # started as a shell's background job is: SIGINT inherited as ignored; Ctrl-C must still stop it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    products = folder / "products"
    try:
        _wait(lambda: len(list_issues(products)) >= 2, 120, "two published issues", demo)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM))
            page = browser.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(url)
            issue = page.locator("#issue-time")
            expect(issue).not_to_have_text("", timeout=10_000)
            first = issue.inner_text()
            expect(issue).not_to_have_text(first, timeout=15_000)  # a new cycle reached the page
            for tab in ("observation", "analysis", "forecast", "probability", "verification"):
                page.click(f"[data-tab={tab}]")
                expect(page.locator("#product")).to_have_attribute("src", re.compile(tab), timeout=5_000)
                loaded = "() => { const i = document.getElementById('product'); return i.complete && i.naturalWidth; }"
                deadline = time.monotonic() + 5
                while not page.evaluate(loaded):  # the page swaps issues every 1.5 s: wait for one to load
                    assert time.monotonic() < deadline, f"no image on the {tab} tab"
                    time.sleep(0.05)
            browser.close()
        assert not errors, errors
        # kill -9 of the loop: the demo restarts it; it resumes from its checkpoint and publishing goes on
        loop = _loop_process(demo)
        before = len(list_issues(products))
        loop.send_signal(signal.SIGKILL)
        _wait(lambda: _get(f"{url}/api/status")["counts"].get("restarts", 0) >= 1, 60, "a restart", demo)
        _wait(lambda: len(list_issues(products)) >= before + 2, 60, "issues after the restart", demo)
        status = _get(f"{url}/api/status")
        assert any(e["kind"] == "restart" for e in status["events"])
        for name in list_issues(products):  # whole issues only
            index = json.loads((issues_dir(products) / name / INDEX).read_text())
            assert all((issues_dir(products) / name / f).is_file() for fs in index["products"].values() for f in fs)
        children = psutil.Process(demo.pid).children(recursive=True)
    finally:
        demo.send_signal(signal.SIGINT)
        out, err = demo.communicate(timeout=60)
    assert demo.returncode == 130, err.decode()
    assert b"Traceback" not in err, err.decode()
    assert f"http://127.0.0.1:{port}/".encode() in out
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]  # all parts stopped
