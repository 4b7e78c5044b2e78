"""The ``dacast`` command line: one module per application (twin in `main`, ``bda``, ``surrogate``, ``nowcast``).

The commands only parse arguments, call the application's ``run`` and print;
bad input is one red ``error:`` line on stderr and exit code 2 (`console.fail`);
Ctrl-C is one ``interrupted`` line and exit code 130, even while the libraries load.
"""

import sys

try:
    from dacast.cli.main import app, main
except KeyboardInterrupt:  # Ctrl-C (or SIGTERM turned into it) while torch and friends are imported
    sys.stderr.write("interrupted\n")
    raise SystemExit(130) from None

__all__ = ["app", "main"]
