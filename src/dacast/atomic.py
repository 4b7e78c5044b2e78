"""Atomic file writes: a temporary file beside the target, synced, then renamed onto it.

Imports nothing else from the package (like `dacast.geometry`), so the ML code, which may not
import `dacast.workflow`, writes checkpoints with it too; `dacast.workflow.files.atomic_write`
adds deferred signals and a synced folder around it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["write_atomic"]


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` on a temporary file beside ``path``, fsync it, then `os.replace` it onto ``path``.

    A reader never sees a half-written file; on failure the temporary file is removed and ``path`` is untouched.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
