"""Folder encryption jobs: which files become which PNGs, which folder markers forbid a run,
and the batch converter of ``vitlearnenc-encrypt``/``vitlearnenc-decrypt``.

Library code so that other tools (and tests) plan and check a folder run exactly as the
console scripts do; the scripts only parse arguments, stream the batches and report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from vitlearnenc.ciphers import Cipher, CipherKey
from vitlearnenc.errors import InputError
from vitlearnenc.utils.image_ops import resize_uint8
from vitlearnenc.utils.imagefiles import IMAGE_EXTENSIONS, list_images
from vitlearnenc.utils.markers import MARKER_NAME, MarkerError, read_marker


@dataclass(frozen=True)
class Job:
    """One input file and the PNG it becomes."""

    source: Path
    target: Path


def plan_jobs(source: Path, target: Path) -> list[Job]:
    """The (input, output) pairs for ``IN`` and ``OUT``; checks every path rule before
    anything is written.

    Raises:
        FileNotFoundError: ``source`` does not exist.
        InputError: ``target`` inside ``source``, an unusable ``target``, no images, or two
            inputs that would write the same PNG.
    """
    if not source.exists():
        raise FileNotFoundError(f"{source} does not exist")
    if not source.is_dir():
        out = target / f"{source.stem}.png" if target.is_dir() else target
        if out.suffix.lower() != ".png":
            raise InputError(f"OUT {target} must be a .png file or a folder (outputs are PNGs)")
        if out.resolve() == source.resolve():
            raise InputError(f"OUT {out} is IN itself; choose another output path")
        return [Job(source, out)]
    root, out_root = source.resolve(), target.resolve()
    if out_root == root or root in out_root.parents:
        raise InputError(f"OUT {target} is inside IN {source}; choose a folder outside the input")
    if target.exists() and not target.is_dir():
        raise InputError(f"OUT {target} is a file, but IN {source} is a folder; give a folder")
    sources = list_images(source)
    if not sources:
        raise InputError(
            f"no images found in {source} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})"
        )
    jobs: list[Job] = []
    seen: dict[Path, Path] = {}
    for path in sources:
        out = target / path.relative_to(source).with_suffix(".png")
        if out in seen:
            raise InputError(f"{seen[out]} and {path} would both become {out}; rename one of them")
        seen[out] = path
        jobs.append(Job(path, out))
    return jobs


def check_markers(
    source: Path, target: Path, key: CipherKey, direction: str, overwrite: bool
) -> None:
    """Refuse folder runs that would mix keys or stack encryptions, from the markers that
    ``vitlearnenc-encrypt`` leaves in its output folders (see :mod:`vitlearnenc.utils.markers`).

    Raises:
        InputError: encrypting an encrypted folder, continuing an OUT made with another key
            (unless ``overwrite``), decrypting with another key than the folder's, or
            decrypting into an encrypted folder.
    """
    try:
        source_marker, target_marker = read_marker(source), read_marker(target)
    except MarkerError as error:
        raise InputError(str(error)) from None
    if direction == "encrypt":
        if source_marker is not None:
            raise InputError(
                f"IN {source} is already encrypted by vitlearnenc-encrypt "
                f"({source_marker.describe()}); encrypt the plain images instead"
            )
        if (
            target_marker is not None
            and target_marker.key_fingerprint != key.fingerprint
            and not overwrite
        ):
            raise InputError(
                f"OUT {target} holds images encrypted with key "
                f"{target_marker.key_fingerprint}, not with {key.fingerprint}; continue with "
                "that key, choose another OUT, or pass --overwrite to re-encrypt every image "
                "with this key"
            )
        return
    if source_marker is not None and source_marker.key_fingerprint != key.fingerprint:
        raise InputError(
            f"IN {source} was encrypted with key {source_marker.key_fingerprint}, not with "
            f"{key.fingerprint}; decrypt with the key that encrypted it"
        )
    if target_marker is not None:
        raise InputError(
            f"OUT {target} holds encrypted images ({MARKER_NAME}); decrypt into another folder"
        )


class Converter:
    """Encrypts or decrypts lists of image tensors with one key, one batch at a time.

    Knows which images it accepts (:meth:`check_size`) and how to decode them (``mode``), so
    that files can be validated from their headers before any work is done.
    """

    def __init__(self, cipher: Cipher, direction: str, resize: tuple[int, int] | None) -> None:
        key = cipher.key
        self.cipher, self.direction, self.resize = cipher, direction, resize
        if cipher.real_valued_ciphertexts:
            raise InputError(
                f"the {key.method} cipher gives real-valued ciphertexts, which 8-bit image files "
                f"cannot hold; let the training run encrypt on the device instead (cipher="
                f"{key.method} key=file key.path=KEY on the plain images)"
            )
        if direction == "decrypt":
            if not cipher.invertible:
                raise InputError(
                    f"images encrypted with the {key.method!r} key {key.fingerprint} cannot be "
                    "decrypted: this cipher (mode) has no exact inverse, e.g. PE with a fresh "
                    "key per image"
                )
            channels, height, width = cipher.output_shape(3)
            self.expected: tuple[int, int] | None = (height, width)
            self.mode = "L" if channels == 1 else "RGB"
        else:
            if resize is not None and tuple(resize) != key.image_size:
                raise InputError(
                    f"--resize {_size_text(resize)} differs from the key's image size "
                    f"{_size_text(key.image_size)}; use --resize {_size_text(key.image_size)}"
                )
            self.expected = None if resize is not None else key.image_size
            self.mode = "RGB"

    def check_size(self, path: Path, size: tuple[int, int]) -> None:
        """Raise a one-line :class:`InputError` if an image of ``size`` (H, W) cannot be used."""
        if self.expected is None or size == self.expected:
            return
        key = self.cipher.key
        if self.direction == "decrypt":
            raise InputError(
                f"{path} is {_size_text(size)}, but key {key.fingerprint} makes "
                f"{_size_text(self.expected)} encrypted images; decrypt with the key that "
                "encrypted it"
            )
        block = key.block_size
        misfit = (
            f" (not a multiple of the block size {block})"
            if size[0] % block or size[1] % block
            else ""
        )
        raise InputError(
            f"{path} is {_size_text(size)}{misfit}, but key {key.fingerprint} was made for "
            f"{_size_text(key.image_size)} images; pass --resize {_size_text(key.image_size)} "
            "to resize before encrypting"
        )

    def __call__(self, images: list[torch.Tensor]) -> torch.Tensor:
        """``(C, H, W)`` uint8 tensors -> one ``(B, C', H', W')`` uint8 batch, one gather."""
        if self.direction == "decrypt":
            return self.cipher.decrypt(torch.stack(images))
        if self.resize is not None:
            images = _resize_grouped(images, self.resize)
        return self.cipher.encrypt(torch.stack(images))


def _resize_grouped(images: list[torch.Tensor], size: tuple[int, int]) -> list[torch.Tensor]:
    """Resize with one :func:`resize_uint8` call per distinct input size, keeping the order."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for index, image in enumerate(images):
        groups.setdefault(tuple(image.shape), []).append(index)
    resized = list(images)
    for indices in groups.values():
        batch = resize_uint8(torch.stack([images[i] for i in indices]), size)
        for index, image in zip(indices, batch, strict=True):
            resized[index] = image
    return resized


def _size_text(size: Sequence[int]) -> str:
    return f"{size[0]}x{size[1]}"
