"""The marker file that ``vitlearnenc-encrypt`` leaves in a folder of encrypted images.

Encrypted PNGs look like any other images, so without a marker nothing stops a provider from
encrypting them a second time (``cipher=proposed`` on a pre-encrypted folder) or a data owner
from resuming an interrupted run with another key (mixing two keys in one folder). The marker
``OUT/.vitlearnenc.json`` records only public facts::

    {"encrypted_by": "vitlearnenc-encrypt", "version": 1, "method": "proposed",
     "image_size": [H, W], "block_size": M, "key_fingerprint": "0123456789ab",
     "dtype": "uint8", "shape": [C, H, W]}

``dtype`` and ``shape`` describe every ciphertext file: ``uint8`` for PNG images, ``float32`` or
``float16`` for the ``.npy`` arrays of real-valued ciphertexts (orthomix), which readers check
against each file's header before loading. Markers written before these fields existed
describe PNG folders and read as ``uint8`` with no recorded shape.

It is a hidden file, so image listings (and ``vitlearnenc-decrypt``) never treat it as data.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vitlearnenc.errors import VitlearnencError
from vitlearnenc.utils.files import write_json_atomic
from vitlearnenc.utils.imagefiles import ARRAY_DTYPES

if TYPE_CHECKING:  # utils stays below ciphers in the import order
    from vitlearnenc.ciphers import CipherKey

MARKER_NAME = ".vitlearnenc.json"
_WRITER = "vitlearnenc-encrypt"
_VERSION = 1
#: ciphertext dtypes a marker may record: uint8 images or the array files' float dtypes
_DTYPES = ("uint8", *ARRAY_DTYPES)


class MarkerError(VitlearnencError, ValueError):
    """A marker file that exists but cannot be read."""


@dataclass(frozen=True)
class EncryptedFolder:
    """What a folder's marker says about its images (public facts only)."""

    path: Path
    method: str
    image_size: tuple[int, int]
    block_size: int
    key_fingerprint: str
    #: dtype of every ciphertext: ``uint8`` (PNG images) or ``float32``/``float16`` (``.npy``)
    dtype: str = "uint8"
    #: ``(C, H, W)`` of every ciphertext (None: not recorded, an older marker)
    shape: tuple[int, int, int] | None = None

    @property
    def real_valued(self) -> bool:
        """Whether the folder holds ``.npy`` arrays of real-valued ciphertexts."""
        return self.dtype != "uint8"

    def describe(self) -> str:
        """One line for messages, e.g. ``proposed, 32x32, block 4, key 0123456789ab``
        (``orthomix, 32x32, block 4, float32 arrays, key ...`` for real-valued ones)."""
        height, width = self.image_size
        stored = f"{self.dtype} arrays, " if self.real_valued else ""
        return (
            f"{self.method}, {height}x{width}, block {self.block_size}, {stored}"
            f"key {self.key_fingerprint}"
        )


def write_marker(
    folder: str | os.PathLike[str],
    key: CipherKey,
    dtype: str = "uint8",
    shape: tuple[int, int, int] | None = None,
) -> Path:
    """Record in ``folder`` that its images are encrypted with ``key`` (fingerprint only),
    stored as ``dtype`` ciphertexts of ``shape`` (C, H, W)."""
    return write_json_atomic(
        {
            "encrypted_by": _WRITER,
            "version": _VERSION,
            "method": key.method,
            "image_size": list(key.image_size),
            "block_size": key.block_size,
            "key_fingerprint": key.fingerprint,
            "dtype": dtype,
            "shape": None if shape is None else [int(v) for v in shape],
        },
        Path(folder) / MARKER_NAME,
    )


def read_marker(folder: str | os.PathLike[str]) -> EncryptedFolder | None:
    """The marker of ``folder``, or None when it has none.

    Raises:
        MarkerError: the marker exists but is not one ``vitlearnenc-encrypt`` wrote.
    """
    path = Path(folder) / MARKER_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        if data.get("encrypted_by") != _WRITER:
            raise KeyError("encrypted_by")
        height, width = data["image_size"]
        shape = data.get("shape")
        dtype = str(data.get("dtype", "uint8"))
        if dtype not in _DTYPES:
            raise ValueError(dtype)
        return EncryptedFolder(
            path=path,
            method=str(data["method"]),
            image_size=(int(height), int(width)),
            block_size=int(data["block_size"]),
            key_fingerprint=str(data["key_fingerprint"]),
            dtype=dtype,
            shape=None if shape is None else _shape3(shape),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise MarkerError(
            f"{path} is not a marker written by {_WRITER}; delete it if the folder is not "
            "an encrypted copy"
        ) from None


def _shape3(values: list[int]) -> tuple[int, int, int]:
    channels, height, width = (int(v) for v in values)
    return channels, height, width


def find_marker(folders: list[Path]) -> EncryptedFolder | None:
    """The first marker found in ``folders`` (e.g. a dataset root and its split folders)."""
    for folder in folders:
        if folder.is_dir():
            marker = read_marker(folder)
            if marker is not None:
                return marker
    return None
