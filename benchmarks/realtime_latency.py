"""Latency, memory and page timing of the real-time service (`dacast realtime`), with and without a competing process.

What runs (each part its own process, as `dacast realtime demo` starts them):

* ``bda``: the twin radar feed delivers ``--volumes`` volumes every ``30 / --speed`` s and the
  loop (`dacast realtime run`, 1 torch thread) assimilates them; an observer polls
  ``/api/status`` of the web server every 50 ms. Latency = the moment ``/api/status`` first
  lists a volume's issue minus the volume file's arrival (its mtime). Resident memory of the
  loop process is sampled after each issue; growth is reported from issue 10 to the last.
* ``replay``: the replay feed copies ``--frames`` MeteoSwiss composites (640x710) at ``--speed``
  and the nowcast loop publishes 60-min nowcasts; the same latency. Side by side, the peer:
  pysteps' Lucas-Kanade + semi-Lagrangian extrapolation of the same frames (compute time only,
  a lower bound for a pysteps-based service), when pysteps is installed (``bench`` extra).
  With ``--checkpoint`` a trained ConvLSTM runs too: a second row times each input's arrival to
  the status showing its issue amended with the ConvLSTM frames.
* ``page``: a headless Chromium (Debian's, Playwright) loads the page of a service publishing at
  ``--speed``: first contentful paint, time to the first issue shown, and the delay from an
  issue's publication (``latest_published_wall``) to the page showing its issue time.

``--busy`` runs a competing process (a one-thread matrix-multiply loop) the whole time.

    python benchmarks/realtime_latency.py bda --preset bda-256 --volumes 100 --speed 1
    python benchmarks/realtime_latency.py bda --preset bda-256 --volumes 100 --speed 1 --busy
    python benchmarks/realtime_latency.py replay --frames 30 --speed 60 [--busy]
    python benchmarks/realtime_latency.py replay --frames 30 --speed 60 --checkpoint runs/nowcast-convlstm
    python benchmarks/realtime_latency.py page --speed 20 [--busy]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path

import numpy as np
import psutil
import yaml
from rich.console import Console
from rich.table import Table

from dacast.io.sources import match_source, to_datetime
from dacast.workflow.realtime.config import realtime_config_from_dict, realtime_config_to_dict
from dacast.workflow.realtime.demo import demo_config
from dacast.workflow.realtime.inbox import volume_time
from dacast.workflow.realtime.products import issue_name
from dacast.workflow.realtime.server import running_server

CHROMIUM = "/usr/bin/chromium"


def _busy() -> None:  # pragma: no cover - runs in a child process
    import torch

    torch.set_num_threads(1)
    a = torch.randn(512, 512)
    while True:
        a = torch.tanh(a @ a / 512.0)


@contextlib.contextmanager
def competing(enabled: bool) -> Iterator[None]:
    """A process busy on one core while the block runs (``enabled``)."""
    if not enabled:
        yield
        return
    proc = multiprocessing.get_context("spawn").Process(target=_busy, daemon=True)
    proc.start()
    try:
        yield
    finally:
        proc.kill()
        proc.join()


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "dacast.cli", "realtime", *args]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return json.loads(answer.read())


def _service(settings: Path, feed: str, products: Path, n: int, label: str) -> dict:
    """Start loop and feed, observe ``/api/status`` until ``n`` issues are listed; latencies and memory."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    loop = subprocess.Popen(_cli("run", str(settings)), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    arrivals: dict[str, float] = {}
    listed: dict[str, float] = {}
    amended: dict[str, float] = {}  # issue -> when the status first showed it amended (the ConvLSTM added)
    rss: list[float] = []
    inbox = products.parent / "inbox"
    done = products.parent / "state" / "done"
    with running_server(products) as url:
        # the loop spins up its ensemble first; the feed starts once it is running
        while _get(f"{url}/api/status").get("state") != "running":
            assert loop.poll() is None, loop.stderr.read().decode() if loop.stderr else ""
            time.sleep(0.2)
        feed_proc = subprocess.Popen(_cli(feed, str(settings)), env=env, stdout=subprocess.DEVNULL)
        last = None
        t_end = time.monotonic() + 3600 * 3
        try:
            while len(listed) < n and time.monotonic() < t_end:
                for folder in (inbox, done):
                    for p in folder.iterdir() if folder.is_dir() else ():
                        if not p.name.startswith(".") and p.name not in arrivals:
                            with contextlib.suppress(FileNotFoundError):
                                arrivals[p.name] = p.stat().st_mtime
                status = _get(f"{url}/api/status")
                issue = status.get("latest_issue")
                if issue and issue != last:
                    listed[issue] = time.time()
                    last = issue
                    rss.append(psutil.Process(loop.pid).memory_info().rss / 2**20)
                if issue and (status.get("latest_revision") or 0) > 0 and issue not in amended:
                    amended[issue] = time.time()
                assert loop.poll() is None, loop.stderr.read().decode() if loop.stderr else ""
                time.sleep(0.05)
        finally:
            feed_proc.terminate()
            feed_proc.wait()
            status = _get(f"{url}/api/status")
            loop.terminate()
            loop.wait()
    by_issue = {_issue_of(f): a for f, a in arrivals.items()}
    latencies = [t_listed - by_issue[name] for name, t_listed in listed.items() if name in by_issue]
    lat = np.asarray(latencies)
    growth = (rss[-1] / rss[min(9, len(rss) - 1)] - 1.0) * 100.0 if len(rss) > 10 else float("nan")
    counts = status.get("counts", {})
    joined = np.asarray([t - by_issue[name] for name, t in amended.items() if name in by_issue])
    extra = {}
    if joined.size:
        extra = {"convlstm_p50_s": float(np.median(joined)), "convlstm_p95_s": float(np.percentile(joined, 95)),
                 "convlstm_max_s": float(joined.max()), "convlstm_issues": int(joined.size)}  # fmt: skip
    return {
        **extra,
        "run": label,
        "issues": len(listed),
        "p50_s": float(np.percentile(lat, 50)),
        "p95_s": float(np.percentile(lat, 95)),
        "max_s": float(lat.max()),
        "skipped": counts.get("skipped", 0),
        "missing": counts.get("forecast_only", 0),
        "rejected": counts.get("rejected", 0),
        "rss_mb_at_10": rss[min(9, len(rss) - 1)],
        "rss_mb_last": rss[-1],
        "rss_growth_pct": growth,
        "rss_curve_mb": [round(x, 1) for x in rss],
        "latencies_s": [round(x, 3) for x in latencies],
    }


