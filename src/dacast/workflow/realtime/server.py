"""The real-time service's web server: a read-only view of the products folder (see `products`).

Routes (GET and HEAD only; nothing writes, nothing runs)::

    /                      the page (static/index.html)
    /static/{name}         the page's own files (a fixed allow-list)
    /api/status            status.json + server_time, lag_s, outage, n_issues
    /api/issues            {"issues": [names, oldest first], "latest": name | null}
    /api/issues/{name}     that issue's index.json
    /products/{path}       issues/<name>/*.png|*.json and analysis_latest.nc, nothing else

Every request passes `_Guard` first: 414 for a URL over `MAX_URL_BYTES`, 431 for headers over
`MAX_HEADER_BYTES`, 413 for a request with a body, 405 for a method other than GET/HEAD; every
answer carries `SECURITY_HEADERS`. Product files are opened one path component at a time with
``O_NOFOLLOW``: a symlink anywhere under the products folder is never followed, and the hidden
``.partial-*`` folders never match a route.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import json
import math
import os
import re
import socket
import stat
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dacast.workflow.files import jsonable
from dacast.workflow.limits import ConfigError
from dacast.workflow.realtime.products import INDEX, ISSUES, LATEST_ANALYSIS, list_issues, read_status

#: Longest URL (path and query, in bytes) answered; longer ones get 414.
MAX_URL_BYTES = 2048
#: Most header bytes answered; more get 431 (uvicorn's own bound applies only to a head sent in pieces).
MAX_HEADER_BYTES = 16 * 1024
#: The page's files: name -> content type.
STATIC_FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
STATIC_DIR = Path(__file__).with_name("static")
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}
_ISSUE_NAME = re.compile(r"\d{8}T\d{6}Z")
_ISSUE_FILE = re.compile(r"issues/(\d{8}T\d{6}Z)/([A-Za-z0-9][A-Za-z0-9_-]{0,100}\.(?:png|json))")
_CONTENT_TYPES = {".png": "image/png", ".json": "application/json", ".nc": "application/x-netcdf"}
_NO_CACHE = {"cache-control": "no-cache"}
_IMMUTABLE = {"cache-control": "public, max-age=86400, immutable"}  # an issue folder never changes


class _Guard:
    """ASGI middleware: bounded, body-less GET/HEAD requests only; security headers on every answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        url = len(scope.get("raw_path") or scope["path"].encode()) + len(scope.get("query_string", b""))
        if url > MAX_URL_BYTES:
            return await _refuse(send, 414, f"URL longer than {MAX_URL_BYTES} bytes")
        if sum(len(k) + len(v) + 4 for k, v in scope.get("headers", [])) > MAX_HEADER_BYTES:
            return await _refuse(send, 431, f"headers longer than {MAX_HEADER_BYTES} bytes")
        if b"transfer-encoding" in headers or headers.get(b"content-length", b"0").strip() not in (b"0", b""):
            return await _refuse(send, 413, "requests must not have a body")
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            return await _refuse(send, 405, "only GET and HEAD")

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": _with_security(message.get("headers", []))}
            elif message["type"] == "http.response.body" and method == "HEAD":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, secured)


def _with_security(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    present = {k.lower() for k, _ in headers}
    extra = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items() if k.encode() not in present]
    return list(headers) + extra


