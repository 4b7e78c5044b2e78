"""Twin experiments after DAPPER: a truth run, synthetic observations, one filter, its RMSE against the truth.

``config.py`` (`TwinConfig`), ``loader.py`` (YAML), ``presets.py`` (DAPPER's set-ups with
their expected RMSE), ``run.py`` (`run_twin` on `dacast.workflow.cycle`,
`run_experiment`), ``output.py`` (netCDF, summary), ``plots.py``. `dacast.workflow`
re-exports these names.
"""

from dacast.workflow.twin.config import TwinConfig
from dacast.workflow.twin.loader import load_target
from dacast.workflow.twin.presets import PRESETS, get_preset
from dacast.workflow.twin.run import run_experiment, run_twin

__all__ = ["PRESETS", "TwinConfig", "get_preset", "load_target", "run_experiment", "run_twin"]
