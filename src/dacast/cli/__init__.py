"""The ``dacast`` command line: one module per application (twin in `main`, ``bda``, ``surrogate``, ``nowcast``).

The commands only parse arguments, call the application's ``run`` and print;
bad input is one red ``error:`` line on stderr and exit code 2 (`console.fail`).
"""

from dacast.cli.main import app, main

__all__ = ["app", "main"]
