"""The surrogate <-> DA cycle (Goodliff & Miyoshi): DA with an imperfect model, train a surrogate, DA with it, repeat.

``config.py`` (`SurrogateConfig`, YAML), ``presets.py``, ``truth.py`` (truth, observations,
forecast scores), ``assimilation.py`` (DA runs on `dacast.workflow.cycle`), ``embedding.py``,
``run.py`` (`run_surrogate`: iterations, resume, tuning, outputs), ``output.py``, ``plots.py``.
"""

from dacast.workflow.surrogate.config import (
    SURROGATE_PRESETS,
    SurrogateConfig,
    get_surrogate_preset,
    load_surrogate_target,
)
from dacast.workflow.surrogate.run import SurrogateRun, run_surrogate

__all__ = [
    "SURROGATE_PRESETS",
    "SurrogateConfig",
    "SurrogateRun",
    "get_surrogate_preset",
    "load_surrogate_target",
    "run_surrogate",
]
