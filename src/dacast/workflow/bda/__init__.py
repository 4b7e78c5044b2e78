"""The Big Data Assimilation twin: a convective-scale model, radar every 30 s, the gridded LETKF, 30-min forecasts.

``config.py`` (`BDAConfig`, YAML), ``presets.py``, ``forecast.py`` (initial ensemble,
member-chunk forecasts, extended forecasts), ``run.py`` (the cycle on
`dacast.workflow.cycle`, `run_bda_experiment`), ``output.py`` (checkpoint, netCDF,
summary), ``plots.py``.
"""

from dacast.workflow.bda.config import BDA_PRESETS, BDAConfig, get_bda_preset, load_bda_target
from dacast.workflow.bda.run import BDAResult, RadarTwin, run_bda_experiment, run_cycles

__all__ = [
    "BDA_PRESETS",
    "BDAConfig",
    "BDAResult",
    "RadarTwin",
    "get_bda_preset",
    "load_bda_target",
    "run_bda_experiment",
    "run_cycles",
]