async def _refuse(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers.append((b"connection", b"close"))
    if status == 405:
        headers.append((b"allow", b"GET, HEAD"))
    await send({"type": "http.response.start", "status": status, "headers": _with_security(headers)})
    await send({"type": "http.response.body", "body": body})


def _not_found() -> JSONResponse:
    return JSONResponse({"detail": "not found"}, status_code=404, headers=_NO_CACHE)


def _read_nofollow(root: Path, parts: list[str]) -> bytes | None:
    """The bytes of the regular file ``root/parts...``; ``None`` when it is absent or any part is a symlink."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    fds: list[int] = []
    try:
        fds.append(os.open(root, flags | os.O_DIRECTORY))
        for part in parts[:-1]:
            fds.append(os.open(part, flags | os.O_DIRECTORY, dir_fd=fds[-1]))
        fd = os.open(parts[-1], flags | os.O_NONBLOCK, dir_fd=fds[-1])
        fds.append(fd)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with os.fdopen(os.dup(fd), "rb") as fh:
            return fh.read()
    except OSError:
        return None
    finally:
        for fd in fds:
            os.close(fd)


def _number(value: Any) -> float | None:
    """``value`` as a finite float, else ``None`` (status.json is read, not trusted)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def status_view(products: Path, outage_factor: float, now: float) -> dict[str, Any]:
    """What ``/api/status`` answers: status.json plus ``server_time``, ``lag_s``, ``outage``, ``n_issues``.

    Args:
        products: the products folder.
        outage_factor: an outage is a last publication, or a status file, older than this many cycles
            (``cycle_wall_seconds``; the loop rewrites the file at least once a cycle).
        now: the wall time (unix s).
    """
    status = read_status(products)
    view: dict[str, Any] = {"state": "waiting", "latest_issue": None, "counts": {}, "events": [], **status}
    published, cycle = _number(status.get("latest_published_wall")), _number(status.get("cycle_wall_seconds"))
    updated = _number(status.get("updated_wall"))
    lag = None if published is None else max(0.0, now - published)
    late = lag is not None and cycle is not None and lag > outage_factor * cycle
    # the loop rewrites status.json at least once a cycle: an older file means the loop is not running
    late = late or (updated is not None and cycle is not None and now - updated > outage_factor * max(cycle, 1.0))
    view.update(
        server_time=now,
        lag_s=lag,
        outage=not status or status.get("state") != "running" or late,
        n_issues=len(list_issues(products)),
    )
    return jsonable(view)  # a hand-edited status may hold NaN, which JSON cannot


def create_app(products: Path, *, outage_factor: float = 3.0) -> FastAPI:
    """The web application that shows the products folder ``products`` (read only).

    Args:
        products: the products folder (it may not exist yet: the page then waits for it).
        outage_factor: ``/api/status`` flags an outage when the newest issue is older than this many
            input cycles (``cycle_wall_seconds``), besides a missing status or a state other than running.
    """
    root = Path(products).absolute()
    page = {name: (STATIC_DIR / name).read_bytes() for name in STATIC_FILES}
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None, title="dacast real time")

    @app.get("/")
    def index() -> Response:
        return Response(page["index.html"], media_type=STATIC_FILES["index.html"], headers=_NO_CACHE)

    @app.get("/static/{name}")
    def static(name: str) -> Response:
        if name not in page or name == "index.html":
            return _not_found()
        return Response(page[name], media_type=STATIC_FILES[name], headers=_NO_CACHE)

    @app.get("/api/status")
    def status() -> JSONResponse:
        return JSONResponse(status_view(root, outage_factor, time.time()), headers=_NO_CACHE)

    @app.get("/api/issues")
    def issues() -> JSONResponse:
        names = list_issues(root)
        return JSONResponse({"issues": names, "latest": names[-1] if names else None}, headers=_NO_CACHE)

    @app.get("/api/issues/{name}")
    def issue(name: str) -> Response:
        data = _read_nofollow(root, [ISSUES, name, INDEX]) if _ISSUE_NAME.fullmatch(name) else None
        if data is None:
            return _not_found()
        return Response(data, media_type="application/json", headers=_NO_CACHE)

    @app.get("/products/{path:path}")
    def product(path: str, request: Request) -> Response:
        raw = request.scope.get("raw_path") or b""
        if b"%" in raw or b"\\" in raw or "\\" in path:  # product names need no escapes: refuse any
            return _not_found()
        if path == LATEST_ANALYSIS:
            parts = [LATEST_ANALYSIS]
        elif (match := _ISSUE_FILE.fullmatch(path)) is not None:
            parts = [ISSUES, match.group(1), match.group(2)]
            if _read_nofollow(root, [ISSUES, match.group(1), INDEX]) is None:  # not a published issue
                return _not_found()
        else:
            return _not_found()
        data = _read_nofollow(root, parts)
        if data is None:
            return _not_found()
        suffix = Path(parts[-1]).suffix
        headers = _IMMUTABLE if suffix == ".png" else _NO_CACHE
        return Response(data, media_type=_CONTENT_TYPES[suffix], headers=headers)

    app.add_middleware(_Guard)
    return app


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """``host`` as an IP address (``localhost`` is 127.0.0.1); `ConfigError` for anything else."""
    if host == "localhost":
        host = "127.0.0.1"
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(
            f"host {host!r} is not an IP address; use 127.0.0.1 (this machine only) or, to serve other machines, "
            "0.0.0.0 or one of this machine's addresses with --host"
        ) from None


