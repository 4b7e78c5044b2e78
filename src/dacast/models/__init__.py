"""Dynamical models: every one meets the `Model` protocol and shares `rk4_step`."""

from dacast.models.base import Model, advance, integrate, rk4_step
from dacast.models.coupled_lorenz63 import CoupledLorenz63
from dacast.models.lorenz63 import Lorenz63
from dacast.models.lorenz96 import Lorenz96
from dacast.models.registry import MODELS, get_model
from dacast.models.wursch_craig import WurschCraig, WurschCraigConfig
from dacast.models.wursch_craig_limits import rain_fraction, unstable_step
from dacast.models.wursch_craig_noise import TriggeredWurschCraig

__all__ = [
    "MODELS",
    "CoupledLorenz63",
    "Lorenz63",
    "Lorenz96",
    "Model",
    "TriggeredWurschCraig",
    "WurschCraig",
    "WurschCraigConfig",
    "advance",
    "get_model",
    "integrate",
    "rain_fraction",
    "unstable_step",
    "rk4_step",
]
