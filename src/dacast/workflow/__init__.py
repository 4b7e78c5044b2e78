"""Twin experiments: configuration, presets, the cycle, results on disk and plots.

Typical use::

    from dacast.workflow import get_preset, run_experiment, with_overrides

    preset = get_preset("lorenz96-letkf")
    config = with_overrides(preset.config, cycles=300)
    result = run_experiment(config, "runs/l96", preset=preset)
    print(result.summary["rmse_analysis"])

`run_twin` alone returns the `xarray.Dataset` without touching the disk.
"""

from dacast.workflow.twin.config import (
    ConfigError,
    ModelSpec,
    ObsSpec,
    TwinConfig,
    build_model,
    build_operator,
    climatological_std,
    config_to_dict,
    default_divergence_threshold,
)
from dacast.workflow.twin.loader import config_from_dict, load_target, load_yaml, with_overrides
from dacast.workflow.twin.output import OutputPaths, attach_preset, summarise, write_results
from dacast.workflow.twin.plots import make_plots, plot_attractor, plot_hovmoller, plot_rmse
from dacast.workflow.twin.presets import PRESETS, Preset, get_preset, preset_names
from dacast.workflow.twin.run import ExperimentResult, run_experiment, run_twin

__all__ = [
    "PRESETS",
    "ConfigError",
    "ExperimentResult",
    "ModelSpec",
    "ObsSpec",
    "OutputPaths",
    "Preset",
    "TwinConfig",
    "attach_preset",
    "build_model",
    "build_operator",
    "climatological_std",
    "config_from_dict",
    "config_to_dict",
    "default_divergence_threshold",
    "get_preset",
    "load_target",
    "load_yaml",
    "make_plots",
    "plot_attractor",
    "plot_hovmoller",
    "plot_rmse",
    "preset_names",
    "run_experiment",
    "run_twin",
    "summarise",
    "with_overrides",
    "write_results",
]
