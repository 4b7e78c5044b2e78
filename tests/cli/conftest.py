"""Shared checks of the command-line tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest


def _one_error_line(result: Any, *fragments: str) -> str:
    """The single ``error:`` line of a run that exited with code 2 (no traceback, no box)."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output and "╭" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def one_error_line() -> Callable[..., str]:
    """``one_error_line(result, *fragments)``: the run's single ``error:`` line, holding every fragment."""
    return _one_error_line
