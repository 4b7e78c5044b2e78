"""Radar nowcasts: run a method at one issue time, verify a written nowcast, train a ConvLSTM.

``config.py`` (`NowcastRunConfig`, the training spec and its YAML), ``run.py``,
``output.py`` (netCDF, score tables, plots), ``train.py``.
"""

from dacast.workflow.nowcast.config import NowcastRunConfig, NowcastTrainSpec, load_train_yaml
from dacast.workflow.nowcast.run import make_nowcast, run_nowcast, verify_nowcast
from dacast.workflow.nowcast.train import train_from_spec

__all__ = [
    "NowcastRunConfig",
    "NowcastTrainSpec",
    "load_train_yaml",
    "make_nowcast",
    "run_nowcast",
    "train_from_spec",
    "verify_nowcast",
]
