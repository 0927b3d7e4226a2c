"""Decode image trees from a folder or straight from a ``.tar``/``.tar.gz`` archive.

Both sources are addressed the same way: a *subfolder* (``"train"``, ``"test"`` or ``""`` for
everything) and, inside it, image files named by their relative POSIX path. Archives are read
in one sequential pass (gzip has no index) and may wrap the whole tree in one top-level folder
(``cifar10/train/...``). Pixels come from :func:`vitlearnenc.utils.imagefiles.read_image`, the
decoder of ``vitlearnenc-encrypt``, so a file decodes to the same bytes on both sides.

Decoding is sequential: for small images such as CIFAR's it is bound by Python overhead, and
a thread pool measured no faster (it helps only for large images, ~2x on two cores for
224x224 PNGs).

Folders of real-valued ciphertexts (``.npy`` arrays from ``vitlearnenc-encrypt`` with an
orthomix key) load through :func:`load_tree` too, given the :class:`ArrayFormat` their marker
records: every header is checked against it before anything is loaded, and each file is read
straight into its row of one preallocated float tensor.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vitlearnenc.errors import InputError
from vitlearnenc.utils.image_ops import resize_uint8
from vitlearnenc.utils.imagefiles import (
    ARRAY_DTYPES,
    ARRAY_SUFFIX,
    IMAGE_EXTENSIONS,
    ImageReadError,
    list_images,
    read_array_header,
    read_array_into,
    read_image,
    read_image_size,
)

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz")
_ARRAY_SUFFIXES = frozenset({ARRAY_SUFFIX})

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
        iter_archive_images(source, subfolders)
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


def probe_size(
    source: str | os.PathLike[str],
    subfolders: Sequence[str],
    arrays: ArrayFormat | None = None,
) -> tuple[int, int]:
    """(H, W) of the first readable image file (``.npy`` file with ``arrays``) under the first
    of ``subfolders`` that has one; only headers are decoded (plus, for an archive, the stream
    up to that file).

    Raises:
        FileNotFoundError: no readable image file is found.
    """
    source = Path(source)
    if arrays is not None:
        for _, _, path in _iter_folder(_array_folder(source), subfolders, _ARRAY_SUFFIXES):
            try:
                shape, _ = read_array_header(path)
            except ImageReadError:
                continue
            return int(shape[-2]), int(shape[-1])
        raise FileNotFoundError(f"no readable .npy files under {_describe(source, subfolders)}")
    if is_archive(source):
        candidates: Iterator[Path | io.BytesIO] = (
            io.BytesIO(data) for _, _, data in iter_archive_images(source, subfolders)
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


def _iter_folder(
    root: Path, subfolders: Sequence[str], suffixes: frozenset[str] = IMAGE_EXTENSIONS
) -> Iterator[tuple[str, str, Path]]:
    """Yield ``(subfolder, name, path)`` for the image (or ``suffixes``) files of a tree."""
    if not root.is_dir():
        raise InputError(f"{root} is neither a folder nor a .tar/.tar.gz archive")
    for sub in subfolders:
        folder = root / sub
        if folder.is_dir():
            for path in list_images(folder, suffixes):
                yield sub, path.relative_to(folder).as_posix(), path


def iter_archive_images(
    archive: Path, subfolders: Sequence[str]
) -> Iterator[tuple[str, str, bytes]]:
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


@dataclass
class LoadedTree:
    """The images of one subfolder in one preallocated tensor (see :func:`load_tree`).

    Attributes:
        names: relative POSIX paths of the loaded files, sorted; row i of ``images`` is names[i].
        images: ``(N, 3, H, W)`` uint8.
        failures: ``(name, reason)`` of image files that could not be read.
        ignored: names the ``accept`` filter left out (not read past their header).
    """

    names: list[str]
    images: torch.Tensor
    failures: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ArrayFormat:
    """Real-valued ciphertexts stored as ``.npy`` arrays (what a folder's marker records).

    Attributes:
        dtype: ``float32`` or ``float16``.
        shape: ``(C, H, W)`` of every file (None: only the dtype is checked).
        source: where this was read, for messages (e.g. the marker's path).
    """

    dtype: str
    shape: tuple[int, int, int] | None = None
    source: str = "the folder marker"

    def check(self, path: Path, shape: tuple[int, ...], dtype: str) -> None:
        """Raise a one-line :class:`InputError` if a header differs from the format."""
        if dtype != self.dtype or (self.shape is not None and shape != self.shape):
            expected = "x".join(map(str, self.shape)) if self.shape else "any shape"
            raise InputError(
                f"{path} holds {dtype} {'x'.join(map(str, shape))} but {self.source} says "
                f"{self.dtype} {expected}; the folder mixes outputs of different keys: "
                "re-encrypt it into a new folder with vitlearnenc-encrypt"
            )


class MixedSizesError(InputError):
    """A split holds images of different sizes (found from the headers, before decoding)."""


def load_tree(
    source: str | os.PathLike[str],
    subfolders: Sequence[str],
    accept: Callable[[str], bool] = lambda name: True,
    resize_to: tuple[int, int] | None = None,
    arrays: ArrayFormat | None = None,
) -> dict[str, LoadedTree]:
    """Decode each subfolder into one preallocated ``(N, 3, H, W)`` tensor (uint8; with
    ``arrays``, the ``.npy`` files into ``(N, C, H, W)`` of their float dtype).

    Why not :func:`decode_tree` and ``torch.stack``: that holds every image twice at the
    peak (the list and the stack). Here a first pass reads only headers, so the sizes are
    checked and the tensor allocated before any pixel is decoded, and a second pass decodes
    each file into its row. An archive is read twice (gzip has no index; the first pass only
    looks at headers), which costs decompression, not decoding.

    Args:
        source: a folder, or a tar archive (optionally gzipped) with the same layout.
        subfolders: as for :func:`decode_tree`.
        accept: which names (relative to their subfolder) to load.
        resize_to: ``(H, W)`` to resize all images to when a subfolder holds several sizes
            (bilinear, as on the device); None requires one size per subfolder. Not for
            arrays (ciphertexts are never resized).
        arrays: load the ``.npy`` ciphertexts of this format instead of images (folders only).

    Raises:
        MixedSizesError: with ``resize_to`` None, two sizes in one subfolder; the message
            names a file of each.
        InputError: an array file whose header differs from ``arrays``.
        FileNotFoundError, ValueError: as :func:`decode_tree`.
    """
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"{source} does not exist")
    if arrays is not None:
        return _load_array_tree(_array_folder(source), subfolders, accept, arrays)
    sizes: dict[str, dict[str, tuple[int, int]]] = {sub: {} for sub in subfolders}
    trees = {sub: LoadedTree([], torch.empty(0, 3, 0, 0, dtype=torch.uint8)) for sub in subfolders}
    for sub, name, job in _iter_source(source, subfolders):
        if not accept(name):
            trees[sub].ignored.append(name)
            continue
        handle = job if isinstance(job, Path) else io.BytesIO(job)
        try:
            sizes[sub][name] = read_image_size(handle)  # type: ignore[arg-type]
        except ImageReadError as error:
            trees[sub].failures.append((name, str(error).removeprefix(f"{handle}: ")))
    rows: dict[str, dict[str, int]] = {}
    for sub, found in sizes.items():
        names = sorted(found, key=lambda name: tuple(name.split("/")))
        tree = trees[sub]
        tree.names, tree.failures = names, sorted(tree.failures)
        size = found[names[0]] if names else (0, 0)
        odd = next((name for name in names if found[name] != size), None)
        if odd is not None and resize_to is not None:
            size = resize_to  # mixed sizes: all to resize_to; one size: kept
        elif odd is not None:
            where = source / sub if sub else source
            raise MixedSizesError(
                f"{where}/{odd} is {found[odd][0]}x{found[odd][1]} but {where}/{names[0]} is "
                f"{size[0]}x{size[1]}; all images of a split must have one size: resize them "
                "beforehand (e.g. vitlearnenc-encrypt --resize S for encrypted data)"
            )
        tree.images = torch.empty((len(names), 3, *size), dtype=torch.uint8)
        rows[sub] = {name: row for row, name in enumerate(names)}
    if any(rows.values()):
        _decode_into(source, subfolders, trees, rows)
    return trees


def _decode_into(
    source: Path,
    subfolders: Sequence[str],
    trees: dict[str, LoadedTree],
    rows: dict[str, dict[str, int]],
) -> None:
    """The second pass of :func:`load_tree`: decode each wanted file into its row; rows of
    files that fail now (a header that reads but pixels that do not) are closed up in place."""
    failed: dict[str, set[int]] = {sub: set() for sub in subfolders}
    for sub, name, job in _iter_source(source, subfolders):
        row = rows[sub].get(name)
        if row is None:
            continue
        result = _decode(job)
        tree = trees[sub]
        if isinstance(result, str):
            tree.failures.append((name, result))
            failed[sub].add(row)
            continue
        height, width = tree.images.shape[-2:]
        if result.shape[-2:] != (height, width):
            result = resize_uint8(result[None], (height, width))[0]
        tree.images[row] = result
    for sub, bad in failed.items():
        if bad:
            _close_rows(trees[sub], bad)


def _array_folder(source: Path) -> Path:
    if is_archive(source):
        raise InputError(
            f"{source}: .npy ciphertexts are read from folders only; extract the archive"
        )
    return source


def _load_array_tree(
    source: Path, subfolders: Sequence[str], accept: Callable[[str], bool], arrays: ArrayFormat
) -> dict[str, LoadedTree]:
    """:func:`load_tree` for ``.npy`` ciphertexts: headers first (every one checked against
    ``arrays``, one shape per subfolder), then each file read into its preallocated row."""
    found: dict[str, dict[str, tuple[Path, tuple[int, ...]]]] = {sub: {} for sub in subfolders}
    trees = {
        sub: LoadedTree([], torch.empty(0, dtype=ARRAY_DTYPES[arrays.dtype])) for sub in subfolders
    }
    for sub, name, path in _iter_folder(source, subfolders, _ARRAY_SUFFIXES):
        if not accept(name):
            trees[sub].ignored.append(name)
            continue
        try:
            shape, dtype = read_array_header(path)
        except ImageReadError as error:
            trees[sub].failures.append((name, str(error).removeprefix(f"{path}: ")))
            continue
        arrays.check(path, shape, dtype)
        found[sub][name] = (path, shape)
    for sub, files in found.items():
        tree = trees[sub]
        tree.names = sorted(files, key=lambda name: tuple(name.split("/")))
        tree.failures.sort()
        shape = files[tree.names[0]][1] if tree.names else (3, 0, 0)
        odd = next((name for name in tree.names if files[name][1] != shape), None)
        if odd is not None:
            where = source / sub if sub else source
            raise MixedSizesError(
                f"{where}/{odd} holds {'x'.join(map(str, files[odd][1]))} but {where}/"
                f"{tree.names[0]} holds {'x'.join(map(str, shape))}; all ciphertexts of a "
                "split must have one shape: encrypt them with one key (vitlearnenc-encrypt "
                "--resize S)"
            )
        tree.images = torch.empty((len(tree.names), *shape), dtype=ARRAY_DTYPES[arrays.dtype])
        failed = set()
        for row, name in enumerate(tree.names):
            try:
                read_array_into(files[name][0], tree.images[row])
            except ImageReadError as error:  # changed or truncated since its header was read
                tree.failures.append((name, str(error).removeprefix(f"{files[name][0]}: ")))
                failed.add(row)
        if failed:
            _close_rows(tree, failed)
    return trees


def _close_rows(tree: LoadedTree, bad: set[int]) -> None:
    """Drop the rows ``bad`` of a loaded tree in place (no second tensor)."""
    keep = [row for row in range(len(tree.names)) if row not in bad]
    for new, old in enumerate(keep):
        if new != old:
            tree.images[new] = tree.images[old]
    tree.images = tree.images[: len(keep)]
    tree.names = [tree.names[row] for row in keep]
    tree.failures.sort()


def _iter_source(source: Path, subfolders: Sequence[str]) -> Iterator[tuple[str, str, _Job]]:
    return (
        iter_archive_images(source, subfolders)
        if is_archive(source)
        else _iter_folder(source, subfolders)
    )
