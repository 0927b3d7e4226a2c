"""Image files and folder trees as tensors: listing, decoding, atomic PNG and array writes.

Shared by the data owner's tools (``vitlearnenc-encrypt``/``-decrypt``) and the image-folder
datasets, so both see the same pixels for the same file:

- Decoding goes through Pillow and converts to 8-bit RGB (or L): grayscale is replicated to
  three channels, palette images are expanded, and alpha is **dropped** (not composited).
  EXIF orientation is not applied (the stored pixel order is used, as torchvision does).
  16-bit and float images are refused instead of being silently clipped to 8 bits.
- Writes are atomic: a PNG is encoded into a temporary file in the destination folder and
  renamed over the final name, so an interrupted process never leaves a half-written image
  under a real name, only a hidden ``*.vitlearnenc-tmp`` file (see :func:`remove_stale_temps`).
  Files are not fsync'ed: atomicity covers a killed process, not a power cut.
- Real-valued ciphertexts (orthomix) do not fit 8-bit images, so they are stored as NumPy
  ``.npy`` arrays: ``(C, H, W)``, C-order, native byte order, float32 or float16, bit for bit
  what the cipher returned. Why ``.npy``: lossless for any dtype, a header that gives shape and
  dtype without reading the data (folders are checked before anything is loaded), readable
  straight into a preallocated tensor row, and no dependency beyond NumPy. Never pickled.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vitlearnenc.errors import InputError, VitlearnencError

#: file suffixes (lower case) that :func:`list_images` picks up
IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".gif"}
)
#: suffix of the lossless array files that hold real-valued ciphertexts
ARRAY_SUFFIX = ".npy"
#: dtypes an array file may hold (the storage dtypes of real-valued ciphertexts)
ARRAY_DTYPES = {"float32": torch.float32, "float16": torch.float16}
#: suffix of the temporary files that :func:`write_png_atomic` renames into place
TEMP_SUFFIX = ".vitlearnenc-tmp"

_MODES = ("RGB", "L")  # 3-channel and 1-channel 8-bit decoding
_WIDE_MODES = ("I", "F")  # Pillow modes of 16/32-bit integer and float images


class ImageReadError(VitlearnencError, ValueError):
    """An image file that cannot be decoded (missing, truncated, corrupt or unsupported)."""


def list_images(
    root: str | os.PathLike[str], suffixes: frozenset[str] = IMAGE_EXTENSIONS
) -> list[Path]:
    """All image files under ``root`` (recursive), sorted by path for a deterministic order.

    Hidden files and folders (names starting with ``.``, e.g. macOS ``._x.jpg`` resource
    forks) are skipped; symlinked folders are not followed, so a link cycle cannot loop.

    Args:
        root: the folder to search.
        suffixes: lower-case file suffixes to pick up (``{ARRAY_SUFFIX}`` for array files).

    Raises:
        FileNotFoundError: ``root`` is not a directory.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder")
    found: list[Path] = []
    for folder, subdirs, names in os.walk(root):
        subdirs[:] = [name for name in subdirs if not name.startswith(".")]
        found.extend(
            Path(folder, name)
            for name in names
            if not name.startswith(".") and Path(name).suffix.lower() in suffixes
        )
    return sorted(found)


def read_image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """``(H, W)`` of an image from its header only (cheap: no pixel decoding).

    Raises:
        ImageReadError: the file is missing or not a recognisable image.
    """
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise ImageReadError(f"{path}: cannot read image ({_reason(error)})") from None
    return height, width


def read_image(path: str | os.PathLike[str], mode: str = "RGB") -> torch.Tensor:
    """Decode an image file into a ``(C, H, W)`` uint8 CPU tensor (0..255).

    Args:
        path: any format Pillow reads.
        mode: ``"RGB"`` (C=3) or ``"L"`` (C=1, for single-channel ciphertexts).

    Raises:
        ImageReadError: the file is missing, truncated, corrupt or not 8-bit.
    """
    if mode not in _MODES:
        raise InputError(f"mode must be one of {_MODES}, got {mode!r}")
    try:
        with Image.open(path) as image:
            source_mode = image.mode
            if not source_mode.startswith(_WIDE_MODES):
                array = np.array(image.convert(mode))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise ImageReadError(f"{path}: cannot read image ({_reason(error)})") from None
    if source_mode.startswith(_WIDE_MODES):
        raise ImageReadError(
            f"{path}: {source_mode} images (16-bit or float) are not supported; "
            "convert them to 8 bits per channel first"
        )
    tensor = torch.from_numpy(array)
    if tensor.ndim == 2:
        return tensor.unsqueeze(0)
    return tensor.permute(2, 0, 1).contiguous()