def _bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (not yet listening); `ConfigError` with one line when it cannot be."""
    address = _address(host)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(f"port must be an integer in [1, 65535], got {port!r}")
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: a closed server's port is free
        sock.bind((str(address), port))
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise ConfigError(f"port {port} on {address} is already in use; choose another with --port") from None
        if e.errno == errno.EACCES:
            raise ConfigError(f"port {port} on {address} needs privileges; choose one above 1023 with --port") from None
        if e.errno == errno.EADDRNOTAVAIL:
            raise ConfigError(f"{address} is not an address of this machine; use 127.0.0.1 with --host") from None
        raise ConfigError(f"cannot listen on {address} port {port}: {e.strerror}") from None
    return sock


def check_port(host: str, port: int) -> None:
    """`ConfigError` (one line) unless the server could listen on ``host:port``.

    Args:
        host: an IP address (or ``localhost``): 127.0.0.1 serves this machine only, 0.0.0.0 every
            interface (only when asked for: `serve` defaults to 127.0.0.1). Host names are refused.
        port: 1-65535.
    """
    if port == 0:
        raise ConfigError("port must be an integer in [1, 65535], got 0")
    _bind(host, port).close()


def _config(products: Path, host: str, port: int, log_level: str) -> uvicorn.Config:
    return uvicorn.Config(
        create_app(products),
        host=host,
        port=port,
        workers=1,
        http="h11",
        ws="none",
        lifespan="off",
        log_level=log_level,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        limit_concurrency=64,
        h11_max_incomplete_event_size=16 * 1024,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=2,
    )


def serve(products: Path, host: str = "127.0.0.1", port: int = 8000, *, log_level: str = "warning") -> None:
    """Serve the page and the products folder ``products`` until Ctrl-C or SIGTERM (blocking, one worker).

    On either signal uvicorn closes the connections, then raises the signal again with the caller's
    handler in place: Ctrl-C gives ``KeyboardInterrupt`` and SIGTERM ends the process (status 143), both
    after a clean shutdown.

    Args:
        products: the products folder.
        host: the address to listen on (see `check_port`).
        port: the TCP port.
        log_level: uvicorn's log level (``warning``: no access log, errors only).
    """
    if port == 0:
        raise ConfigError("port must be an integer in [1, 65535], got 0")
    sock = _bind(host, port)  # bound here and handed to uvicorn: a failed bind is one `ConfigError` line
    uvicorn.Server(_config(products, host, port, log_level)).run(sockets=[sock])


@contextlib.contextmanager
def running_server(products: Path, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``products`` from a background thread while the ``with`` block runs; yields the base URL.

    Args:
        products: the products folder.
        host: the address to listen on.
        port: the TCP port; 0 picks a free one.

    Yields:
        The base URL, e.g. ``http://127.0.0.1:41237`` (no trailing slash).
    """
    sock = _bind(host, port)
    bound = sock.getsockname()[1]
    server = uvicorn.Server(_config(products, host, bound, "warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="dacast-web", daemon=True)
    thread.start()
    address = _address(host)
    if address.is_unspecified:
        address = ipaddress.ip_address("::1" if address.version == 6 else "127.0.0.1")
    url = f"http://{f'[{address}]' if address.version == 6 else address}:{bound}"
    try:
        deadline = time.monotonic() + 10.0
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the web server on {url} did not start")
            time.sleep(0.01)
        with urllib.request.urlopen(f"{url}/api/status", timeout=5.0) as answer:  # it answers
            answer.read()
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10.0)
        sock.close()


__all__ = ["MAX_HEADER_BYTES", "MAX_URL_BYTES", "check_port", "create_app", "running_server", "serve", "status_view"]
