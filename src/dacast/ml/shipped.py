"""The trained nowcaster that ships inside the package, so `dacast nowcast run --method convlstm` works on a
fresh install without training and without a GPU.

The folder ``dacast/ml/weights/multires_ensemble/`` holds ``best.pt`` (the generator's weights and
settings only, loaded with ``weights_only=True`` by `dacast.ml.load_nowcaster`), the extrapolation
settings its input was trained with (``nowcast_workflow.json``, as ``dacast nowcast train`` writes
them) and ``model_card.json``: the training command and YAML, data, steps, time, device, the
weights' SHA-256 and the held-out scores measured with ``benchmarks/nowcast_vs_pysteps.py``.
``tools/ship_nowcaster.py`` makes the folder from a training run.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["SHIPPED_NOWCASTER_NAME", "shipped_model_card", "shipped_nowcaster"]

#: Name of the shipped nowcaster (its folder under ``dacast/ml/weights/``).
SHIPPED_NOWCASTER_NAME = "multires_ensemble"


def shipped_nowcaster() -> Path:
    """The folder of the shipped nowcaster (give it to `dacast.ml.load_nowcaster` or ``--checkpoint``).

    Raises:
        FileNotFoundError: the package was installed without its weights.
    """
    folder = Path(str(resources.files("dacast.ml") / "weights" / SHIPPED_NOWCASTER_NAME))
    if not (folder / "best.pt").is_file():
        raise FileNotFoundError(f"the shipped nowcaster is missing from this installation ({folder / 'best.pt'})")
    return folder


def shipped_model_card() -> dict[str, Any]:
    """The shipped nowcaster's ``model_card.json``: how it was trained and what it scores."""
    return json.loads((shipped_nowcaster() / "model_card.json").read_text(encoding="utf-8"))
