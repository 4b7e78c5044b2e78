"""Run every application through the CLI and keep the numbers of its summary: a before/after check.

A refactoring that must not change results is checked by running this script on
the code before and after it and comparing the two JSON files::

    python tools/compare_runs.py run --set quick --out /tmp/before   # on the old code
    python tools/compare_runs.py run --set quick --out /tmp/after    # on the new code
    python tools/compare_runs.py diff /tmp/before/numbers.json /tmp/after/numbers.json

``--set quick`` runs one short run of each application (twin, surrogate cycle,
BDA twin, radar nowcast; under a minute on 2 cores); ``--set presets`` runs
every preset (the long ones shortened by command-line flags, listed in
`PRESET_RUNS`). Only numbers are kept: wall times, dates, versions, paths and
devices are dropped, since they differ from run to run.

``diff`` prints one line per run: the number of values compared, how many are
bit-identical, and the largest relative difference; it exits 1 when a value
differs by more than ``--rtol`` or a key is missing on one side.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

#: Keys of a summary that are not results (timings, provenance, paths, devices).
VOLATILE = ("time", "seconds", "created", "version", "device", "path", "summary", "plots", "checkpoint")

# name -> CLI arguments (after ``dacast``); ``{out}`` is replaced by the run's folder.
QUICK_RUNS: dict[str, list[str]] = {
    "twin-lorenz96-letkf": ["run", "lorenz96-letkf", "--cycles", "200", "--out", "{out}"],
    "twin-lorenz63-etkf": ["run", "lorenz63-etkf", "--cycles", "200", "--out", "{out}"],
    "surrogate-lorenz96": ["surrogate", "run", "{yaml:surrogate}", "--out", "{out}"],
    "bda-small": ["bda", "run", "{yaml:bda}", "--out", "{out}"],
    "nowcast-mch-dis": [
        "nowcast", "run", "--source", "mch", "--start", "2015-05-15T16:30", "--method", "extrapolation",
        "--motion", "dis", "--leads", "6", "--out", "{out}",
    ],
}  # fmt: skip

#: Every preset; the long ones shortened (flags say how).
PRESET_RUNS: dict[str, list[str]] = {
    "lorenz63-etkf": ["run", "lorenz63-etkf", "--out", "{out}"],
    "lorenz96-etkf": ["run", "lorenz96-etkf", "--out", "{out}"],
    "lorenz96-letkf": ["run", "lorenz96-letkf", "--out", "{out}"],
    "lorenz96-letkf-big": ["run", "lorenz96-letkf-big", "--out", "{out}"],
    "bda-small": ["bda", "run", "bda-small", "--out", "{out}"],
    "bda-256 (4 cycles)": ["bda", "run", "bda-256", "--cycles", "4", "--out", "{out}"],
    "bda-256-1000 (2 cycles)": ["bda", "run", "bda-256-1000", "--cycles", "2", "--out", "{out}"],
    "surrogate-lorenz96 (2 iterations)": [
        "surrogate", "run", "surrogate-lorenz96", "--iterations", "2", "--out", "{out}",
    ],
    "surrogate-lorenz63 (1 iteration)": [
        "surrogate", "run", "surrogate-lorenz63", "--iterations", "1", "--out", "{out}",
    ],
    "nowcast-mch-dis": QUICK_RUNS["nowcast-mch-dis"],
    "nowcast-mch-trec": [
        "nowcast", "run", "--source", "mch", "--start", "2015-05-15T16:30", "--method", "extrapolation",
        "--out", "{out}",
    ],
}  # fmt: skip

#: Shortened configurations of the quick set (YAML, on top of a preset).
QUICK_YAML = {
    "surrogate": (
        "preset: surrogate-lorenz96\ncycles: 400\nburn_in: 2.0\niterations: 1\ntest_cycles: 200\ntest_starts: 20\n"
        "free_leads: 20\ntrain: {epochs: 2, batch_size: 64, lr: 0.003, patience: 2}\n"
        "tuned_inflations: [1.06, 1.2]\n"
    ),
    "bda": (
        "preset: bda-small\nmembers: 12\ngrid: 32\ncycles: 4\nspinup_minutes: 10.0\nensemble_pool: 6\n"
        "forecast_every: 2\nforecast_minutes: 4.0\ndevice: cpu\noutage_cycles: [2]\ncheckpoint_every: 2\n"
    ),
}


def numbers(value: Any, prefix: str = "") -> dict[str, float]:
    """Every number in a JSON document, flattened to ``{"a.b[2]": value}``; volatile keys are left out."""
    out: dict[str, float] = {}
    if isinstance(value, dict):
        for key, item in value.items():
            if any(word in str(key).lower() for word in VOLATILE):
                continue
            out |= numbers(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out |= numbers(item, f"{prefix}[{i}]")
    elif isinstance(value, bool):
        out[prefix] = float(value)
    elif isinstance(value, int | float):
        out[prefix] = float(value)
    elif value is None:
        out[prefix] = math.nan
    return out


def _nowcast_numbers(folder: Path) -> dict[str, float]:
    import csv

    with (folder / "scores.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return {f"{k}[{i}]": float(v) for i, row in enumerate(rows) for k, v in row.items() if k != "valid_time"}


def run_set(runs: dict[str, list[str]], out: Path, only: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Run each CLI command in-process into ``out/<name>`` and collect its numbers."""
    from typer.testing import CliRunner

    from dacast.cli import app

    out.mkdir(parents=True, exist_ok=True)
    for key, text in QUICK_YAML.items():
        (out / f"{key}.yaml").write_text(text, encoding="utf-8")
    result: dict[str, dict[str, float]] = {}
    for name, args in runs.items():
        if only and name not in only:
            continue
        folder = out / name.split(" ")[0]
        argv = [
            a.replace("{out}", str(folder)).replace("{yaml:surrogate}", str(out / "surrogate.yaml"))
            .replace("{yaml:bda}", str(out / "bda.yaml"))
            for a in args
        ]  # fmt: skip
        argv += ["--no-plots"]
        if argv[0] != "nowcast":
            argv += ["--no-progress"]
        t0 = time.perf_counter()
        res = CliRunner().invoke(app, argv, catch_exceptions=False)
        if res.exit_code != 0:
            raise SystemExit(f"{name}: exit {res.exit_code}: {res.output.strip()[-400:]}")
        if argv[0] == "nowcast":
            result[name] = _nowcast_numbers(folder)
        else:
            result[name] = numbers(json.loads((folder / "summary.json").read_text(encoding="utf-8")))
        print(f"{name}: {len(result[name])} numbers in {time.perf_counter() - t0:.1f} s", flush=True)
    (out / "numbers.json").write_text(json.dumps(result, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return result


def compare(
    before: dict[str, dict[str, float]], after: dict[str, dict[str, float]], rtol: float, *, allow_new: bool = False
) -> list[str]:
    """One line per run in either file; the lines of failing runs start with ``DIFF``.

    With ``allow_new`` a number that only ``after`` has (a summary key added since) is listed but
    does not fail; a number that ``after`` lost always does.
    """
    lines = []
    for name in sorted(set(before) | set(after)):
        a, b = before.get(name), after.get(name)
        if a is None or b is None:
            lines.append(f"DIFF {name}: only in {'after' if a is None else 'before'}")
            continue
        missing = sorted(set(a) - set(b)) if allow_new else sorted(set(a) ^ set(b))
        added = sorted(set(b) - set(a)) if allow_new else []
        same, worst, where = 0, 0.0, ""
        for key in sorted(set(a) & set(b)):
            x, y = a[key], b[key]
            if x == y or (math.isnan(x) and math.isnan(y)):
                same += 1
                continue
            rel = abs(x - y) / max(abs(x), abs(y), 1e-300) if math.isfinite(x) and math.isfinite(y) else math.inf
            if rel > worst:
                worst, where = rel, key
        bad = bool(missing) or worst > rtol
        text = f"{name}: {same}/{len(set(a) & set(b))} bit-identical, max rel. difference {worst:.2g}"
        text += f" ({where})" if where else ""
        text += f"; keys on one side only: {', '.join(missing[:5])}" if missing else ""
        text += f"; new keys: {', '.join(added[:5])}" if added else ""
        lines.append(("DIFF " if bad else "") + text)
    return lines


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a set and write OUT/numbers.json")
    run.add_argument("--set", choices=("quick", "presets"), default="quick")
    run.add_argument("--out", type=Path, required=True)
    run.add_argument("--only", nargs="*", help="run only these names")
    diff = sub.add_parser("diff", help="compare two numbers.json files")
    diff.add_argument("before", type=Path)
    diff.add_argument("after", type=Path)
    diff.add_argument("--rtol", type=float, default=0.0)
    diff.add_argument("--allow-new", action="store_true", help="numbers only AFTER has do not fail")
    args = parser.parse_args(argv)
    if args.command == "run":
        run_set(QUICK_RUNS if args.set == "quick" else PRESET_RUNS, args.out, args.only)
        return 0
    before = json.loads(args.before.read_text(encoding="utf-8"))
    after = json.loads(args.after.read_text(encoding="utf-8"))
    lines = compare(before, after, args.rtol, allow_new=args.allow_new)
    print("\n".join(lines))
    return 1 if any(line.startswith("DIFF") for line in lines) else 0


if __name__ == "__main__":
    sys.exit(main())
