"""The real-time web server: status and issue API, read-only product files, bounded requests, ports."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from dacast.workflow.limits import ConfigError
from dacast.workflow.realtime.products import (
    DBZ_SCALE,
    PROBABILITY_SCALE,
    frame_names,
    index_products,
    iso,
    issue_name,
    publish_issue,
    render_png,
    write_status,
)
from dacast.workflow.realtime.server import check_port, create_app, running_server, status_view

T0 = datetime(2026, 7, 1, 0, 0, 30, tzinfo=UTC)
FRAMES = 4


def blob(n: int, cx: float, cy: float, peak: float) -> np.ndarray:
    """A Gaussian blob ``(n, n)`` of height ``peak`` centred at grid point ``(cx, cy)``."""
    y, x = np.mgrid[0:n, 0:n]
    return peak * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2.0 * (n / 6.0) ** 2))


def publish(products: Path, t: datetime, *, mode: str = "bda") -> Path:
    """One synthetic issue at ``t``: 64x64 blobs moving east, `FRAMES` forecast and probability frames."""
    n, leads = 64, list(range(FRAMES))
    fields = [blob(n, 20 + 6 * k, 30, 55.0) for k in leads]
    files = {"observation.png": render_png(blob(n, 18, 30, 50.0), DBZ_SCALE)}
    files |= {f: render_png(v, DBZ_SCALE) for f, v in zip(frame_names("forecast", FRAMES), fields, strict=True)}
    probs = [np.clip(v / 45.0, 0, 1) for v in fields]
    files |= {
        f: render_png(v, PROBABILITY_SCALE) for f, v in zip(frame_names("probability", FRAMES), probs, strict=True)
    }
    files["verification.png"] = render_png(fields[0] - blob(n, 18, 30, 50.0) + 30.0, DBZ_SCALE)
    kinds = {"observation": ["observation.png"], "forecast": frame_names("forecast", FRAMES)}
    kinds |= {"probability": frame_names("probability", FRAMES), "verification": ["verification.png"]}
    if mode == "bda":
        files["analysis.png"] = render_png(blob(n, 19, 30, 52.0), DBZ_SCALE)
        kinds["analysis"] = ["analysis.png"]
    index = {
        "mode": mode,
        "title": f"{mode} twin 64x64",
        "grid": {"ny": n, "nx": n, "dx_km": 0.5},
        "lead_minutes": leads,
        "valid_times": [iso(t + timedelta(minutes=m)) for m in leads],
        "products": index_products(kinds),
        "scales": {k: DBZ_SCALE.to_json() for k in ("observation", "analysis", "forecast")}
        | {"probability": PROBABILITY_SCALE.to_json()},
        "flags": {
            "analysis": mode == "bda",
            "missing_volume": False,
            "late": False,
            "skipped_before": 0,
            "diverged": False,
        },
        "timing": {"arrival": iso(t), "latency_s": 2.5, "seconds_forecast": 0.4, "seconds_analysis": 1.2},
        "verification": {
            "threshold": 30.0,
            "units": "dBZ",
            "lead_minutes": leads,
            "csi": {"forecast": [0.9, 0.8, 0.7, 0.6], "persistence": [0.9, 0.6, 0.4, 0.3]},
            "fss": {"forecast": [0.95, 0.9, 0.85, 0.8], "persistence": [0.95, 0.8, 0.7, 0.6]},
            "pairs": [],
        },
        "notes": ["synthetic issue"],
    }
    folder = publish_issue(products, t, files, index)
    assert folder is not None
    return folder


def status(products: Path, t: datetime, *, state: str = "running", age_s: float = 1.0, **extra: Any) -> None:
    """A status.json whose latest issue is ``t``, published ``age_s`` ago, with a 30 s cycle."""
    now = time.time()
    body: dict[str, Any] = {
        "mode": "bda",
        "title": "bda twin 64x64",
        "state": state,
        "started": iso(T0),
        "updated_wall": now,
        "cycle_wall_seconds": 30.0,
        "latest_issue": issue_name(t),
        "latest_issue_time": iso(t),
        "latest_published_wall": now - age_s,
        "counts": {
            "issues": 1,
            "analyses": 1,
            "forecast_only": 0,
            "skipped": 0,
            "rejected": 0,
            "late": 0,
            "restarts": 0,
        },
        "latency_s": {"last": 2.5, "p50": 2.5, "p95": 2.5, "n": 1},
        "events": [],
    }
    write_status(products, body | extra)


@pytest.fixture
def products(tmp_path: Path) -> Path:
    """A products folder with two issues, a status, an analysis file and a half-written issue."""
    root = tmp_path / "products"
    publish(root, T0)
    publish(root, T0 + timedelta(seconds=30))
    status(root, T0 + timedelta(seconds=30))
    (root / "analysis_latest.nc").write_bytes(b"CDF\x01 not really")
    partial = root / "issues" / f".partial-{issue_name(T0 + timedelta(seconds=60))}-1"
    partial.mkdir()
    (partial / "index.json").write_text("{}")
    (partial / "forecast_00.png").write_bytes(b"\x89PNG")
    return root


@pytest.fixture
def client(products: Path) -> Iterator[httpx.Client]:
    """An HTTP client of a live server of ``products``."""
    with running_server(products) as url, httpx.Client(base_url=url, timeout=5) as c:
        yield c


#: The status `raw_get` gives when the server answered and closed the connection before the whole request was sent.
CLOSED = 0


def raw_get(url: str, target: str, method: str = "GET", **kwargs: Any) -> tuple[int, bytes]:
    """``method target`` sent exactly as written (no URL normalisation); the status and body.

    An oversized request may be refused while it is still being sent: the server answers and closes,
    and the client's send fails (broken pipe) or its read finds the connection reset; that is `CLOSED`.
    """
    host, port = url.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        conn.request(method, target, **kwargs)
        answer = conn.getresponse()
        return answer.status, answer.read()
    except (BrokenPipeError, ConnectionResetError):
        return CLOSED, b""
    finally:
        conn.close()


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every entry under ``root``: relative path -> (size, mtime in ns)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            st = os.lstat(Path(dirpath) / name)
            out[str((Path(dirpath) / name).relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


def test_status_with_and_without_status_file(tmp_path: Path, client: httpx.Client) -> None:
    body = client.get("/api/status").json()
    assert body["state"] == "running" and body["latest_issue"] == issue_name(T0 + timedelta(seconds=30))
    assert body["n_issues"] == 2 and body["outage"] is False
    assert 0.5 < body["lag_s"] < 30 and abs(body["server_time"] - time.time()) < 30
    with running_server(tmp_path / "nothing") as url:
        empty = httpx.get(f"{url}/api/status")
    assert empty.status_code == 200 and empty.headers["cache-control"] == "no-cache"
    waiting = empty.json()
    assert waiting["state"] == "waiting" and waiting["outage"] is True
    assert waiting["lag_s"] is None and waiting["latest_issue"] is None and waiting["n_issues"] == 0


@pytest.mark.parametrize(
    ("state", "age_s", "outage"),
    [("running", 10.0, False), ("running", 89.0, False), ("running", 91.0, True), ("stopped", 1.0, True)],
)
def test_outage_flag(products: Path, state: str, age_s: float, outage: bool) -> None:
    status(products, T0, state=state, age_s=age_s)
    view = status_view(products, 3.0, time.time())
    assert view["outage"] is outage
    assert status_view(products, 10.0, time.time())["outage"] is (state != "running")


def test_create_app_outage_factor(products: Path) -> None:
    status(products, T0, age_s=100.0)  # 100 s since the last issue, 30 s cycles

    async def outage(factor: float) -> bool:
        transport = httpx.ASGITransport(app=create_app(products, outage_factor=factor))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            return (await c.get("/api/status")).json()["outage"]

    assert asyncio.run(outage(3.0)) is True and asyncio.run(outage(4.0)) is False


def test_issues_list_and_index(client: httpx.Client) -> None:
    body = client.get("/api/issues").json()
    names = [issue_name(T0), issue_name(T0 + timedelta(seconds=30))]
    assert body == {"issues": names, "latest": names[-1]}
    index = client.get(f"/api/issues/{names[0]}")
    assert index.status_code == 200 and index.headers["content-type"].startswith("application/json")
    assert index.headers["cache-control"] == "no-cache"
    assert index.json()["issue_time"] == iso(T0) and index.json()["products"]["forecast"][0] == "forecast_00.png"
    for bad in ["20260701T000200Z", f".partial-{issue_name(T0 + timedelta(seconds=60))}-1", "latest", "2026"]:
        assert client.get(f"/api/issues/{bad}").status_code == 404, bad


def test_product_files(client: httpx.Client, products: Path) -> None:
    name = issue_name(T0)
    png = client.get(f"/products/issues/{name}/forecast_01.png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content == (products / "issues" / name / "forecast_01.png").read_bytes()
    assert "max-age" in png.headers["cache-control"]
    index = client.get(f"/products/issues/{name}/index.json")
    assert index.headers["content-type"].startswith("application/json") and index.headers["cache-control"] == "no-cache"
    nc = client.get("/products/analysis_latest.nc")
    assert nc.status_code == 200 and nc.headers["content-type"] == "application/x-netcdf"
    for path in ["status.json", "issues", f"issues/{name}", f"issues/{name}/missing.png", "analysis_latest.nc/x"]:
        assert client.get(f"/products/{path}").status_code == 404, path


def test_page_and_security_headers(client: httpx.Client) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["x-content-type-options"] == "nosniff"
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "unsafe-inline" not in csp
    assert b"<script>" not in page.content and b"/static/app.js" in page.content
    assert client.get("/static/app.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/static/style.css").headers["content-type"].startswith("text/css")
    for path in ["/static/server.py", "/static/../server.py", "/docs", "/redoc", "/openapi.json"]:
        assert client.get(path).status_code == 404, path
    head = client.head("/api/status")
    assert head.status_code == 200 and head.content == b""


def test_symlinks_and_partials_are_not_served(tmp_path: Path, products: Path) -> None:
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG secret")
    name = issue_name(T0)
    (products / "issues" / name / "leak.png").symlink_to(secret)
    (products / "issues" / name / "linked.json").symlink_to(products / "status.json")
    (products / "issues" / "20260701T000500Z").symlink_to(products / "issues" / name)
    with running_server(products) as url, httpx.Client(base_url=url) as client:
        assert client.get(f"/products/issues/{name}/forecast_00.png").status_code == 200
        for path in [
            f"issues/{name}/leak.png",
            f"issues/{name}/linked.json",
            "issues/20260701T000500Z/forecast_00.png",
            f"issues/.partial-{issue_name(T0 + timedelta(seconds=60))}-1/forecast_00.png",
            f"issues/.partial-{issue_name(T0 + timedelta(seconds=60))}-1/index.json",
        ]:
            assert client.get(f"/products/{path}").status_code == 404, path
        assert client.get("/api/issues/20260701T000500Z").status_code == 404


def test_traversal_and_bounds_on_a_live_server(products: Path) -> None:
    name = issue_name(T0)
    before = snapshot(products)
    with running_server(products) as url:
        assert raw_get(url, f"/products/issues/{name}/forecast_00.png")[0] == 200
        for target in [
            "/products/../pyproject.toml",
            "/products/%2e%2e/%2e%2e/etc/passwd",
            "/products/issues/..%2f..%2fstatus.json",
            f"/products/issues/{name}/..%2f..%2fstatus.json",
            "/products/%252e%252e/%252e%252e/etc/passwd",
            f"/products/issues/{name}%2fforecast_00.png",
            f"/products/issues\\{name}\\forecast_00.png",
            f"/products/issues/{name}/..\\..\\status.json",
            "/products//etc/passwd",
            "/products/" + str(products / "status.json"),
            f"/products/./issues/{name}/forecast_00.png",
        ]:
            assert raw_get(url, target)[0] == 404, target
        # oversized requests are refused, with the status when the client gets to read it
        assert raw_get(url, "/api/status?" + "q" * 5000)[0] in (414, CLOSED)
        assert raw_get(url, "/" + "a" * 3000)[0] in (414, CLOSED)
        assert raw_get(url, "/api/status", headers={f"x-{i}": "v" * 1000 for i in range(20)})[0] in (431, CLOSED)
        assert raw_get(url, "/api/status", "POST", body=b"x" * 10)[0] == 413
        assert raw_get(url, "/api/status", "GET", body=b"x" * 10)[0] == 413
        chunked = raw_get(url, "/api/status", "POST", body=iter([b"abc"]), encode_chunked=True)
        assert chunked[0] in (413, CLOSED)
        for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"]:
            assert raw_get(url, "/api/status", method)[0] == 405, method
        response = httpx.post(f"{url}/api/status")
        assert response.status_code == 405 and response.headers["allow"] == "GET, HEAD"
        assert response.headers["x-content-type-options"] == "nosniff"
        for path in ["/", "/api/status", "/api/issues", f"/api/issues/{name}", "/products/analysis_latest.nc"]:
            assert httpx.get(url + path).status_code == 200, path
    assert snapshot(products) == before  # nothing was written


def test_running_server_answers_then_stops(products: Path) -> None:
    with running_server(products) as url:
        port = int(url.rsplit(":", 1)[1])
        assert httpx.get(f"{url}/api/issues").json()["latest"] == issue_name(T0 + timedelta(seconds=30))
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/api/status", timeout=1)
    check_port("127.0.0.1", port)  # free again


def test_check_port() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ConfigError, match=f"port {port} on 127.0.0.1 is already in use") as info:
            check_port("127.0.0.1", port)
        assert "\n" not in str(info.value)
    for host, port in [("example.invalid", 8000), ("127.0.0.1", 70000), ("127.0.0.1", 0), ("10.255.255.1", 8000)]:
        with pytest.raises(ConfigError) as info:
            check_port(host, port)
        assert "\n" not in str(info.value) and str(info.value)


def test_status_file_is_read_not_trusted(products: Path) -> None:
    (products / "status.json").write_text(json.dumps({"state": "running", "cycle_wall_seconds": "x"}))
    view = status_view(products, 3.0, time.time())
    assert view["outage"] is False and view["lag_s"] is None
    (products / "status.json").write_text('{"state": "running", "latest_published_wall": NaN, "x": [Infinity]}')
    view = status_view(products, 3.0, time.time())
    assert view["lag_s"] is None and view["x"] == [None]
    (products / "status.json").write_text("{not json")
    assert status_view(products, 3.0, time.time())["state"] == "waiting"
