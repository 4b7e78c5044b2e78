"""The one configuration boundary: YAML mappings and preset names become frozen dataclasses here.

Every application's ``config.py`` builds its settings with these helpers, and
every error is a `ConfigError` whose one-line message names the key path.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration (YAML, preset name, command-line value) is invalid; the message is one line."""


def require(condition: bool, message: str) -> None:
    """Raise `ConfigError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(message)


__all__ = ["ConfigError", "require"]
