"""The command line's promises: ``--version``, help, one-line usage errors (exit 2), Ctrl-C (exit 130), ``--check``."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

import dacast
from dacast.cli import app
from dacast.cli import bda as bda_cli
from dacast.cli import nowcast as nowcast_cli
from dacast.cli import surrogate as surrogate_cli

main_cli = importlib.import_module("dacast.cli.main")  # the module; ``dacast.cli.main`` is also the entry function
runner = CliRunner()
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NOWCAST_YAML = str(EXAMPLES / "nowcast_train.yaml")


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"dacast {dacast.__version__}"


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        (["run", "--help"], "[default: runs/<preset or file stem>]"),
        (["bda", "run", "--help"], "[default: runs/<name>, runs/<name>-dask or runs/<name>-tiled]"),
        (["nowcast", "train", "--help"], "--check"),
        (["surrogate", "run", "--help"], "--check"),
        (["--help"], "--version"),
    ],
)
def test_help_shows_bracketed_defaults(args: list[str], shown: str) -> None:
    result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert shown in result.stdout


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["run", "lorenz63-etkf", "--members", "abc"], ("'--members'", "see 'dacast run --help'")),
        (["run", "lorenz63-etkf", "--nope"], ("No such option", "--nope")),
        (["run"], ("Missing argument",)),
        (["bda", "run", "bda-small", "--grid", "1.5"], ("'--grid'", "dacast bda run --help")),
        (["bda", "run", "bda-small", "--resume", "true"], ("unexpected extra argument",)),
        (["surrogate", "run"], ("Missing argument",)),
        (["nowcast", "train", NOWCAST_YAML, "--max-steps", "x"], ("'--max-steps'",)),
        (["nowcast", "run", "--leads", "many"], ("'--leads'",)),
        (["nowcast", "frobnicate"], ("No such command",)),
        (["frobnicate"], ("No such command",)),
    ],
)
def test_usage_errors_are_one_line(
    args: list[str], fragments: tuple[str, ...], one_error_line: Callable[..., str]
) -> None:
    one_error_line(runner.invoke(app, args), *fragments)


def test_sub_applications_on_their_own_give_one_line_too(one_error_line: Callable[..., str]) -> None:
    one_error_line(runner.invoke(surrogate_cli.app, ["run", "surrogate-lorenz63", "--iterations", "x"]), "iterations")
    one_error_line(runner.invoke(bda_cli.app, ["run", "--members"]), "--members")


def test_resume_is_a_plain_flag(tmp_path: Path) -> None:
    result = runner.invoke(app, ["bda", "run", "bda-small", "--resume", "--check", "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "o").exists()


class _Interrupt:
    """Stands in for a run function and raises KeyboardInterrupt, as Ctrl-C (or SIGTERM turned into it) does."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt


@pytest.mark.parametrize(
    ("module", "name", "args", "hint"),
    [
        (main_cli, "run_experiment", ["run", "lorenz63-etkf", "--cycles", "3"], None),
        (bda_cli, "run_bda_experiment", ["bda", "run", "bda-small", "--cycles", "1"], "--resume"),
        (surrogate_cli, "run_surrogate", ["surrogate", "run", "surrogate-lorenz63"], "--resume"),
        (nowcast_cli, "train_from_spec", ["nowcast", "train", NOWCAST_YAML, "--device", "cpu"], "rerun"),
    ],
)
def test_ctrl_c_is_one_line_and_exit_130(
    module: Any, name: str, args: list[str], hint: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(module, name, _Interrupt())
    result = runner.invoke(app, [*args, "--no-progress"])
    assert result.exit_code == 130, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("interrupted"), result.stderr
    if hint is None:
        assert lines[0] == "interrupted"
    else:
        assert hint in lines[0]


@pytest.mark.parametrize(
    "args",
    [
        ["run", "lorenz63-etkf", "--cycles", "3"],
        ["bda", "run", "bda-small", "--cycles", "1"],
        ["surrogate", "run", "surrogate-lorenz63"],
        ["nowcast", "run", "--source", "mch", "--start", "2015-05-15T16:30"],
        ["nowcast", "train", NOWCAST_YAML],
    ],
)
def test_an_out_folder_that_cannot_be_made_is_one_line(
    args: list[str], tmp_path: Path, one_error_line: Callable[..., str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    for out in ("/dev/null/x", str(blocker / "sub"), "a" * 300):
        one_error_line(runner.invoke(app, [*args, "--out", out]), "cannot create")
    assert sorted(os.listdir(tmp_path)) == ["file"]


@pytest.mark.parametrize(
    ("args", "key"),
    [
        (["run", "lorenz96-letkf", "--members", "9"], "members"),
        (["bda", "run", "bda-256", "--grid", "128"], "grid"),
        (["surrogate", "run", "surrogate-lorenz96", "--iterations", "2"], "iterations"),
        (["nowcast", "train", NOWCAST_YAML, "--max-steps", "7"], "training"),
    ],
)
def test_check_prints_the_resolved_configuration_and_creates_nothing(
    args: list[str], key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, [*args, "--check"])
    assert result.exit_code == 0, result.output
    resolved = yaml.safe_load(result.stdout)
    assert key in resolved and os.listdir(tmp_path) == []
    Path("again.yaml").write_text(result.stdout)
    command = args[:2] if args[0] in ("bda", "surrogate", "nowcast") else args[:1]
    again = runner.invoke(app, [*command, "again.yaml", "--check"])
    assert again.exit_code == 0 and again.stdout == result.stdout, again.output


def test_check_refuses_what_cannot_fit_with_the_estimate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_error_line: Callable[..., str]
) -> None:
    monkeypatch.chdir(tmp_path)
    line = one_error_line(
        runner.invoke(app, ["bda", "run", "bda-small", "--members", str(10**12), "--check"]),
        "members=1000000000000 x grid 64^2",
    )
    assert "needs about" in line and "this machine has" in line
    one_error_line(runner.invoke(app, ["run", "lorenz63-etkf", "--seed", str(2**70), "--check"]), "seed")
    assert os.listdir(tmp_path) == []


class _Result:
    """What `run_experiment` returns, as far as the report reads it."""

    def __init__(self, tmp: Path) -> None:
        self.summary = {
            "rmse_analysis": 0.61,
            "expected_rmse_analysis": 0.60,
            "rmse_forecast": 0.9,
            "spread_analysis": 0.5,
            "diverged": False,
            "wall_time_s": 0.1,
            "device": "cpu",
        }
        self.paths = type("Paths", (), {"results": tmp / "r.nc", "summary": tmp / "s.json", "plots": ()})()


@pytest.mark.parametrize(
    ("args", "compared"),
    [
        (["run", "lorenz63-etkf"], True),
        (["run", "lorenz63-etkf", "--members", "10", "--seed", "3000"], True),  # the preset's own values
        (["run", "lorenz63-etkf", "--members", "4"], False),
        (["run", "lorenz63-etkf", "--cycles", "7"], False),
        (["run", "lorenz63-etkf", "--seed", "1"], False),
    ],
)
def test_expected_rmse_only_for_the_presets_own_settings(
    args: list[str], compared: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(main_cli, "run_experiment", lambda *a, **k: _Result(tmp_path))
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert ("expected 0.6" in result.stdout) is compared


def test_expected_rmse_after_a_yaml_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(main_cli, "run_experiment", lambda *a, **k: _Result(tmp_path))
    Path("same.yaml").write_text("preset: lorenz63-etkf\n")
    Path("other.yaml").write_text("preset: lorenz63-etkf\nfilter: {inflation: 1.05}\n")
    assert "expected 0.6" in runner.invoke(app, ["run", "same.yaml"]).stdout
    assert "expected 0.6" not in runner.invoke(app, ["run", "other.yaml"]).stdout


def test_the_console_script_gives_one_line_for_a_usage_error() -> None:
    """The real process: Typer's box is gone, exit status 2."""
    proc = subprocess.run(
        [sys.executable, "-c", "from dacast.cli import main; main()", "run", "lorenz63-etkf", "--members", "abc"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=120,
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")
    assert proc.stdout == ""
