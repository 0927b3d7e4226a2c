"""Tiny image trees on disk and tar archives of them, shared by the data, reliability and
benchmark tests."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
from PIL import Image


def write_tree(
    root: Path,
    layout: dict[str, int],
    size: int | tuple[int, int] = 16,
    suffix: str = ".png",
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Write ``layout[relative_folder]`` random RGB images into each folder under ``root``
    (``""`` is ``root`` itself).

    Returns the written pixels (``(H, W, 3)`` uint8, as stored for PNG) by relative path.
    """
    rng = np.random.default_rng(seed)
    height, width = (size, size) if isinstance(size, int) else size
    written = {}
    for folder, count in layout.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
            relative = f"{folder}/{i:03d}{suffix}" if folder else f"{i:03d}{suffix}"
            Image.fromarray(pixels).save(root / relative)
            written[relative] = pixels
    return written


def make_tar(source: Path, archive: Path, wrapper: str | None = None) -> Path:
    """Pack the contents of ``source`` into ``archive`` (gzipped for ``.tar.gz``)."""
    mode = "w:gz" if archive.name.endswith(".gz") else "w"
    with tarfile.open(archive, mode) as tar:
        for path in sorted(source.rglob("*")):
            name = path.relative_to(source).as_posix()
            tar.add(path, arcname=f"{wrapper}/{name}" if wrapper else name, recursive=False)
    return archive
