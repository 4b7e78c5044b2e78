"""What every application needs from the machine: device, CPU threads, a progress bar, one-line notes, Dask.

These are resources, set once per run from one place (house style: threads are
a resource), never inside the algorithms.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import sys
from collections.abc import Callable, Iterator

import numpy as np
import torch
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from dacast._device import resolve_device as _resolve_device
from dacast.workflow.schema import ConfigError

#: Where results and notes are printed (stdout); errors go to stderr through the CLI.
console = Console(soft_wrap=True)

#: A receiver of one-line notes (radar outages, resume points); `say` prints them, `quiet` drops them.
Say = Callable[[str], None]


def say(message: str) -> None:
    """Print a one-line note in yellow on stdout."""
    console.print(f"[yellow]{escape(message)}[/]", highlight=False)


def quiet(_message: str) -> None:
    """Drop a note (the default of the library functions)."""


def spawn_seeds(seed: int, *key: int, n: int = 1, bits: int = 64) -> list[int]:
    """``n`` independent integer seeds for the purpose ``key`` of a run with master ``seed``.

    The one way every application derives its random streams: `numpy.random.SeedSequence`
    of ``[seed, *key]``, so a stream depends on its purpose (and, e.g., its cycle
    or iteration) only, and a resumed run draws exactly what an uninterrupted one does.
    """
    dtype = np.uint64 if bits == 64 else np.uint32
    return [int(s) for s in np.random.SeedSequence([seed, *key]).generate_state(n, dtype=dtype)]


def torch_generator(seed: int, *key: int) -> torch.Generator:
    """A CPU `torch.Generator` seeded from ``spawn_seeds(seed, *key)`` (see there)."""
    return torch.Generator().manual_seed(spawn_seeds(seed, *key)[0] & 0x7FFF_FFFF_FFFF_FFFF)


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; ``"cuda"`` without CUDA raises `ConfigError`."""
    try:
        return _resolve_device(device)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def sync(device: torch.device) -> None:
    """Wait for queued work on ``device`` (CUDA) so that a stage can be timed; nothing on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def cpu_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch CPU threads (``None``: unchanged), then restore the old count.

    Small cycles (tens of members, a few dozen variables) run much faster on
    one thread on a shared CPU (no thread hand-off).
    """
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


_MALLOC_TUNED = False


def tune_malloc() -> None:
    """Keep temporaries of up to 32 MB in glibc's heap and the freed heap in the process (once; Linux/glibc).

    Every operation of a model or network step allocates its output anew. Under glibc's defaults a
    temporary of tens of MB (a 640×712 field of 16 channels: 29 MB) is mapped and unmapped at every
    operation, page faults and all, until the dynamic threshold adapts; in a Dask worker, whose nanny
    sets ``MALLOC_TRIM_THRESHOLD_=65536``, the mmap threshold is pinned at 128 kB and even a few
    hundred kB are mapped anew. Measured: a Würsch-Craig forecast of 200 members at 256² in a worker
    took 6.2 s instead of 1.5 s (1.4-1.6 s with this); 20 members of the shipped nowcaster on
    640×710 took 35.8 s instead of 30.6 s. Thresholds of 32 MB (mmap) and 1 GB (trim) fix both; larger
    arrays (a tile, an ensemble) are still mapped and returned when freed. The process keeps up to
    1 GB of freed heap: the service loops, which hold their memory flat, do not call this.
    """
    global _MALLOC_TUNED
    if _MALLOC_TUNED or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc
        return
    libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD
    libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD
    _MALLOC_TUNED = True


#: ``update(completed, info)``: move a progress bar to ``completed`` steps and show ``info`` beside it.
Update = Callable[[int, str], None]


@contextlib.contextmanager
def progress(label: str, total: int, *, enabled: bool = True, completed: int = 0) -> Iterator[Update]:
    """A Rich progress bar over ``total`` steps (cycles, iterations); disabled: a no-op updater.

    Yields:
        ``update(completed, info)``.
    """
    columns = (
        TextColumn(f"[bold]{escape(label)}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
    )
    with Progress(*columns, console=console, disable=not enabled) as bar:
        task = bar.add_task("", total=total, completed=completed)

        def update(done: int, info: str = "") -> None:
            bar.update(task, completed=done, description=info)

        yield update


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, workers: int = 2) -> Iterator[object]:
    """A ``dask.distributed.Client``: to ``scheduler`` when given, else on a new LocalCluster of ``workers``.

    The LocalCluster (one thread per worker process) is closed on exit.

    Raises:
        ConfigError: the scheduler cannot be reached.
    """
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError as err:  # pragma: no cover - dask is a dependency
        raise ConfigError(f"--dask needs dask.distributed: {err}") from None
    if scheduler:
        try:
            client = Client(scheduler, timeout="10s")
        except (OSError, TimeoutError, ValueError) as err:
            raise ConfigError(f"cannot connect to the Dask scheduler at {scheduler}: {err}") from None
        try:
            yield client
        finally:
            client.close()
        return
    # Workers' own logs are silenced: a task's error reaches the client with its future, and a worker
    # still sending a heartbeat while the cluster shuts down printed a traceback after a finished run.
    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.CRITICAL,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


__all__ = [
    "Say",
    "Update",
    "console",
    "cpu_threads",
    "dask_client",
    "progress",
    "quiet",
    "resolve_device",
    "say",
    "spawn_seeds",
    "sync",
    "torch_generator",
    "tune_malloc",
]
