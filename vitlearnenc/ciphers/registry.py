"""Cipher registry and the public factory :func:`build_cipher` (in the manner of
``timm.create_model``): one name per cipher, keys generated, loaded or passed in.

Each cipher class registers itself where it is defined (``@register_cipher``); deprecated
aliases (``Cipher.aliases``) still resolve, with a warning that names the new name.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import warnings
from typing import Any, TypeVar

from vitlearnenc.ciphers.base import Cipher, parse_image_size
from vitlearnenc.ciphers.keys import CipherKey, KeyMismatchError, key_rng, read_key_file
from vitlearnenc.errors import InputError, VitlearnencError

_REGISTRY: dict[str, type[Cipher]] = {}
#: deprecated name -> registered name
_ALIASES: dict[str, str] = {}
_C = TypeVar("_C", bound=type[Cipher])


class UnknownCipherError(VitlearnencError, KeyError):
    """A cipher name that is not registered."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


def register_cipher(cls: _C) -> _C:
    """Class decorator: make ``cls`` available to :func:`build_cipher` under ``cls.name`` (and
    its deprecated ``aliases``)."""
    for name in (cls.name, *cls.aliases):
        known = _REGISTRY.get(name) or _REGISTRY.get(_ALIASES.get(name, ""))
        if known is not None and known is not cls:
            raise InputError(f"cipher name {name!r} is registered twice")
    _REGISTRY[cls.name] = cls
    _ALIASES.update(dict.fromkeys(cls.aliases, cls.name))
    return cls


def canonical_cipher_name(name: str) -> str:
    """The registered name of ``name``: itself, or the new name of a deprecated alias (with a
    :class:`FutureWarning`, which users see by default)."""
    if name in _ALIASES:
        new = _ALIASES[name]
        warnings.warn(
            f"cipher {name!r} is deprecated; say cipher={new} instead", FutureWarning, stacklevel=3
        )
        return new
    return name


def _discover() -> None:
    """Import every module of ``vitlearnenc/ciphers/`` (idempotent), so that a cipher module
    registers itself without being imported or listed anywhere else."""
    package = importlib.import_module("vitlearnenc.ciphers")
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"vitlearnenc.ciphers.{module.name}")


def list_ciphers() -> list[str]:
    """Registered cipher names, sorted."""
    _discover()
    return sorted(_REGISTRY)


def get_cipher_class(name: str) -> type[Cipher]:
    """The cipher class registered as ``name`` (or as a deprecated alias of it)."""
    if name not in _REGISTRY and name not in _ALIASES:
        _discover()
    try:
        return _REGISTRY[canonical_cipher_name(name)]
    except KeyError:
        raise UnknownCipherError(
            f"unknown cipher {name!r}; choose one of: {', '.join(list_ciphers())}"
        ) from None


def generate_key(
    name: str,
    image_size: int | tuple[int, int],
    block_size: int,
    seed: int | None = None,
    **options: Any,
) -> CipherKey:
    """A fresh key for cipher ``name``: from the OS CSPRNG, or reproducibly from ``seed``
    (a seeded key is **not secret**: anyone with the seed has the key)."""
    cls = get_cipher_class(name)
    return cls.generate_key(parse_image_size(image_size), int(block_size), key_rng(seed), **options)


def load_key(
    path: str | os.PathLike[str],
    method: str | None = None,
    image_size: int | tuple[int, int] | None = None,
    block_size: int | None = None,
) -> CipherKey:
    """Read a key file and validate it completely: integrity, method, permutations and,
    when given, that it fits ``method``, ``image_size`` and ``block_size``."""
    key = read_key_file(path)
    check_key_fits(key, method, image_size, block_size, source=str(path))
    get_cipher_class(key.method).validate_key(key)
    return key


def check_key_fits(
    key: CipherKey,
    method: str | None,
    image_size: int | tuple[int, int] | None,
    block_size: int | None,
    source: str = "key",
) -> None:
    """Raise :class:`KeyMismatchError` if ``key`` was made for another method or geometry."""
    if method is not None and key.method != canonical_cipher_name(method):
        raise KeyMismatchError(
            f"{source} is a {key.method!r} key, but the {method!r} cipher was asked for"
        )
    if image_size is not None and key.image_size != parse_image_size(image_size):
        h, w = parse_image_size(image_size)
        raise KeyMismatchError(
            f"{source} was made for {key.image_size[0]}x{key.image_size[1]} images, not {h}x{w}; "
            "make a key for this image size or resize the images"
        )
    if block_size is not None and key.block_size != int(block_size):
        raise KeyMismatchError(
            f"{source} was made for block size {key.block_size}, not {block_size}"
        )


def build_cipher(
    name: str,
    image_size: int | tuple[int, int] | None = None,
    block_size: int | None = None,
    key: CipherKey | str | os.PathLike[str] | None = None,
    seed: int | None = None,
    **options: Any,
) -> Cipher:
    """Build a cipher by name.

    Args:
        name: registered cipher name (see :func:`list_ciphers`).
        image_size: H or (H, W) of the images; required unless ``key`` is given.
        block_size: block size M; required unless ``key`` is given.
        key: a :class:`CipherKey` or a key-file path; when None a fresh key is drawn.
        seed: draw the key reproducibly from this seed (not secret) instead of the CSPRNG.
        **options: cipher options used when drawing a key (e.g. ``channel_mix=True``).
    """
    cls = get_cipher_class(name)
    name = cls.name
    if key is not None:
        if seed is not None or options:
            raise InputError("pass either a key or seed/options to draw one, not both")
        if not isinstance(key, CipherKey):
            key = load_key(key, method=name, image_size=image_size, block_size=block_size)
        check_key_fits(key, name, image_size, block_size)
        return cls(key)
    if image_size is None or block_size is None:
        raise InputError(f"build_cipher({name!r}) needs image_size and block_size to draw a key")
    return cls(generate_key(name, image_size, block_size, seed=seed, **options))


def probe_cipher(
    name: str, image_size: int | tuple[int, int], block_size: int, **options: Any
) -> Cipher:
    """A cipher of ``name`` with a throw-away key: for reading the capabilities that depend on
    options (``invertible``, ``per_image_keys``, ``structure``, ``absorbable_by_vit``...) and
    shapes, before or without the real key. The key comes from the OS CSPRNG, not from a small
    seed, so that it cannot coincide with a victim key made with ``key=seed``."""
    return build_cipher(name, image_size, block_size, **options)
