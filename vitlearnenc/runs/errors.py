"""The configuration error of the apps."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration that cannot work; raised before any data is loaded. The message names
    an override that fixes it."""
