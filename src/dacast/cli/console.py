"""The consoles, the one-line error exit and the command group shared by every dacast command.

Bad input is one red ``error: ...`` line on stderr and exit code 2 (`fail`), whether the
configuration is wrong (`ConfigError`) or the command line itself (an unknown option, a
missing argument, ``--members abc``: `OneLineErrors`, the class of every dacast Typer app,
turns Click's usage errors into the same line). Ctrl-C is one ``interrupted`` line and exit
code 130 (`interrupted`). ``--check`` prints the resolved configuration (`print_config`).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import numpy as np
import typer
import yaml
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from dacast.workflow.runtime import console as out
from dacast.workflow.schema import ConfigError

R = TypeVar("R")

err = Console(stderr=True)


#: The metavar of a boolean flag: blank, so that ``--help`` shows ``--resume``, not ``--resume <bool>``
#: (which reads as if it took a value).
FLAG = " "


#: The flags every run command shares, declared once.
CheckFlag = Annotated[
    bool, typer.Option("--check", help="Validate, print the resolved configuration as YAML, and stop.", metavar=FLAG)
]
ProgressFlag = Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.", metavar=FLAG)]
PlotsFlag = Annotated[bool, typer.Option("--plots/--no-plots", help="Write PNG figures.", metavar=FLAG)]
#: ``--out`` and ``--resume`` of the applications whose runs live in ``runs/<preset name>``.
OutOption = Annotated[Path | None, typer.Option(help="output folder (default runs/<preset name>)")]
ResumeFlag = Annotated[bool, typer.Option("--resume", help="continue the run found in --out", metavar=FLAG)]


def _click_error(name: str) -> type[Exception]:
    """Click's exception class ``name`` (Typer's vendored copy of Click, or Click itself)."""
    return next(c for c in typer.BadParameter.__mro__ if c.__name__ == name)


#: Click's base of every command-line error, and of the usage errors (exit code 2).
ClickException, UsageError = _click_error("ClickException"), _click_error("UsageError")
#: Exit code of bad input, and of a run stopped by Ctrl-C (128 + SIGINT).
EXIT_BAD_INPUT, EXIT_INTERRUPTED = 2, 130


def fail(message: str) -> typer.Exit:
    """Print ``error: message`` on one red stderr line; return the exit (code 2) to raise."""
    text = " ".join(str(message).split())
    err.print(f"[bold red]error:[/] {escape(text)}", markup=True, highlight=False, soft_wrap=True)
    return typer.Exit(code=EXIT_BAD_INPUT)


def parse_seeds(text: str | None) -> list[int] | None:
    """``--seeds 3000,3001`` as a list of integers (None when not given); one-line `fail` when it is not one."""
    if text is None:
        return None
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise fail(f"--seeds must be comma-separated integers, got {text!r}") from None


@contextlib.contextmanager
def run_errors(out_dir: Path) -> Iterator[None]:
    """Around a command's run: a `ConfigError` or a failed write to ``out_dir`` becomes the one-line exit 2."""
    try:
        yield
    except ConfigError as err:
        raise fail(str(err)) from None
    except OSError as err:
        raise fail(f"cannot write results to {out_dir}: {err}") from None


def interrupted(hint: str = "") -> typer.Exit:
    """Print ``interrupted`` (and ``hint``, how to continue) on one stderr line; return the exit (130) to raise."""
    err.print(f"[bold yellow]interrupted[/]{escape(hint)}", markup=True, highlight=False, soft_wrap=True)
    return typer.Exit(code=EXIT_INTERRUPTED)