def _issue_of(filename: str) -> str | None:
    """The issue folder name an input file leads to (a twin volume's or a composite's time)."""
    t = volume_time(filename)
    if t is None:
        found = match_source(filename)
        t = None if found is None else to_datetime(found[1]).replace(tzinfo=UTC)
    return None if t is None else issue_name(t)


def _settings(folder: Path, data: dict) -> Path:
    config = demo_config(realtime_config_from_dict({**data, "folder": str(folder)}))
    path = folder / "settings.yaml"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(realtime_config_to_dict(config)))
    return path


def bench_bda(args: argparse.Namespace) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "rt"
        settings = _settings(folder, {"preset": args.preset, "speed": args.speed, "volumes": args.volumes})
        label = f"dacast {args.preset} x{args.speed:g}" + (" + busy core" if args.busy else "")
        with competing(args.busy):
            return [_service(settings, "twin-feed", folder / "products", args.volumes, label)]


def _pysteps_seconds(frames: int) -> dict | None:
    try:
        from pysteps import motion, nowcasts
        from pysteps.utils import transformation
    except ImportError:
        return None
    from dacast.io import default_radar_root, read_radar

    files = sorted((default_radar_root() / "mch" / "20150515").glob("AQC*.gif"))[:frames]
    rain = [read_radar(f).values for f in files]
    times = []
    for i in range(2, len(rain)):
        t0 = time.perf_counter()
        x = np.stack(rain[i - 2 : i + 1])
        db, _ = transformation.dB_transform(x, threshold=0.1, zerovalue=-15.0)
        db[~np.isfinite(db)] = -15.0
        v = motion.get_method("LK")(db)
        nowcasts.get_method("extrapolation")(db[-1], v, 12)
        times.append(time.perf_counter() - t0)
    t = np.asarray(times)
    return {"run": "pysteps LK + extrapolation (compute only)", "issues": len(t), "p50_s": float(np.median(t)),
            "p95_s": float(np.percentile(t, 95)), "max_s": float(t.max())}  # fmt: skip


def bench_replay(args: argparse.Namespace) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "rt"
        replay = {"frames": args.frames, "motion": args.motion, "checkpoint": args.checkpoint, "device": "cpu"}
        settings = _settings(folder, {"preset": "replay-mch", "speed": args.speed, "replay": replay})
        label = f"dacast replay-mch {args.motion} x{args.speed:g}" + (" + busy core" if args.busy else "")
        with competing(args.busy):
            rows = [_service(settings, "replay-feed", folder / "products", args.frames, label)]
            if "convlstm_p50_s" in rows[0]:
                r = rows[0]
                rows.append({"run": f"{label}: ConvLSTM joined the issue", "issues": r["convlstm_issues"],
                             "p50_s": r["convlstm_p50_s"], "p95_s": r["convlstm_p95_s"],
                             "max_s": r["convlstm_max_s"]})  # fmt: skip
            peer = _pysteps_seconds(args.frames)
            if peer is not None:
                peer["run"] += " + busy core" if args.busy else ""
                rows.append(peer)
    return rows


