"""The consoles and the one-line error exit shared by every dacast command (stdout is the workflow's console)."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape

from dacast.workflow.runtime import console as out

err = Console(stderr=True)


def fail(message: str) -> typer.Exit:
    """Print ``error: message`` on one red stderr line; return the exit (code 2) to raise."""
    text = " ".join(str(message).split())
    err.print(f"[bold red]error:[/] {escape(text)}", markup=True, highlight=False, soft_wrap=True)
    return typer.Exit(code=2)


__all__ = ["err", "fail", "out"]
