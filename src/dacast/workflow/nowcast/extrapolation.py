"""The ``extrapolation`` section of a nowcast training YAML: `dacast.nowcast.ExtrapolationConfig` and back.

Its schema (keys in ``[brackets]`` are optional)::

    [extrapolation]:               # input of the "obs + nowcasting" model (model.use_extrapolation)
      [motion]: trec               # trec | farneback | dis
      [motion_options]: {}         # fields of TRECConfig / OpticalFlowConfig (not 'method')
      [n_frames]: 3                # and the other fields of dacast.nowcast.ExtrapolationConfig
"""

from __future__ import annotations

import dataclasses
from typing import Any

from dacast.nowcast import ExtrapolationConfig, OpticalFlowConfig, TRECConfig
from dacast.nowcast.registry import MOTION_METHODS
from dacast.workflow.limits import show
from dacast.workflow.schema import ConfigError, mapping, parse

__all__ = ["extrapolation_config", "extrapolation_settings", "section"]


def section(data: Any, key: str) -> Any:
    """An optional section: ``{}`` when absent or empty."""
    return {} if data.get(key) is None else data[key]


def extrapolation_config(settings: Any, where: str = "extrapolation") -> ExtrapolationConfig:
    """`ExtrapolationConfig` from ``{motion, motion_options, n_frames, ...}`` (see the module docstring)."""
    settings = mapping(settings, where)
    motion = settings.get("motion", "trec")
    if not isinstance(motion, str) or motion not in MOTION_METHODS:
        raise ConfigError(
            f"unknown motion method {show(motion)} in {where}; choose one of: {', '.join(MOTION_METHODS)}"
        )
    options = section(settings, "motion_options")
    if motion == "trec":
        motion_config: Any = parse(TRECConfig, options, f"{where}.motion_options")
    else:
        motion_config = parse(OpticalFlowConfig, options, f"{where}.motion_options", fixed={"method": motion})
    tags = ("motion", "motion_options")
    return parse(ExtrapolationConfig, settings, where, fixed={"motion": motion_config}, tags=tags)


def extrapolation_settings(config: ExtrapolationConfig) -> dict[str, Any]:
    """The inverse of `extrapolation_config`: a JSON/YAML-ready dict."""
    d = dataclasses.asdict(config)
    options = d.pop("motion")
    motion = "trec" if isinstance(config.motion, TRECConfig) else options.pop("method")
    return {"motion": motion, "motion_options": options, **d}
