"""Folder encryption jobs: which files become which outputs, which folder markers forbid a
run, and the batch converter of ``vitlearnenc-encrypt``/``vitlearnenc-decrypt``.

Ciphertexts are PNG images, or ``.npy`` arrays of the cipher's storage dtype for real-valued
ciphertexts (orthomix: float32 or float16, see :mod:`vitlearnenc.utils.imagefiles`); the
:class:`Converter` knows which files it reads and writes.

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
from vitlearnenc.utils.imagefiles import (
    ARRAY_SUFFIX,
    IMAGE_EXTENSIONS,
    dtype_name,
    list_images,
    read_array_header,
    read_array_into,
    read_image,
    read_image_size,
    write_array_atomic,
    write_png_atomic,
)
from vitlearnenc.utils.markers import MARKER_NAME, MarkerError, read_marker


@dataclass(frozen=True)
class Job:
    """One input file and the file (PNG or ``.npy``) it becomes."""

    source: Path
    target: Path


def plan_jobs(
    source: Path,
    target: Path,
    input_suffixes: frozenset[str] = IMAGE_EXTENSIONS,
    output_suffix: str = ".png",
) -> list[Job]:
    """The (input, output) pairs for ``IN`` and ``OUT``; checks every path rule before
    anything is written.

    Args:
        source: ``IN``, a file or a folder searched for ``input_suffixes``.
        target: ``OUT``, mirroring ``IN`` with ``output_suffix`` files.
        input_suffixes: file suffixes to convert (images, or ``{".npy"}`` arrays).
        output_suffix: ``".png"`` or ``".npy"``.

    Raises:
        FileNotFoundError: ``source`` does not exist.
        InputError: ``target`` inside ``source``, an unusable ``target``, no inputs, or two
            inputs that would write the same output.
    """
    kind = "PNGs" if output_suffix == ".png" else f"{output_suffix} arrays"
    if not source.exists():
        raise FileNotFoundError(f"{source} does not exist")
    if not source.is_dir():
        out = target / f"{source.stem}{output_suffix}" if target.is_dir() else target
        if out.suffix.lower() != output_suffix:
            raise InputError(
                f"OUT {target} must be a {output_suffix} file or a folder (outputs are {kind})"
            )
        if out.resolve() == source.resolve():
            raise InputError(f"OUT {out} is IN itself; choose another output path")
        return [Job(source, out)]
    root, out_root = source.resolve(), target.resolve()
    if out_root == root or root in out_root.parents:
        raise InputError(f"OUT {target} is inside IN {source}; choose a folder outside the input")
    if target.exists() and not target.is_dir():
        raise InputError(f"OUT {target} is a file, but IN {source} is a folder; give a folder")
    sources = list_images(source, input_suffixes)
    if not sources:
        what = "images" if input_suffixes == IMAGE_EXTENSIONS else "ciphertext arrays"
        raise InputError(
            f"no {what} found in {source} (looked for {', '.join(sorted(input_suffixes))})"
        )
    jobs: list[Job] = []
    seen: dict[Path, Path] = {}
    for path in sources:
        out = target / path.relative_to(source).with_suffix(output_suffix)
        if out in seen:
            raise InputError(f"{seen[out]} and {path} would both become {out}; rename one of them")
        seen[out] = path
        jobs.append(Job(path, out))
    return jobs


def check_markers(
    source: Path,
    target: Path,
    key: CipherKey,
    direction: str,
    overwrite: bool,
    dtype: str = "uint8",
) -> None:
    """Refuse folder runs that would mix keys or stack encryptions, from the markers that
    ``vitlearnenc-encrypt`` leaves in its output folders (see :mod:`vitlearnenc.utils.markers`).

    Raises:
        InputError: encrypting an encrypted folder, continuing an OUT made with another key
            (unless ``overwrite``), decrypting with another key than the folder's, or
            decrypting into an encrypted folder; continuing an OUT that holds ciphertexts of
            another ``dtype`` (the storage dtype: uint8 PNGs or float ``.npy``), even with
            ``overwrite``, as PNG and ``.npy`` files of one image would then sit side by side.
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
        if target_marker is not None and target_marker.dtype != dtype:
            raise InputError(
                f"OUT {target} holds {target_marker.dtype} ciphertexts "
                f"({target_marker.describe()}), but key {key.fingerprint} makes {dtype} ones; "
                "choose another OUT"
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

    Knows which files it reads and writes (PNG images, or ``.npy`` arrays for real-valued
    ciphertexts) and which it accepts (:meth:`check_header`), so that files can be validated
    from their headers before any work is done.
    """

    def __init__(self, cipher: Cipher, direction: str, resize: tuple[int, int] | None) -> None:
        key = cipher.key
        self.cipher, self.direction, self.resize = cipher, direction, resize
        #: ciphertext files: dtype name ("uint8" for PNG images) and (C, H, W) for 3-channel input
        self.cipher_dtype = dtype_name(cipher.storage_dtype)
        self.cipher_shape = cipher.output_shape(3)
        arrays = cipher.real_valued_ciphertexts
        self.input_suffixes = (
            frozenset({ARRAY_SUFFIX}) if arrays and direction == "decrypt" else IMAGE_EXTENSIONS
        )
        self.output_suffix = ARRAY_SUFFIX if arrays and direction == "encrypt" else ".png"
        if direction == "decrypt":
            if not cipher.invertible:
                raise InputError(
                    f"images encrypted with the {key.method!r} key {key.fingerprint} cannot be "
                    "decrypted: this cipher (mode) has no exact inverse, e.g. PE with a fresh "
                    "key per image"
                )
            channels, height, width = self.cipher_shape
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

    @property
    def reads_arrays(self) -> bool:
        return self.input_suffixes == frozenset({ARRAY_SUFFIX})

    def check_header(self, path: Path) -> None:
        """Read ``path``'s header and check that the file can be used.

        Raises:
            ImageReadError: the header cannot be read.
            InputError: (one line) a size, or for arrays a dtype or shape, the key cannot use.
        """
        if not self.reads_arrays:
            self.check_size(path, read_image_size(path))
            return
        shape, dtype = read_array_header(path)
        expected = (self.cipher_shape, self.cipher_dtype)
        if (shape, dtype) != expected:
            key = self.cipher.key
            raise InputError(
                f"{path} holds {dtype} {_shape_text(shape)}, but key {key.fingerprint} makes "
                f"{expected[1]} {_shape_text(expected[0])} ciphertexts; decrypt with the key "
                "that encrypted it"
            )

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

    def read(self, path: Path) -> torch.Tensor:
        """One input file as a ``(C, H, W)`` tensor (uint8 image or stored ciphertext array).

        Raises:
            ImageReadError: the file cannot be decoded (or, for arrays, differs from its
                checked header).
        """
        if not self.reads_arrays:
            return read_image(path, self.mode)
        out = torch.empty(self.cipher_shape, dtype=self.cipher.storage_dtype)
        read_array_into(path, out)
        return out

    def write(self, image: torch.Tensor, path: Path) -> None:
        """Write one converted ``(C, H, W)`` tensor atomically (PNG or ``.npy``)."""
        if self.output_suffix == ARRAY_SUFFIX:
            write_array_atomic(image, path)
        else:
            write_png_atomic(image, path)

    def __call__(self, images: list[torch.Tensor]) -> torch.Tensor:
        """``(C, H, W)`` tensors -> one ``(B, C', H', W')`` batch, one gather: uint8 plain
        images to ciphertexts of the storage dtype, or ciphertexts to uint8 images."""
        if self.direction == "decrypt":
            batch = torch.stack(images)
            if self.reads_arrays:
                return self.cipher.decrypt_uint8(batch)  # type: ignore[attr-defined]
            return self.cipher.decrypt(batch)
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


def _shape_text(shape: Sequence[int]) -> str:
    return "x".join(str(v) for v in shape)
