"""The runnable scripts of ``examples/``: each one's ``main(["--quick"])`` runs in-process and meets its claim."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_example(filename: str) -> ModuleType:
    """Import ``examples/<filename>`` from its path (the examples are scripts, not a package)."""
    name = "example_" + Path(filename).stem.lstrip("0123456789_")
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / filename)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up here
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def test_bring_your_own_model_letkf_beats_free_run_and_observations() -> None:
    result = load_example("01_bring_your_own_model.py").main(["--quick"])
    assert result["analysis_rmse"] < 0.5 * result["free_rmse"], result
    assert result["analysis_rmse"] < result["obs_error_std"], result


def test_bring_your_own_operator_letkf_beats_free_run() -> None:
    result = load_example("02_bring_your_own_operator.py").main(["--quick"])
    assert result["analysis_rmse"] < 0.3 * result["free_rmse"], result
    assert result["analysis_rmse"] < result["obs_error_std"], result
