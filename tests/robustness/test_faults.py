"""Fault injection: runs killed at random points (SIGINT, SIGTERM, SIGKILL, a kill inside a checkpoint write).

Each killed run is continued with ``--resume`` (or started again where nothing was kept)
until it finishes; its summary must then equal an uninterrupted run's, number for
number. After every kill the output folder is either absent, or marked ``INCOMPLETE``,
or finished (``summary.json`` and no marker), and every checkpoint in it loads.

The number of kills follows the Hypothesis profile (``ci``: 4 BDA kills and 1 surrogate
kill; ``--hypothesis-profile=long``: 200 and 10); the counts are printed at the end of the module.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import signal
import subprocess
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from hypothesis import settings

from dacast.workflow.bda.checkpoint import CHECKPOINT
from dacast.workflow.bda.checkpoint import load_checkpoint as load_bda_checkpoint
from dacast.workflow.bda.config import bda_config_from_dict
from dacast.workflow.files import INCOMPLETE

ROOT = Path(__file__).resolve().parents[2]
# SIGUSR1 makes a child print every thread's stack (for a process that outlives its signal).
CLI = (
    "import faulthandler, signal\n"
    "faulthandler.register(signal.SIGUSR1, all_threads=True)\n"
    "from dacast.cli import main; main()\n"
)
# The same, with os.replace replaced by a hard exit the first time it would publish a checkpoint:
# the process dies after the temporary file is written and before the rename.
CLI_DIE_IN_CHECKPOINT = (
    "import os, sys\n"
    "real = os.replace\n"
    "def replace(src, dst, *a, **k):\n"
    "    if str(dst).endswith(('checkpoint.pt', 'state.json')) and os.path.exists(dst):\n"
    "        os._exit(9)\n"
    "    return real(src, dst, *a, **k)\n"
    "os.replace = replace\n"
    "from dacast.cli import main; main()\n"
)
BDA_YAML = """\
preset: bda-small
members: 12
grid: 32
cycles: 16
spinup_minutes: 10.0
ensemble_pool: 6
forecast_every: 8
forecast_minutes: 2.0
device: cpu
checkpoint_every: 1
"""
SURROGATE_YAML = """\
preset: surrogate-lorenz96
cycles: 200
burn_in: 1.0
iterations: 1
test_cycles: 100
test_starts: 5
free_leads: 8
train: {epochs: 2, batch_size: 64, lr: 0.003, patience: 2}
"""
BDA_CONFIG = bda_config_from_dict(yaml.safe_load(BDA_YAML))
SIGNALS = (signal.SIGKILL, signal.SIGTERM, signal.SIGINT)
COUNTS: Counter[str] = Counter()


def _numbers(summary: Path) -> dict[str, float]:
    spec = importlib.util.spec_from_file_location("compare_runs", ROOT / "tools" / "compare_runs.py")
    assert spec is not None and spec.loader is not None
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool.numbers(json.loads(summary.read_text(encoding="utf-8")))


def _kills(ci: int, long: int) -> int:
    """How many kills: ``long`` under ``--hypothesis-profile=long``, else ``ci``."""
    return long if settings.get_current_profile_name() == "long" else ci


def _start(args: list[str], code: str = CLI) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT
    )


def _finish(args: list[str], code: str = CLI, timeout: float = 300) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, timeout=timeout, cwd=ROOT)


def _check_folder(out: Path) -> None:
    """After a kill: absent, marked INCOMPLETE, or finished; never a folder that looks finished but is not."""
    if not out.exists():
        return
    if not (out / INCOMPLETE).exists():
        assert (out / "summary.json").is_file(), f"{out} has neither a summary nor an INCOMPLETE marker"
    leftovers = [p.name for p in out.iterdir() if p.name.endswith(".tmp") and not p.name.startswith(".")]
    assert not leftovers, leftovers


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    if COUNTS:
        lines = ["", "fault injection: run  kills  resumed  restarted  identical  hung"]
        for run in sorted({k.split(":")[0] for k in COUNTS}):
            c = {k.split(":")[1]: v for k, v in COUNTS.items() if k.startswith(run + ":")}
            lines.append(
                f"  {run:<18} {c.get('kills', 0):>5} {c.get('resumed', 0):>8} {c.get('restarted', 0):>10}"
                f" {c.get('identical', 0):>10} {c.get('hung', 0):>5}"
            )
        print("\n".join(lines), file=sys.__stdout__)


def _kill_and_resume(
    name: str,
    args: list[str],
    out: Path,
    n_kills: int,
    window: tuple[float, float],
    rng: random.Random,
    check: Callable[[Path], object],
) -> None:
    """Kill a fresh run ``n_kills`` times at random moments and signals, resuming after each; then finish it."""
    for _ in range(n_kills):
        resume = out.exists() and any((out / f).exists() for f in (CHECKPOINT, "state.json"))
        proc = _start([*args, *(["--resume"] if resume else [])])
        time.sleep(rng.uniform(*window))
        sig = rng.choice(SIGNALS)
        proc.send_signal(sig)
        try:
            _, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            # Seen once in 112 kills of a long run (after a resume), never reproduced in 50 targeted tries:
            # the process outlived its signal. An open bug (docs/reliability.md): it fails the long profile,
            # and in the ci profile it is counted, warned about and the process is killed.
            proc.send_signal(signal.SIGUSR1)  # dump the stacks of the stuck process, then end it
            time.sleep(2)
            proc.kill()
            _, err = proc.communicate()
            COUNTS[f"{name}:hung"] += 1
            message = f"{name}: the process outlived {sig.name} by 120 s; its threads:\n{err.decode()[-4000:]}"
            if settings.get_current_profile_name() == "long":
                raise AssertionError(message) from None
            warnings.warn(message, stacklevel=1)
            continue
        assert b"Traceback" not in err, err.decode()[-2000:]
        # -SIGINT: Ctrl-C before the interpreter installed its handler (nothing imported, nothing written).
        allowed = (0, 130, 2, -signal.SIGKILL, -signal.SIGTERM, -signal.SIGINT)
        assert proc.returncode in allowed, (proc.returncode, err.decode())
        if proc.returncode == 2:  # refused: only a clear one-line reason is acceptable
            assert err.decode().strip().count("\n") == 0, err.decode()
        COUNTS[f"{name}:kills"] += 1
        if settings.get_current_profile_name() == "long":  # progress of a long run
            print(f"{name}: {COUNTS[name + ':kills']} kills", file=sys.__stdout__, flush=True)
        _check_folder(out)
        check(out)  # whatever was kept is whole
    resume = out.exists() and any((out / f).exists() for f in (CHECKPOINT, "state.json"))
    done = _finish([*args, *(["--resume"] if resume else [])])
    assert done.returncode == 0, done.stderr.decode()
    COUNTS[f"{name}:{'resumed' if resume else 'restarted'}"] += 1
    assert not (out / INCOMPLETE).exists()


def _state_loads(out: Path) -> None:
    if (out / "state.json").exists():
        json.loads((out / "state.json").read_text(encoding="utf-8"))


@dataclass(frozen=True)
class _Reference:
    """An uninterrupted run: its command (without ``--out``), its summary numbers and its wall time (s)."""

    args: list[str]
    numbers: dict[str, float]
    seconds: float


def _reference(folder: Path, kind: str, text: str) -> _Reference:
    (folder / f"{kind}.yaml").write_text(text, encoding="utf-8")
    args = [kind, "run", str(folder / f"{kind}.yaml"), "--no-plots", "--no-progress"]
    t0 = time.perf_counter()
    assert _finish([*args, "--out", str(folder / "reference")]).returncode == 0
    return _Reference(args, _numbers(folder / "reference" / "summary.json"), time.perf_counter() - t0)


@pytest.fixture(scope="module")
def bda(tmp_path_factory: pytest.TempPathFactory) -> _Reference:
    """The BDA run every BDA test kills, run once to the end."""
    return _reference(tmp_path_factory.mktemp("bda"), "bda", BDA_YAML)


def _bda_checkpoint_loads(out: Path) -> None:
    if (out / CHECKPOINT).exists():
        load_bda_checkpoint(out / CHECKPOINT, BDA_CONFIG)


def test_bda_killed_anywhere_resumes_to_identical_results(bda: _Reference, tmp_path: Path) -> None:
    rng = random.Random(20261129)
    n = _kills(ci=4, long=200)
    for k in range((n + 1) // 2):  # two kills per run, each followed by a resume
        out = tmp_path / f"killed{k}"
        args = [*bda.args, "--out", str(out)]
        _kill_and_resume("bda", args, out, 2, (0.5, bda.seconds), rng, _bda_checkpoint_loads)
        assert _numbers(out / "summary.json") == bda.numbers
        COUNTS["bda:identical"] += 1


def test_bda_killed_inside_a_checkpoint_write_resumes(bda: _Reference, tmp_path: Path) -> None:
    out = tmp_path / "torn"
    died = _finish([*bda.args, "--out", str(out)], code=CLI_DIE_IN_CHECKPOINT)
    assert died.returncode == 9  # killed between writing the temporary file and the rename
    COUNTS["bda-checkpoint-write:kills"] += 1
    assert (out / INCOMPLETE).exists() and not (out / "summary.json").exists()
    load_bda_checkpoint(out / CHECKPOINT, BDA_CONFIG)  # the previous checkpoint, whole
    assert _finish([*bda.args, "--out", str(out), "--resume"]).returncode == 0
    COUNTS["bda-checkpoint-write:resumed"] += 1
    assert _numbers(out / "summary.json") == bda.numbers
    COUNTS["bda-checkpoint-write:identical"] += 1


def test_surrogate_killed_anywhere_resumes_to_identical_results(tmp_path: Path) -> None:
    ref = _reference(tmp_path, "surrogate", SURROGATE_YAML)
    rng = random.Random(7)
    for k in range(_kills(ci=1, long=10)):
        out = tmp_path / f"killed{k}"
        _kill_and_resume("surrogate", [*ref.args, "--out", str(out)], out, 1, (0.5, ref.seconds), rng, _state_loads)
        assert _numbers(out / "summary.json") == ref.numbers
        COUNTS["surrogate:identical"] += 1


def test_bda_resume_refuses_a_corrupt_or_hostile_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "bda.yaml").write_text(BDA_YAML, encoding="utf-8")
    out = tmp_path / "run"
    out.mkdir()
    witness = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):  # a pickle that would create a file when loaded without weights_only
            return (open, (str(witness), "w"))

    import torch

    torch.save({"format": "x", "payload": Payload()}, out / CHECKPOINT)
    args = ["bda", "run", str(tmp_path / "bda.yaml"), "--out", str(out), "--resume", "--no-plots", "--no-progress"]
    hostile = _finish(args)
    assert hostile.returncode == 2 and not witness.exists()
    assert hostile.stderr.decode().strip().startswith("error:") and hostile.stderr.decode().strip().count("\n") == 0
    (out / CHECKPOINT).write_bytes(os.urandom(4096))
    garbage = _finish(args)
    assert garbage.returncode == 2 and b"Traceback" not in garbage.stderr
    assert "checkpoint" in garbage.stderr.decode()