def bench_page(args: argparse.Namespace) -> list[dict]:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp, competing(args.busy):
        folder = Path(tmp) / "rt"
        settings = _settings(folder, {"preset": "bda-tiny", "speed": args.speed})
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        procs = [
            subprocess.Popen(_cli("run", str(settings)), env=env, stdout=subprocess.DEVNULL),
            subprocess.Popen(_cli("twin-feed", str(settings)), env=env, stdout=subprocess.DEVNULL),
        ]
        products = folder / "products"
        try:
            with running_server(products) as url, sync_playwright() as p:
                while not _get(f"{url}/api/status").get("latest_issue"):
                    time.sleep(0.2)
                browser = p.chromium.launch(executable_path=CHROMIUM)
                page = browser.new_page()
                t0 = time.perf_counter()
                page.goto(url)
                fcp, deadline = None, time.monotonic() + 5
                while fcp is None and time.monotonic() < deadline:  # the paint entry appears after the paint
                    fcp = page.evaluate(
                        "() => (performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime || null"
                    )
                    time.sleep(0.02)
                shown = None
                while shown is None:
                    text = page.locator("#issue-time").inner_text()
                    if text.strip():
                        shown = time.perf_counter() - t0
                    time.sleep(0.01)
                delays = []
                for _ in range(args.issues):
                    before = page.locator("#issue-time").inner_text()
                    while page.locator("#issue-time").inner_text() == before:
                        time.sleep(0.02)
                    seen = time.time()
                    published = _get(f"{url}/api/status")["latest_published_wall"]
                    delays.append(seen - published)
                browser.close()
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait()
    d = np.asarray(delays)
    label = "page" + (" + busy core" if args.busy else "")
    return [
        {"run": f"{label}: first contentful paint", "p50_s": (fcp or float("nan")) / 1000.0},
        {"run": f"{label}: first issue shown after navigation", "p50_s": shown},
        {"run": f"{label}: publication -> page shows it", "issues": len(d), "p50_s": float(np.median(d)),
         "p95_s": float(np.percentile(d, 95)), "max_s": float(d.max())},
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("bda", "replay", "page"))
    parser.add_argument("--preset", default="bda-256")
    parser.add_argument("--volumes", type=int, default=100)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--motion", default="dis")
    parser.add_argument("--checkpoint", help="replay: a trained ConvLSTM (folder or .pt) run beside extrapolation")
    parser.add_argument("--issues", type=int, default=10, help="page: publications to time")
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--busy", action="store_true", help="run a competing process on one core")
    parser.add_argument("--json", type=Path, help="write the rows (with the latency and memory series) here")
    parser.add_argument("--plot", type=Path, help="bda/replay: a PNG of latency and loop memory per issue")
    args = parser.parse_args()
    rows = {"bda": bench_bda, "replay": bench_replay, "page": bench_page}[args.what](args)
    table = Table(title=f"dacast realtime {args.what} ({os.cpu_count()} cores, load {os.getloadavg()[0]:.2f})")
    columns = ("run", "issues", "p50_s", "p95_s", "max_s", "skipped", "missing", "rss_mb_at_10", "rss_growth_pct")
    for c in columns:
        table.add_column(c)
    for row in rows:
        cells = [row.get(c) for c in columns]
        table.add_row(*("" if v is None else f"{v:.3g}" if isinstance(v, float) else str(v) for v in cells))
    Console(width=200).print(table)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    if args.plot and "rss_curve_mb" in rows[0]:
        plot_series(rows[0], args.plot)


def plot_series(row: dict, path: Path) -> None:
    """Latency (s) and the loop's resident memory (MB) against the issue number."""
    from dacast.workflow.figures import new_figure, save_figure

    fig = new_figure(figsize=(8.0, 3.0), constrained_layout=True)
    ax = fig.add_subplot(1, 2, 1)
    ax.plot(range(1, len(row["latencies_s"]) + 1), row["latencies_s"], ".-")
    ax.set_xlabel("issue")
    ax.set_ylabel("arrival -> listed by /api/status (s)")
    ax.grid(alpha=0.3)
    ax = fig.add_subplot(1, 2, 2)
    ax.plot(range(1, len(row["rss_curve_mb"]) + 1), row["rss_curve_mb"], ".-")
    ax.set_xlabel("issue")
    ax.set_ylabel("loop resident memory (MB)")
    ax.grid(alpha=0.3)
    fig.suptitle(row["run"], fontsize=9)
    save_figure(fig, path)


if __name__ == "__main__":
    main()
