"""Key checks shared by the ciphers: exact field sets, geometry and the channels option.

Messages name fields and sizes, never the key's values.
"""

from __future__ import annotations

from vitlearnenc.ciphers.base import check_block_grid
from vitlearnenc.ciphers.keys import CipherKey, KeyFileError
from vitlearnenc.errors import InputError, UnknownOptionError


def key_channels(key: CipherKey) -> int:
    """The ``channels`` option of an LE/ELE key, checked (KeyFileError if malformed)."""
    channels = key.options.get("channels", 3)
    if not isinstance(channels, int) or isinstance(channels, bool) or channels <= 0:
        raise KeyFileError("the key option channels must be a positive integer")
    return channels


def check_fields(key: CipherKey, expected: set[str]) -> None:
    """Raise :class:`KeyFileError` unless the key holds exactly the ``expected`` fields."""
    missing = expected - set(key.material)
    unknown = set(key.material) - expected
    if missing or unknown:
        raise KeyFileError(
            f"a {key.method!r} key needs exactly the fields {', '.join(sorted(expected))} "
            f"(missing: {sorted(missing)}, unexpected: {sorted(unknown)})"
        )


def check_geometry(key: CipherKey) -> tuple[int, int]:
    """The key's block grid, or :class:`KeyFileError` if its sizes do not fit together."""
    try:
        return check_block_grid(key.image_size, key.block_size)
    except ValueError as error:
        raise KeyFileError(f"key parameters do not fit together: {error}") from None


def check_channels_option(channels: int) -> None:
    """Raise ValueError unless the ``channels`` key-generation option is a positive integer."""
    if not isinstance(channels, int) or isinstance(channels, bool) or channels <= 0:
        raise InputError(f"channels must be a positive integer, got {channels!r}")


def reject_unknown_options(method: str, options: dict[str, object]) -> None:
    """Raise :class:`~vitlearnenc.errors.UnknownOptionError` (a TypeError) naming any
    key-generation option the ``method`` cipher does not take."""
    if options:
        raise UnknownOptionError(f"unknown option(s) for the {method} cipher: {sorted(options)}")
