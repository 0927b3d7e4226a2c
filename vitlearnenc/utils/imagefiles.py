"""Image files and folder trees as uint8 tensors: listing, decoding, atomic PNG writes.

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
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vitlearnenc.errors import InputError, VitlearnencError

#: file suffixes (lower case) that :func:`list_images` picks up
IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".gif"}
)
#: suffix of the temporary files that :func:`write_png_atomic` renames into place
TEMP_SUFFIX = ".vitlearnenc-tmp"

_MODES = ("RGB", "L")  # 3-channel and 1-channel 8-bit decoding
_WIDE_MODES = ("I", "F")  # Pillow modes of 16/32-bit integer and float images


class ImageReadError(VitlearnencError, ValueError):
    """An image file that cannot be decoded (missing, truncated, corrupt or unsupported)."""


def list_images(root: str | os.PathLike[str]) -> list[Path]:
    """All image files under ``root`` (recursive), sorted by path for a deterministic order.

    Hidden files and folders (names starting with ``.``, e.g. macOS ``._x.jpg`` resource
    forks) are skipped; symlinked folders are not followed, so a link cycle cannot loop.

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
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS
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


def remove_stale_temps(root: str | os.PathLike[str]) -> int:
    """Delete temporary files that a killed :func:`write_png_atomic` left under ``root``.

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
