"""The reorganised workflow gives the numbers of the code before it, for one short run of each application.

Reference: ``workflow_quick_reference.json``, written by ``tools/compare_runs.py run
--set quick`` on commit 939a9bb, before the twin, surrogate and BDA loops moved onto
`dacast.workflow.cycle` and the applications into their own folders. Every value
of every ``summary.json`` (and the nowcast's score table) is compared; they were
bit-identical when the move landed, and the tolerance only allows for last-bit
differences of a different BLAS build. Keys added to a summary since (e.g. ``diverged``)
are allowed; a key that disappears fails.

The surrogate run trains a float32 network, whose kernels sum in another order on another
instruction set; over a chaotic training run that moves its scores by up to 1 %. So a
reference written by the same commit 939a9bb on a CPU of another torch capability sits beside
it (``workflow_quick_reference_avx2.json``: AVX2; on that CPU 939a9bb and the reorganised code
give bit-identical numbers, while 14 of the 26 surrogate numbers differ from the first file's),
and the test compares with the one of the machine's capability when there is one.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = Path(__file__).with_name("workflow_quick_reference.json")


def _reference() -> Path:
    """The reference of this CPU's torch capability (``..._avx2.json``) when there is one, else the first."""
    capability = torch.backends.cpu.get_cpu_capability().lower()
    own = REFERENCE.with_name(f"{REFERENCE.stem}_{capability}.json")
    return own if own.exists() else REFERENCE


def _compare_runs():  # tools/ is not a package: load the script by path
    spec = importlib.util.spec_from_file_location("compare_runs", ROOT / "tools" / "compare_runs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_numbers_module_keeps_results_and_drops_timings() -> None:
    tool = _compare_runs()
    got = tool.numbers({"rmse": 0.5, "wall_time_s": 3.0, "per": {"cycle_seconds": [1.0], "x": [1, None, True]}})
    assert set(got) == {"rmse", "per.x[0]", "per.x[1]", "per.x[2]"}
    lines = tool.compare({"a": {"x": 1.0}}, {"a": {"x": 1.0 + 1e-6}}, rtol=1e-9)
    assert lines[0].startswith("DIFF") and "x" in lines[0]
    grown, shrunk = {"a": {"x": 1.0, "y": 2.0}}, {"a": {}}
    assert not tool.compare({"a": {"x": 1.0}}, grown, rtol=0.0, allow_new=True)[0].startswith("DIFF")
    assert tool.compare({"a": {"x": 1.0}}, grown, rtol=0.0)[0].startswith("DIFF")
    assert tool.compare({"a": {"x": 1.0}}, shrunk, rtol=0.0, allow_new=True)[0].startswith("DIFF")


def test_quick_runs_equal_the_reference(tmp_path: Path, radar_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DACAST_RADAR_ROOT", str(radar_root))
    tool = _compare_runs()
    reference = json.loads(_reference().read_text(encoding="utf-8"))["runs"]
    got = tool.run_set(tool.QUICK_RUNS, tmp_path)
    lines = tool.compare(reference, got, rtol=1e-9, allow_new=True)  # keys added since (e.g. "diverged") may appear
    assert not [line for line in lines if line.startswith("DIFF")], "\n".join(lines)
    assert len(lines) == len(tool.QUICK_RUNS) == 5
