"""Nothing lost on failure: atomic writes, checkpoints that load no code, and run folders that say when unfinished.

* `atomic_write` writes through a temporary file in the same folder, flushes it to
  disk (``fsync``), renames it over the target and syncs the folder: a reader sees
  the old file or the new one, never half of one, whatever kills the process; Ctrl-C
  and SIGTERM wait until the write is done.
* `load_checkpoint` reads with ``torch.load(weights_only=True)``: tensors, numbers,
  strings, lists and dicts only; a file that holds anything else (a pickled object,
  random bytes, a truncated write) is refused with one line, and nothing in it runs.
* `run_folder` creates an output folder only for a run that passed validation, marks it
  with an ``INCOMPLETE`` file until the run has written everything, turns SIGTERM into
  the same clean stop as Ctrl-C, and removes a folder it created that holds nothing of value.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import threading
import types
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from dacast.atomic import write_atomic
from dacast.workflow.schema import ConfigError

#: The marker file of a run that has not finished (its text says why).
INCOMPLETE = "INCOMPLETE"


def fsync_dir(folder: Path) -> None:
    """Sync a folder's entries to disk (after a rename into it); a no-op where the file system cannot."""
    with contextlib.suppress(OSError):  # not every file system can sync a folder
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary path beside ``path``, sync it, and rename it to ``path``.

    Args:
        path: the file to (re)place.
        write: writes the whole file at the path it is given (``torch.save``, ``Dataset.to_netcdf``, ...).

    Returns:
        ``path``. On any failure the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    with _signals_deferred():
        write_atomic(path, write)
        fsync_dir(path.parent)
    return path


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends (main thread; they are delivered right after).

    A KeyboardInterrupt raised inside a writer that holds a lock can leave it held: xarray's
    netCDF writer then waits for its own lock in its cleanup, for ever (seen in the kill suite).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def write_text(path: str | Path, text: str) -> Path:
    """``text`` into ``path`` (UTF-8), atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def jsonable(obj: Any, *, as_text: bool = False) -> Any:
    """``obj`` with every NaN or infinite float replaced by ``None`` (JSON has no such numbers).

    With ``as_text`` they become the strings ``"inf"``, ``"-inf"``, ``"nan"`` instead: for settings,
    where ``inf`` means something (no localization) and must not read as "not set".
    """
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else (str(obj) if as_text else None)
    if isinstance(obj, dict):
        return {k: jsonable(v, as_text=as_text) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v, as_text=as_text) for v in obj]
    return obj


def write_json(path: str | Path, obj: Any) -> Path:
    """``obj`` as indented JSON into ``path``, atomically; NaN and inf become ``null`` (see `jsonable`)."""
    return write_text(path, json.dumps(jsonable(obj), indent=2, allow_nan=False) + "\n")


def cf_attributes(title: str, source: str, configuration: dict[str, Any]) -> dict[str, str]:
    """Global attributes of a results file: CF-1.10, title, the command, when and by which version, the settings."""
    import dacast  # here: the package imports the workflow at its import

    return {
        "Conventions": "CF-1.10",
        "title": title,
        "source": source,
        "history": f"{datetime.now(UTC).isoformat(timespec='seconds')} written by dacast {dacast.__version__}",
        "configuration": json.dumps(configuration),
    }


def save_checkpoint(obj: dict[str, Any], path: str | Path) -> Path:
    """``torch.save`` of ``obj`` (tensors, numbers, strings, lists, dicts) into ``path``, atomically."""
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The dict saved by `save_checkpoint`, read without running any code it might hold.

    Raises:
        ConfigError: missing, unreadable, truncated, not a checkpoint, or holding objects other than
            tensors and plain data (``weights_only=True`` refuses them); the message is one line.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"nothing to resume: {path} does not exist")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many kinds for a corrupt or foreign file
        text = " ".join(str(err).split())[:160]
        raise ConfigError(
            f"cannot resume from {path}: not a readable dacast checkpoint ({type(err).__name__}: {text})"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"cannot resume from {path}: not a dacast checkpoint (holds a {type(data).__name__})")
    return data


class Stopped(KeyboardInterrupt):
    """The run was asked to stop (SIGTERM); handled like Ctrl-C."""


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(_signum: int, _frame: types.FrameType | None) -> None:
        raise Stopped("terminated (SIGTERM)")

    old = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _worth_keeping(folder: Path, keep: tuple[str, ...]) -> bool:
    return any((folder / name).exists() for name in keep)


@contextlib.contextmanager
def run_folder(out: str | Path, *, resume: bool = False, keep: tuple[str, ...] = ()) -> Iterator[Path]:
    """The output folder of one run, marked ``INCOMPLETE`` until the block finishes.

    Args:
        out: the folder (created with its parents unless it exists).
        resume: the run continues one found in ``out`` (the folder must exist).
        keep: files that make an unfinished folder worth keeping (checkpoints, finished iterations);
            a folder this call created that holds none of them is removed when the run fails.

    Raises:
        ConfigError: the folder cannot be created (e.g. a path through a file), or is missing on resume.
    """
    folder = Path(out)
    existed = folder.is_dir()
    if resume and not existed:
        raise ConfigError(f"nothing to resume: {folder} does not exist")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        marker = write_text(folder / INCOMPLETE, f"started {_now()}; this run has not finished\n")
    except OSError as err:
        raise ConfigError(f"cannot write results to {folder}: {err.strerror or err}") from None
    try:
        with _sigterm_as_interrupt():
            yield folder
    except BaseException as err:
        if not existed and not _worth_keeping(folder, keep):
            shutil.rmtree(folder, ignore_errors=True)
        else:
            reason = "interrupted" if isinstance(err, KeyboardInterrupt) else f"failed: {type(err).__name__}: {err}"
            with contextlib.suppress(OSError):
                write_text(marker, f"started earlier; {reason} at {_now()}; this run has not finished\n")
        raise
    marker.unlink(missing_ok=True)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


__all__ = [
    "INCOMPLETE",
    "Stopped",
    "atomic_write",
    "fsync_dir",
    "jsonable",
    "load_checkpoint",
    "run_folder",
    "save_checkpoint",
    "write_json",
    "write_text",
]
