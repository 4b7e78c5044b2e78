"""Thread plumbing of the local filters: one process-wide pool and torch's intra-op thread count.

The local analyses solve many small independent problems (batched ~100 x 100
eigenproblems). On CPU they run as chunks on a shared thread pool with torch
single-threaded inside (torch releases the GIL), which uses every core
without oversubscribing them; on accelerators chunks simply run in order.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import torch

_MIN_POINTS_PER_THREAD = 64
_POOLS: dict[int, ThreadPoolExecutor] = {}
_THREADS_LOCK = threading.Lock()
_THREADS_STATE = {"users": 0, "saved": 1}


def _pool(workers: int) -> ThreadPoolExecutor:
    """A process-wide thread pool per size (threads are reused across analyses)."""
    if workers not in _POOLS:
        _POOLS[workers] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dacast-letkf")
    return _POOLS[workers]


@contextmanager
def single_threaded() -> Iterator[None]:
    """Torch (and MKL) intra-op threads set to 1 inside, restored after (safe when nested or concurrent).

    Batched eigenproblems of ~100 x 100 matrices gain nothing from intra-op
    threads: LAPACK then splits every small matrix over spinning threads, up
    to 20x slower on a loaded 2-core machine. The callers parallelise over
    chunks on a thread pool instead.
    """
    with _THREADS_LOCK:
        if _THREADS_STATE["users"] == 0:
            _THREADS_STATE["saved"] = torch.get_num_threads()
            torch.set_num_threads(1)
        _THREADS_STATE["users"] += 1
    try:
        yield
    finally:
        with _THREADS_LOCK:
            _THREADS_STATE["users"] -= 1
            if _THREADS_STATE["users"] == 0:
                torch.set_num_threads(_THREADS_STATE["saved"])


def cpu_workers(device: torch.device) -> int:
    """Pool threads for CPU work on ``device`` (1 on accelerators)."""
    if device.type != "cpu":
        return 1
    threads = _THREADS_STATE["saved"] if _THREADS_STATE["users"] else torch.get_num_threads()
    return max(1, min(threads, os.cpu_count() or 1))


def map_tasks(tasks: list[Callable[[], None]], device: torch.device) -> None:
    """Run independent tasks: on CPU on the thread pool with single-threaded torch, else in order.

    Tasks must not call `map_tasks` / `map_chunks` themselves (the pool is shared).
    """
    workers = min(cpu_workers(device), len(tasks))
    if device.type != "cpu":
        for task in tasks:
            task()
        return
    with single_threaded():
        if workers > 1:
            list(_pool(workers).map(lambda task: task(), tasks))
        else:
            for task in tasks:
                task()


def map_chunks(n_points: int, chunk: int, device: torch.device, solve: Callable[[int, int], None]) -> None:
    """Call ``solve(start, stop)`` for every chunk of ``range(n_points)``, on a thread pool on CPU.

    Batched small eigenproblems run serially inside torch: giving every
    thread a chunk, with torch single-threaded, uses all cores (torch releases
    the GIL) without oversubscribing them. Chunks shrink so that every worker
    gets one, but never below ``_MIN_POINTS_PER_THREAD`` points per worker.
    """
    workers = cpu_workers(device)
    workers = max(1, min(workers, n_points // _MIN_POINTS_PER_THREAD))
    if workers > 1:
        chunk = min(chunk, -(-n_points // workers))
    starts = range(0, n_points, chunk)
    map_tasks([lambda s=s: solve(s, min(s + chunk, n_points)) for s in starts], device)


__all__ = ["cpu_workers", "map_chunks", "map_tasks", "single_threaded"]
