"""Applications on one cycle engine: the twin, the surrogate cycle, the BDA radar twin, radar nowcasts.

Shared by every application (one module each):

* `dacast.workflow.cycle`: the one forecast -> observe -> analyse loop (`cycle`), its
  steps (`CycleStep`), observation sets (`Observation`) and analysers
  (`FilterAnalyser`, `GriddedAnalyser`);
* `dacast.workflow.schema`: YAML and preset names -> frozen dataclasses (`ConfigError`,
  `Presets`, `resolve`);
* `dacast.workflow.runtime`: device, CPU threads, progress bar, notes, seeds, Dask.

One folder per application, each with ``config.py``, ``run.py``, ``output.py`` (and
``presets.py``): ``twin/``, ``surrogate/``, ``bda/``, ``nowcast/``. The twin's names
are re-exported here, as before. Typical use::

    from dacast.workflow import get_preset, run_experiment, with_overrides

    preset = get_preset("lorenz96-letkf")
    config = with_overrides(preset.config, cycles=300)
    result = run_experiment(config, "runs/l96", preset=preset)
    print(result.summary["rmse_analysis"])

`run_twin` alone returns the `xarray.Dataset` without touching the disk.
"""

from dacast.workflow.cycle import (
    CycleStep,
    FilterAnalyser,
    GriddedAnalyser,
    Observation,
    array_observations,
    cycle,
    model_forecast,
)
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
    "CycleStep",
    "FilterAnalyser",
    "GriddedAnalyser",
    "Observation",
    "array_observations",
    "cycle",
    "model_forecast",
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
