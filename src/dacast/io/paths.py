"""Where the shared radar data live."""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "DACAST_RADAR_ROOT"
"""Environment variable that overrides the radar data root."""

_RELATIVE = Path("shared") / "data" / "radar"


def default_radar_root() -> Path:
    """The folder holding the ``mch/``, ``fmi/`` and ``KNMI/`` radar archives.

    Order of lookup:

    1. ``$DACAST_RADAR_ROOT`` if set (it must be an existing folder);
    2. the first existing ``shared/data/radar`` found walking up from the
       current directory;
    3. the same walking up from this package's location (the repository is
       checked out beside a ``shared/`` folder: ``<repo>/../shared/data/radar``).

    The data are read in place; nothing is copied.

    Raises:
        FileNotFoundError: none of these exists (the message says how to fix it).
    """
    env = os.environ.get(ENV_VAR)
    if env:
        root = Path(env).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"${ENV_VAR}={env} is not an existing folder")
        return root.resolve()
    starts = (Path.cwd(), Path(__file__).resolve().parent)
    for start in starts:
        for folder in (start, *start.parents):
            candidate = folder / _RELATIVE
            if candidate.is_dir():
                return candidate.resolve()
    raise FileNotFoundError(
        f"no radar data root: set ${ENV_VAR}, or check the repository out beside a shared/ folder "
        f"holding {_RELATIVE.as_posix()} (searched upwards from {starts[0]} and {starts[1]})"
    )
