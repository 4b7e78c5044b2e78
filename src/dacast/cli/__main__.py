"""``python -m dacast.cli``: the ``dacast`` command (used where the entry point may not be on PATH)."""

from dacast.cli import main

main()
