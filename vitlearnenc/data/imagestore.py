"""Decode image trees from a folder or straight from a ``.tar``/``.tar.gz`` archive.

Both sources are addressed the same way: a *subfolder* (``"train"``, ``"test"`` or ``""`` for
everything) and, inside it, image files named by their relative POSIX path. Archives are read
in one sequential pass (gzip has no index) and may wrap the whole tree in one top-level folder
(``cifar10/train/...``). Pixels come from :func:`vitlearnenc.utils.imagefiles.read_image`, the
decoder of ``vitlearnenc-encrypt``, so a file decodes to the same bytes on both sides.

Decoding is sequential: for small images such as CIFAR's it is bound by Python overhead, and
a thread pool measured no faster (it helps only for large images, ~2x on two cores for
224x224 PNGs).
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vitlearnenc.errors import InputError
from vitlearnenc.utils.imagefiles import (
    IMAGE_EXTENSIONS,
    ImageReadError,
    list_images,
    read_image,
    read_image_size,
)

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz")

# a decoding job: the path of a file, or the raw bytes of an archive member
_Job = Path | bytes


@dataclass
class DecodedTree:
    """The images found under one subfolder, sorted by relative path.

    Attributes:
        names: relative POSIX paths of the decoded files (inside the subfolder).
        images: ``(3, H, W)`` uint8 tensors, one per name.
        failures: ``(name, reason)`` of image files that could not be decoded.
    """

    names: list[str] = field(default_factory=list)
    images: list[torch.Tensor] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)


def is_archive(source: str | os.PathLike[str]) -> bool:
    """True for ``.tar``, ``.tar.gz`` and ``.tgz`` paths."""
    return str(source).lower().endswith(ARCHIVE_SUFFIXES)


def decode_tree(
    source: str | os.PathLike[str], subfolders: Sequence[str]
) -> dict[str, DecodedTree]:
    """Decode every image file under each of ``subfolders`` of a folder or archive.

    Args:
        source: a folder, or a tar archive (optionally gzipped) with the same layout.
        subfolders: folder names relative to ``source``; ``""`` means the whole tree. A
            subfolder that does not exist yields an empty :class:`DecodedTree`.

    Returns:
        One :class:`DecodedTree` per subfolder. Hidden files and folders (``.name``) and files
        without an image extension are skipped; files that fail to decode are listed in
        ``failures`` instead of raising.

    Raises:
        FileNotFoundError: ``source`` does not exist.
        ValueError: ``source`` is an unreadable archive.
    """
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"{source} does not exist")
    files: Iterator[tuple[str, str, _Job]] = (
        _iter_archive(source, subfolders)
        if is_archive(source)
        else _iter_folder(source, subfolders)
    )
    # decode while streaming (only pixels are kept), then one order for folders and archives:
    # by path components, as pathlib sorts
    decoded = [(sub, tuple(name.split("/")), name, _decode(job)) for sub, name, job in files]
    decoded.sort(key=lambda entry: entry[:2])
    trees = {sub: DecodedTree() for sub in subfolders}
    for sub, _, name, result in decoded:
        tree = trees[sub]
        if isinstance(result, torch.Tensor):
            tree.names.append(name)
            tree.images.append(result)
        else:
            tree.failures.append((name, result))
    return trees


def probe_size(source: str | os.PathLike[str], subfolders: Sequence[str]) -> tuple[int, int]:
    """(H, W) of the first readable image file under the first of ``subfolders`` that has
    one; only headers are decoded (plus, for an archive, the stream up to that file).

    Raises:
        FileNotFoundError: no readable image file is found.
    """
    source = Path(source)
    if is_archive(source):
        candidates: Iterator[Path | io.BytesIO] = (
            io.BytesIO(data) for _, _, data in _iter_archive(source, subfolders)
        )
    else:
        candidates = (path for _, _, path in _iter_folder(source, subfolders))
    for candidate in candidates:  # stopping early closes the archive with the generator
        try:
            return read_image_size(candidate)  # type: ignore[arg-type]
        except ImageReadError:
            continue  # corrupt files are skipped (and counted) when the split is decoded
    raise FileNotFoundError(f"no readable image files under {_describe(source, subfolders)}")


def _decode(job: _Job) -> torch.Tensor | str:
    """Decode one file; a failure comes back as its reason (the caller counts them)."""
    # read_image is annotated for paths; Pillow (and so read_image) also takes file objects
    handle = job if isinstance(job, Path) else io.BytesIO(job)
    try:
        return read_image(handle)  # type: ignore[arg-type]
    except ImageReadError as error:
        return str(error).removeprefix(f"{handle}: ")  # the caller names the file itself


def _iter_folder(root: Path, subfolders: Sequence[str]) -> Iterator[tuple[str, str, Path]]:
    """Yield ``(subfolder, name, path)`` for the image files of a folder tree."""
    if not root.is_dir():
        raise InputError(f"{root} is neither a folder nor a .tar/.tar.gz archive")
    for sub in subfolders:
        folder = root / sub
        if folder.is_dir():
            for path in list_images(folder):
                yield sub, path.relative_to(folder).as_posix(), path


def _iter_archive(archive: Path, subfolders: Sequence[str]) -> Iterator[tuple[str, str, bytes]]:
    """Yield ``(subfolder, name, raw bytes)`` for the image members of an archive, in stream order.

    A member ``[wrapper/]sub/name`` matches ``sub``; all matches must share one wrapper (or
    none), so that a stray copy elsewhere in the archive is not mixed in.
    """
    wanted = [(sub, _components(sub)) for sub in subfolders]
    wrappers: set[str] = set()
    try:
        with tarfile.open(archive, "r|*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                # plain string work: this runs for every member of archives of ~10^5 files
                parts = _components(member.name)
                if any(part.startswith(".") for part in parts) or (
                    os.path.splitext(parts[-1])[1].lower() not in IMAGE_EXTENSIONS
                ):
                    continue
                match = _match(parts, wanted)
                if match is None:
                    continue
                wrapper, sub, name = match
                wrappers.add(wrapper)
                if len(wrappers) > 1:
                    raise InputError(
                        f"{archive} holds image folders at several levels "
                        f"({', '.join(sorted(w or '.' for w in wrappers))}); keep one tree"
                    )
                handle = tar.extractfile(member)
                if handle is None:
                    continue
                yield sub, name, handle.read()
    except (tarfile.TarError, EOFError, OSError) as error:
        raise InputError(f"{archive}: cannot read the archive ({error}); is it complete?") from None


def _match(
    parts: tuple[str, ...], wanted: Sequence[tuple[str, tuple[str, ...]]]
) -> tuple[str, str, str] | None:
    """``(wrapper, subfolder, name)`` if the member path lies under one of the subfolders
    (given with their path components)."""
    for sub, sub_parts in wanted:
        for start in (0, 1):  # directly at the top, or inside one wrapper folder
            end = start + len(sub_parts)
            if len(parts) > end and parts[start:end] == sub_parts:
                wrapper = parts[0] if start else ""
                return wrapper, sub, "/".join(parts[end:])
    return None


def _components(path: str) -> tuple[str, ...]:
    """The components of a POSIX path, without empty and ``.`` ones (``./a//b`` -> a, b)."""
    return tuple(part for part in path.split("/") if part not in ("", "."))


def _describe(source: Path, subfolders: Sequence[str]) -> str:
    return ", ".join(str(source / sub) for sub in subfolders) or str(source)
