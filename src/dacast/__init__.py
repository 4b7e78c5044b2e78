"""dacast: data assimilation and machine learning for weather prediction."""

__version__ = "0.1.0"
