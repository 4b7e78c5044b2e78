"""Satellite radiances in the LETKF: CONV vs physical vs learned AMSU-A operators (Liang, Terasaki & Miyoshi 2023)."""

from dacast.workflow.radiance.config import (
    RADIANCE_PRESETS,
    RadianceConfig,
    load_radiance_target,
    radiance_config_from_dict,
    radiance_config_to_dict,
)
from dacast.workflow.radiance.run import RadianceRun, run_radiance

__all__ = [
    "RADIANCE_PRESETS",
    "RadianceConfig",
    "RadianceRun",
    "load_radiance_target",
    "radiance_config_from_dict",
    "radiance_config_to_dict",
    "run_radiance",
]