def write_png_atomic(image: torch.Tensor, path: str | os.PathLike[str]) -> Path:
    """Write a ``(C, H, W)`` uint8 tensor (C = 1, 3 or 4) as a lossless PNG, atomically.

    The PNG is encoded into a hidden temporary file next to ``path`` and renamed over it, so
    ``path`` either does not exist or holds a complete image. Parent folders are created.
    File permissions follow the umask, like any new file.
    """
    if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] not in (1, 3, 4):
        raise InputError(
            f"expected a (C, H, W) uint8 tensor with C in 1, 3, 4; got {image.dtype} "
            f"{tuple(image.shape)}"
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    array = image.detach().cpu().permute(1, 2, 0).numpy()
    pil_image = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
    try:
        with open(tmp, "xb") as handle:
            pil_image.save(handle, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` -> ``"float32"`` (the names of markers and shard metadata)."""
    return str(dtype).removeprefix("torch.")


def write_array_atomic(array: torch.Tensor, path: str | os.PathLike[str]) -> Path:
    """Write a ``(C, H, W)`` float32/float16 tensor as a ``.npy`` file, atomically (as
    :func:`write_png_atomic`: a hidden temporary file renamed over ``path``), bit for bit."""
    if array.ndim != 3 or array.dtype not in ARRAY_DTYPES.values():
        raise InputError(
            f"expected a (C, H, W) float32 or float16 tensor; got {array.dtype} "
            f"{tuple(array.shape)}"
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    values = np.ascontiguousarray(array.detach().cpu().numpy())
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
    try:
        with open(tmp, "xb") as handle:
            np.lib.format.write_array(handle, values, allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def read_array_header(path: str | os.PathLike[str]) -> tuple[tuple[int, ...], str]:
    """``(shape, dtype name)`` of a ``.npy`` file from its header only (no data read).

    Raises:
        ImageReadError: missing, not a ``.npy`` file, Fortran order, or not native float32/16.
    """
    with _open_array(path) as (_, shape, dtype):
        return shape, dtype


def read_array_into(path: str | os.PathLike[str], out: torch.Tensor) -> None:
    """Read a ``.npy`` file straight into ``out`` (a contiguous CPU tensor, e.g. one row of a
    preallocated batch): no temporary array, so loading N files peaks at the batch's size.

    Raises:
        ImageReadError: the header differs from ``out``'s shape and dtype, or the file is
            short (truncated).
    """
    if not out.is_contiguous() or out.device.type != "cpu":
        raise InputError("read_array_into needs a contiguous CPU tensor to read into")
    with _open_array(path) as (handle, shape, dtype):
        expected = (tuple(out.shape), dtype_name(out.dtype))
        if (shape, dtype) != expected:
            raise ImageReadError(
                f"{path}: holds {dtype} {shape}, expected {expected[1]} {expected[0]}"
            )
        view = out.numpy().data.cast("B")
        if handle.readinto(view) != view.nbytes:
            raise ImageReadError(f"{path}: cannot read array (truncated file)")


def read_array(path: str | os.PathLike[str]) -> torch.Tensor:
    """A ``.npy`` file as a tensor of its own shape and dtype (see :func:`read_array_into`)."""
    shape, dtype = read_array_header(path)
    out = torch.empty(shape, dtype=ARRAY_DTYPES[dtype])
    read_array_into(path, out)
    return out


@contextlib.contextmanager
def _open_array(
    path: str | os.PathLike[str],
) -> Iterator[tuple[io.BufferedReader, tuple[int, ...], str]]:
    """Open a ``.npy`` file past its header: ``(handle, shape, dtype name)``."""
    fmt = np.lib.format
    try:
        handle = open(path, "rb")  # noqa: SIM115 (closed below)
    except OSError as error:
        raise ImageReadError(f"{path}: cannot read array ({_reason(error)})") from None
    with handle:
        try:
            version = fmt.read_magic(handle)
            read_header = (
                fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            )
            shape, fortran, dtype = read_header(handle)
        except (OSError, ValueError) as error:
            raise ImageReadError(f"{path}: cannot read array ({_reason(error)})") from None
        name = str(dtype)
        if fortran or name not in ARRAY_DTYPES or not dtype.isnative:
            raise ImageReadError(
                f"{path}: holds a {'Fortran-order ' if fortran else ''}{dtype.str} array; "
                "real-valued ciphertexts are C-order float32 or float16 files from "
                "vitlearnenc-encrypt"
            )
        yield handle, tuple(int(v) for v in shape), name


def remove_stale_temps(root: str | os.PathLike[str]) -> int:
    """Delete temporary files that a killed :func:`write_png_atomic` (or
    :func:`write_array_atomic`) left under ``root``.

    Returns the number removed. Do not call it while another process writes into ``root``.
    """
    removed = 0
    for folder, _, names in os.walk(root):
        for name in names:
            if name.startswith(".") and name.endswith(TEMP_SUFFIX):
                Path(folder, name).unlink(missing_ok=True)
                removed += 1
    return removed


def _reason(error: BaseException) -> str:
    """A one-line reason for a decoding failure (Pillow messages can be empty or multi-line)."""
    text = " ".join(str(error).split())
    return text or type(error).__name__
