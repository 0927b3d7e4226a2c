"""The configuration error of the apps."""

from __future__ import annotations

from vitlearnenc.errors import VitlearnencError


class ConfigError(VitlearnencError, ValueError):
    """A configuration that cannot work; raised before any data is loaded. The message names
    an override that fixes it."""