class OneLineErrors(TyperGroup):
    """A Typer group whose command-line errors are one ``error:`` line (exit 2) and whose Ctrl-C is one line (130).

    Typer draws a multi-line box for a usage error and exits silently with 130 on Ctrl-C; this
    class runs Typer's own ``main`` in non-standalone mode and prints one line instead. A
    command with a ``--resume`` option says so when interrupted; ``--help`` works as before.
    """

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the command line ``args``; exit (or, with ``standalone_mode=False``, return) its status."""
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except UsageError as error:
            code = _usage_error(error)
        except ClickException as error:  # e.g. a file Click could not open
            code = _exit_code(fail(error.format_message()))  # type: ignore[attr-defined]
        except typer.Abort:  # end of input at a prompt
            code = _exit_code(interrupted())
        code = code if isinstance(code, int) else 0
        if not standalone_mode:
            return code
        sys.exit(code)

    def invoke(self, ctx: typer.Context) -> Any:
        """Invoke the sub-command; Ctrl-C (or SIGTERM turned into it) becomes one ``interrupted`` line."""
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            command = self.get_command(ctx, ctx.invoked_subcommand or "")
            resumable = command is not None and any(p.name == "resume" for p in command.params)
            hint = ctx.meta.get("interrupt_hint") or (
                "; rerun with --resume to continue from the last checkpoint" if resumable else ""
            )
            raise interrupted(hint) from None


def _exit_code(exit_: typer.Exit) -> int:
    return int(getattr(exit_, "exit_code", EXIT_BAD_INPUT))


def _usage_error(error: Exception) -> int:
    ctx = getattr(error, "ctx", None)
    if type(error).__name__ == "NoArgsIsHelpError" and ctx is not None:  # a group called without a command
        typer.echo(ctx.get_help())
        return EXIT_BAD_INPUT
    message = error.format_message()  # type: ignore[attr-defined]
    where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    return _exit_code(fail(f"{message}{where}"))


def set_interrupt_hint(ctx: typer.Context, hint: str) -> None:
    """Say how to continue when the running command (its ``ctx``) is interrupted (e.g. ``"; rerun to continue"``)."""
    ctx.meta["interrupt_hint"] = hint


def check_out_dir(path: Path, option: str = "--out") -> None:
    """Raise `fail` when the output folder ``path`` cannot be created: a file on its way, or no permission.

    Nothing is created; the first existing folder on the way must be a writable folder.
    """
    try:
        existing = Path(os.path.abspath(path))
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
    except (OSError, ValueError) as error:  # a name too long, a NUL in it
        raise fail(f"cannot create {option} {path}: {error}") from None
    if not existing.is_dir():
        raise fail(f"cannot create {option} {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise fail(f"cannot create {option} {path}: {existing} is not writable")


def plain(value: Any) -> Any:
    """``value`` as YAML-ready data: dataclasses and mappings as dicts, tuples as lists, paths and times as text."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, Path | np.datetime64):
        return str(value)
    return value


def print_config(data: Mapping[str, Any]) -> None:
    """Print a resolved configuration as YAML on stdout (``--check``)."""
    typer.echo(yaml.safe_dump(plain(data), sort_keys=False, allow_unicode=True).rstrip())


def run_or_check(
    out: Path | None,
    name: str,
    check: bool,
    settings: Callable[[], Mapping[str, Any]],
    launch: Callable[[Path], R],
    refused: tuple[type[Exception], ...] = (ValueError,),
) -> R | None:
    """The part every application's ``run`` command shares, once its configuration is loaded.

    ``--out`` (default ``runs/<name>``) is checked before anything starts; with ``--check`` the
    resolved ``settings()`` are printed and None returned; else ``launch(out_dir)`` runs under
    `run_errors`, and a ``refused`` error (a saved model that does not fit, too few samples) is
    the one-line exit 2 too.
    """
    out_dir = out or Path("runs") / name
    check_out_dir(out_dir)
    if check:
        print_config(settings())
        return None
    with run_errors(out_dir):
        try:
            return launch(out_dir)
        except refused as err:
            raise fail(str(err)) from None


def print_finished(wall_time_s: float, summary: str | Path | None) -> None:
    """The last line of an application's run: its wall time (s) and where its summary is."""
    out.print(f"wall time {wall_time_s:.1f} s; summary: {summary}", highlight=False)


def print_presets(registry: Mapping[str, Any]) -> None:
    """``name: description`` of each preset of a registry, one per line."""
    for name, preset in registry.items():
        out.print(f"{name}: {preset.description}", highlight=False)


__all__ = [
    "OutOption",
    "ResumeFlag",
    "run_or_check",
    "print_finished",
    "print_presets",
    "CheckFlag",
    "PlotsFlag",
    "ProgressFlag",
    "run_errors",
    "FLAG",
    "EXIT_BAD_INPUT",
    "EXIT_INTERRUPTED",
    "OneLineErrors",
    "check_out_dir",
    "err",
    "fail",
    "interrupted",
    "parse_seeds",
    "out",
    "plain",
    "print_config",
    "set_interrupt_hint",
]
