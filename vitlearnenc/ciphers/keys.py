"""Cipher keys: generation, JSON key files and validation.

A :class:`CipherKey` holds the secret material of one cipher (permutations and bit masks as
integer NumPy arrays) plus its public parameters (method, image size, block size, options).
The material never leaves this object except through :func:`save_key`: ``repr`` shows only a
short fingerprint, so keys can be logged by accident without leaking.

Key files are JSON, written with mode 0600 through a temporary file and an atomic rename::

    {"format": "vitlearnenc-key", "version": 1, "method": "proposed",
     "image_size": [H, W], "block_size": M, "options": {...},
     "block_perm": [...], "pixel_perm": [...], "checksum": "sha256:..."}

The checksum covers every other field, so a truncated, corrupted or hand-edited file is
rejected on load instead of silently encrypting with a wrong key.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import secrets
import stat
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from vitlearnenc.errors import InputError, VitlearnencError

KEY_FORMAT = "vitlearnenc-key"
KEY_VERSION = 1
_RESERVED = {"format", "version", "method", "image_size", "block_size", "options", "checksum"}


class KeyFileError(VitlearnencError, ValueError):
    """A key file that cannot be read, is corrupt, or does not fit its use."""


class KeyMismatchError(VitlearnencError, ValueError):
    """A valid key used with images or a cipher it was not made for."""


class KeyRNG(Protocol):
    """Source of randomness for key generation."""

    def permutation(self, n: int) -> np.ndarray:
        """A uniformly random permutation of ``range(n)`` as int64."""
        ...

    def integers(self, high: int, size: int) -> np.ndarray:
        """``size`` independent uniform integers in ``[0, high)`` as int64."""
        ...


class SystemKeyRNG:
    """Cryptographically secure key randomness from the operating system (``os.urandom``).

    NumPy's generators are not CSPRNGs, so secret keys use :class:`random.SystemRandom`.
    """

    def __init__(self) -> None:
        self._rng = random.SystemRandom()

    def permutation(self, n: int) -> np.ndarray:
        order = list(range(n))
        self._rng.shuffle(order)
        return np.asarray(order, dtype=np.int64)

    def integers(self, high: int, size: int) -> np.ndarray:
        return np.fromiter((secrets.randbelow(high) for _ in range(size)), np.int64, size)


class SeededKeyRNG:
    """Reproducible key randomness from an integer seed. **Not secret**: anyone who knows the
    seed knows the key. Meant for experiments that must be repeatable across runs and ranks.

    The seed goes through a private ``SeedSequence`` tagged for key generation, so the global
    RNG (and therefore the training seed) never influences the key.
    """

    _DOMAIN_TAG = 0x7669746C  # "vitl": keeps key streams apart from any other use of a seed

    def __init__(self, seed: int) -> None:
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
            raise InputError(f"key seed must be a non-negative integer, got {seed!r}")
        self._rng = np.random.Generator(
            np.random.PCG64(np.random.SeedSequence([int(seed), self._DOMAIN_TAG]))
        )

    def permutation(self, n: int) -> np.ndarray:
        return self._rng.permutation(n).astype(np.int64)

    def integers(self, high: int, size: int) -> np.ndarray:
        return self._rng.integers(0, high, size=size, dtype=np.int64)


def key_rng(seed: int | None) -> KeyRNG:
    """The CSPRNG when ``seed`` is None, else a reproducible (non-secret) seeded generator."""
    return SystemKeyRNG() if seed is None else SeededKeyRNG(seed)


@dataclass(frozen=True, eq=False, repr=False)
class CipherKey:
    """Secret material and public parameters of one cipher key.

    Attributes:
        method: registered cipher name (``proposed``, ``le``, ...).
        image_size: (H, W) the key was made for.
        block_size: block size M in pixels.
        material: secret integer arrays (permutations, bit masks), 0-based, by field name.
        options: public, non-secret cipher options (e.g. ``channel_mix``, ``channels``).
    """

    method: str
    image_size: tuple[int, int]
    block_size: int
    material: Mapping[str, np.ndarray]
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        frozen = {}
        for name, value in self.material.items():
            array = np.array(value, dtype=np.int64)
            array.setflags(write=False)
            frozen[name] = array
        object.__setattr__(self, "material", frozen)
        object.__setattr__(self, "image_size", tuple(int(v) for v in self.image_size))
        object.__setattr__(self, "block_size", int(self.block_size))
        object.__setattr__(self, "options", dict(self.options))

    def __getitem__(self, name: str) -> np.ndarray:
        return self.material[name]

    @property
    def fingerprint(self) -> str:
        """Short public identifier (first 12 hex digits of SHA-256 over the key file content).

        Safe to log: it identifies a key without revealing it.
        """
        return _digest(self._body())[:12]

    def __repr__(self) -> str:
        return (
            f"CipherKey(method={self.method!r}, image_size={self.image_size}, "
            f"block_size={self.block_size}, fingerprint={self.fingerprint!r})"
        )

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CipherKey) and self._body() == other._body()

    def __hash__(self) -> int:
        return hash(self._body())

    def _body(self) -> str:
        """Canonical JSON of everything but the checksum (what the checksum covers)."""
        return json.dumps(self.to_dict(with_checksum=False), sort_keys=True, separators=(",", ":"))

    def to_dict(self, with_checksum: bool = True) -> dict[str, Any]:
        """The key file's JSON object (contains the secret material)."""
        body: dict[str, Any] = {
            "format": KEY_FORMAT,
            "version": KEY_VERSION,
            "method": self.method,
            "image_size": list(self.image_size),
            "block_size": self.block_size,
            "options": dict(self.options),
        }
        for name, array in self.material.items():
            body[name] = array.tolist()
        if with_checksum:
            canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
            body["checksum"] = "sha256:" + _digest(canonical)
        return body

    @classmethod
    def from_dict(cls, data: Any, source: str = "key") -> CipherKey:
        """Parse and integrity-check a key file's JSON object (no cipher-level checks)."""
        if not isinstance(data, dict):
            raise KeyFileError(f"{source}: not a vitlearnenc key file (expected a JSON object)")
        if data.get("format") != KEY_FORMAT:
            raise KeyFileError(
                f"{source}: not a vitlearnenc key file (format field missing or wrong)"
            )
        if data.get("version") != KEY_VERSION:
            raise KeyFileError(
                f"{source}: key file version {data.get('version')!r} is not supported "
                f"(this vitlearnenc reads version {KEY_VERSION}); regenerate it with vitlearnenc-keygen"
            )
        for name in ("method", "image_size", "block_size", "checksum"):
            if name not in data:
                raise KeyFileError(
                    f"{source}: key file lacks the field {name!r}; it is truncated or edited"
                )
        image_size = data["image_size"]
        if (
            not isinstance(image_size, list)
            or len(image_size) != 2
            or not all(isinstance(v, int) and v > 0 for v in image_size)
        ):
            raise KeyFileError(f"{source}: image_size must be [H, W] with positive integers")
        if not isinstance(data["block_size"], int) or data["block_size"] <= 0:
            raise KeyFileError(f"{source}: block_size must be a positive integer")
        options = data.get("options", {})
        if not isinstance(options, dict):
            raise KeyFileError(f"{source}: options must be a JSON object")
        material: dict[str, np.ndarray] = {}
        for name, value in data.items():
            if name in _RESERVED:
                continue
            if not isinstance(value, list) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in value
            ):
                raise KeyFileError(f"{source}: key field {name!r} must be a list of integers")
            material[name] = np.asarray(value, dtype=np.int64)
        key = cls(str(data["method"]), tuple(image_size), data["block_size"], material, options)
        if key.to_dict()["checksum"] != data["checksum"]:
            raise KeyFileError(
                f"{source}: checksum mismatch: the key file was corrupted or edited; "
                "use an intact copy of the key"
            )
        return key


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def save_key(key: CipherKey, path: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Write ``key`` as JSON with mode 0600, atomically (temporary file + rename).

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False (keys are never clobbered
            by accident: losing a key loses access to the data encrypted with it).
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; refusing to overwrite a key file (pass overwrite)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".key-", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(key.to_dict(), handle)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_key_file(path: str | os.PathLike[str]) -> CipherKey:
    """Read and integrity-check a key file (see :func:`vitlearnenc.ciphers.load_key` for the
    cipher-level validation). Warns when the file is readable by group or others."""
    path = Path(path)
    if not path.is_file():
        raise KeyFileError(f"key file {path} does not exist; create one with vitlearnenc-keygen")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        warnings.warn(
            f"key file {path} is readable by other users (mode {mode:o}); run: chmod 600 {path}",
            stacklevel=2,
        )
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise KeyFileError(
            f"{path}: not valid JSON; the key file is corrupt or truncated"
        ) from None
    return CipherKey.from_dict(data, source=str(path))


def check_permutation(values: np.ndarray, length: int, what: str) -> None:
    """Raise :class:`KeyFileError` unless ``values`` is a permutation of ``range(length)``.

    The message names the field, never its content.
    """
    if values.ndim != 1 or values.shape[0] != length:
        raise KeyFileError(f"{what} must have length {length}, got {values.size}")
    seen = np.zeros(length, dtype=bool)
    if values.min(initial=0) < 0 or values.max(initial=0) >= length:
        raise KeyFileError(f"{what} is not a permutation of 0..{length - 1} (value out of range)")
    seen[values] = True
    if not seen.all():
        raise KeyFileError(f"{what} is not a permutation of 0..{length - 1} (repeated values)")


def check_range(values: np.ndarray, length: int, high: int, what: str) -> None:
    """Raise :class:`KeyFileError` unless ``values`` has ``length`` entries in ``[0, high)``."""
    if values.ndim != 1 or values.shape[0] != length:
        raise KeyFileError(f"{what} must have length {length}, got {values.size}")
    if length and (values.min() < 0 or values.max() >= high):
        raise KeyFileError(f"{what} must hold values in 0..{high - 1}")
