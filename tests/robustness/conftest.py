"""Hypothesis profiles of the robustness tests, and the table of fuzz outcomes printed after the run.

Two profiles (registered in ``tests/conftest.py``, so that ``--hypothesis-profile`` works for any
test path), chosen with ``--hypothesis-profile`` (default ``ci``):

* ``ci``: a few examples per property, no deadline, derandomized (the same examples on
  every run, so CI is deterministic), no example database: the robustness tests
  take well under two minutes on two cores;
* ``long``: 2 500 examples per configuration entry point, 10 000 in all, randomized::

      python -m pytest tests/robustness --hypothesis-profile long

The fuzz tests count their cases per entry point in ``fuzz_counts``; the terminal
summary prints them as a table (entry point, cases, exit 0, exit 2, other).
"""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import settings

#: Where the fuzz tests keep their outcome counts: entry point -> Counter of "cases", "exit 0", "exit 2", "other".
FUZZ_COUNTS = pytest.StashKey[dict[str, Counter]]()


def pytest_configure(config: pytest.Config) -> None:
    """Load the ``ci`` profile unless ``--hypothesis-profile`` names one."""
    if not config.getoption("--hypothesis-profile", default=None):
        settings.load_profile("ci")


@pytest.fixture(scope="session")
def fuzz_counts(request: pytest.FixtureRequest) -> dict[str, Counter]:
    """Outcome counts per entry point, shared by every fuzz test of the session."""
    return request.config.stash.setdefault(FUZZ_COUNTS, {})


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """The fuzz outcomes as a table: entry point, cases, exit 0, exit 2, other."""
    counts = config.stash.get(FUZZ_COUNTS, None)
    if not counts:
        return
    profile = settings.get_current_profile_name()
    terminalreporter.section(f"configuration fuzz outcomes (hypothesis profile {profile!r})")
    columns = ("cases", "exit 0", "exit 2", "other")
    terminalreporter.write_line(f"{'entry point':<28}" + "".join(f"{c:>9}" for c in columns))
    total: Counter = Counter()
    for entry, counter in sorted(counts.items()):
        total.update(counter)
        terminalreporter.write_line(f"{entry:<28}" + "".join(f"{counter[c]:>9}" for c in columns))
    terminalreporter.write_line(f"{'all':<28}" + "".join(f"{total[c]:>9}" for c in columns))
