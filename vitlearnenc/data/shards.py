"""Pack a labelled image dataset into litdata shards, encrypted by the data owner (or plain).

``vitlearnenc-pack`` (:mod:`vitlearnenc.cli.pack`) is a thin wrapper around :func:`pack`. The
output is one litdata dataset per split (``OUT/train``, ``OUT/test`` and, when asked,
``OUT/val``) plus ``OUT/vitlearnenc-shards.json`` (:class:`ShardMetadata`: cipher, sizes, key
fingerprint, counts, classes; never key material). One item per image::

    {"image": (3, S, S) uint8 CHW tensor at the training size (encrypted unless plain),
     "label": int, "name": "<class>/<file>" relative to its split folder}

Real-valued ciphertexts (orthomix) are stored as float32 or float16 tensors, the key's storage
dtype, recorded as ``dtype`` in the metadata. litdata serialises tensors as their raw bytes, and
its only compression (``zstd``) is lossless, so the stored values are bit for bit what the
cipher returned; nothing lossy (such as litdata's JPEG serialiser for PIL images) is used.

Design choices (why it is written this way):

- **litdata.optimize** does the parallel writing and the chunk format that
  :class:`litdata.StreamingDataset` reads on the provider side. Its workers are spawned
  processes, so the per-image work is a picklable :class:`PackRecipe` that loads the key file
  itself (only the key's *path* is handed to them).
- **Shuffled once before packing** with a fixed seed: litdata shuffles chunk order and items
  within a chunk window only, so class-sorted input would give single-class chunks.
- **Never looks complete after a failure**: everything is written into a hidden staging folder
  beside ``OUT`` and renamed to ``OUT`` only after the count written was checked (litdata's
  workers can die and leave a short index while the main process reports success) and the
  metadata file was written. Failed or interrupted runs leave no ``OUT``.
- **Archives** (``.tar``/``.tar.gz``) are extracted into the staging folder first: gzip has no
  random access, and the seeded shuffle and the parallel workers need it.
- **torchvision CIFAR** (a folder holding ``cifar-10-batches-py`` or ``cifar-100-python``) is
  read from its pickled arrays in each worker.
- Corrupt images stop the run with an error naming the file, or are skipped and counted with
  ``skip_bad``. Workers are forked (spawned ones re-import torch, ~10 s per split here) and
  run one torch thread each, as DataLoader workers do.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vitlearnenc.ciphers import Cipher, build_cipher, get_cipher_class, load_key
from vitlearnenc.data.imagestore import is_archive, iter_archive_images
from vitlearnenc.utils.files import write_json_atomic
from vitlearnenc.utils.image_ops import resize_uint8
from vitlearnenc.utils.imagefiles import (
    ARRAY_DTYPES,
    ImageReadError,
    dtype_name,
    list_images,
    read_image,
)
from vitlearnenc.utils.markers import MARKER_NAME, MarkerError, find_marker

#: the metadata file in a packed output; its presence marks the output as complete
METADATA_NAME = "vitlearnenc-shards.json"
_WRITER = "vitlearnenc-pack"
_VERSION = 1
RESIZE_MODES = ("resize", "shorter-center-crop")
SPLITS = ("train", "val", "test")
#: dtypes of stored images: uint8 images, or real-valued ciphertexts (never lossy-compressed)
SHARD_DTYPES = ("uint8", *ARRAY_DTYPES)
_CIFAR_FOLDERS = {"cifar-10-batches-py": "cifar10", "cifar-100-python": "cifar100"}


class PackError(ValueError):
    """Bad input to :func:`pack` (the message names the problem and the fix)."""


class ShardMetadataError(ValueError):
    """Shards whose metadata is missing, unreadable or disagrees with the config."""


@dataclass(frozen=True)
class ShardMetadata:
    """Public facts about a packed dataset (``OUT/vitlearnenc-shards.json``).

    Attributes:
        cipher: registered name of the cipher the images were packed with.
        keyed: whether the images are ciphertexts (False: plain images).
        image_size: (H, W) of every stored image.
        block_size: the cipher's block size.
        key_fingerprint: the key's short fingerprint (None for plain shards).
        counts: images per split (``train``, ``test``, optionally ``val``).
        classes: class names; label i is ``classes[i]``.
        resize_mode: how source images were brought to ``image_size``.
        shuffle_seed: seed of the pre-packing shuffle (and the val split); None = sorted order.
        compression: litdata chunk compression (None or e.g. ``zstd``).
        skipped: corrupt source images left out (``skip_bad``).
        dtype: dtype of every stored image: ``uint8``, or ``float32``/``float16`` for
            real-valued ciphertexts (the key's storage dtype); metadata written before this
            field existed reads as ``uint8``.
    """

    cipher: str
    keyed: bool
    image_size: tuple[int, int]
    block_size: int
    key_fingerprint: str | None
    counts: dict[str, int]
    classes: list[str]
    resize_mode: str
    shuffle_seed: int | None
    compression: str | None = None
    skipped: int = 0
    dtype: str = "uint8"

    def describe(self) -> str:
        """One line for messages, e.g. ``proposed, 224x224, block 16, key 0123456789ab``
        (``orthomix, 224x224, block 16, float32, key ...`` for real-valued ciphertexts)."""
        height, width = self.image_size
        key = f"key {self.key_fingerprint}" if self.keyed else "plain images"
        stored = "" if self.dtype == "uint8" else f"{self.dtype}, "
        return f"{self.cipher}, {height}x{width}, block {self.block_size}, {stored}{key}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["image_size"] = list(self.image_size)
        return {"packed_by": _WRITER, "version": _VERSION, **data}

    @classmethod
    def from_dict(cls, data: Any, source: str) -> ShardMetadata:
        try:
            if data.get("packed_by") != _WRITER:
                raise KeyError("packed_by")
            height, width = data["image_size"]
            return cls(
                cipher=str(data["cipher"]),
                keyed=bool(data["keyed"]),
                image_size=(int(height), int(width)),
                block_size=int(data["block_size"]),
                key_fingerprint=data["key_fingerprint"],
                counts={str(k): int(v) for k, v in data["counts"].items()},
                classes=[str(c) for c in data["classes"]],
                resize_mode=str(data["resize_mode"]),
                shuffle_seed=data["shuffle_seed"],
                compression=data.get("compression"),
                skipped=int(data.get("skipped", 0)),
                dtype=_known_dtype(data.get("dtype", "uint8")),
            )
        except (AttributeError, KeyError, TypeError, ValueError):
            raise ShardMetadataError(
                f"{source} is not a metadata file written by {_WRITER}; pack the data with "
                f"{_WRITER}"
            ) from None


def _known_dtype(name: object) -> str:
    if name not in SHARD_DTYPES:
        raise ValueError(f"unknown dtype {name!r}")
    return str(name)


def join_uri(root: str, *parts: str) -> str:
    """``root/part/...`` for local paths and URIs (``s3://bucket/x``) alike."""
    return "/".join([root.rstrip("/"), *parts])


def read_metadata(root: str | os.PathLike[str]) -> ShardMetadata:
    """The metadata of a packed dataset at a local path or any URI fsspec reads.

    Raises:
        ShardMetadataError: no metadata file (not a finished pack) or an unreadable one.
    """
    import fsspec

    source = join_uri(str(root), METADATA_NAME)
    try:
        with fsspec.open(source, "r") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        raise ShardMetadataError(
            f"{root} has no {METADATA_NAME}: it is not a finished {_WRITER} output (an "
            f"interrupted pack leaves none); pack the data with {_WRITER} SRC {root}"
        ) from None
    except (OSError, ValueError) as error:
        raise ShardMetadataError(f"cannot read {source}: {' '.join(str(error).split())}") from None
    return ShardMetadata.from_dict(data, source)


def check_chunks(root: str, split: str) -> int:
    """Check that every chunk listed in ``root/split/index.json`` exists with its full size.

    One listing of the split folder (cheap locally and on object stores), so a missing or
    truncated chunk fails before the first batch, not hours into an epoch.

    Returns:
        The number of items the index lists.

    Raises:
        ShardMetadataError: the index is missing or unreadable, or a chunk is missing or short.
    """
    import fsspec

    folder = join_uri(root, split)
    fs, path = fsspec.core.url_to_fs(folder)
    try:
        with fs.open(f"{path}/index.json", "r") as handle:
            index = json.load(handle)
        sizes = {Path(entry["name"]).name: entry["size"] for entry in fs.ls(path, detail=True)}
        chunks = index["chunks"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ShardMetadataError(
            f"cannot read the shard index of {folder} ({' '.join(str(error).split())}); "
            "copy the whole packed output again"
        ) from None
    for chunk in chunks:
        name = chunk["filename"]
        expected = chunk.get("chunk_bytes")
        found = sizes.get(name)
        if found is None:
            raise ShardMetadataError(
                f"chunk {folder}/{name} is missing; copy the whole packed output again"
            )
        if index["config"].get("compression") is None and expected and found < expected:
            raise ShardMetadataError(
                f"chunk {folder}/{name} is truncated ({found} of {expected} bytes); copy the "
                "whole packed output again"
            )
    return int(sum(chunk["chunk_size"] for chunk in chunks))


# ------------------------------------------------------------------------------ sources
@dataclass(frozen=True)
class PackItem:
    """One source image: where it is, its label and its name in the output."""

    name: str
    label: int
    location: str | tuple[str, str, int]  # a file path, or (cifar variant, root, index)


@dataclass
class SourceListing:
    """The labelled images of a source, by split, and the class names."""

    classes: list[str]
    splits: dict[str, list[PackItem]] = field(default_factory=dict)


def list_source(source: Path) -> SourceListing:
    """The images of a folder (``train/<class>/*``, ``test/<class>/*``) or torchvision CIFAR
    folder, sorted; class names from the training split.

    Raises:
        PackError: no images in class folders.
    """
    for folder, variant in _CIFAR_FOLDERS.items():
        if (source / folder).is_dir():
            return _list_cifar(source, variant)
    files = {
        split: list_images(source / split) if (source / split).is_dir() else []
        for split in ("train", "test")
    }
    relative = {
        split: [path.relative_to(source / split).as_posix() for path in paths]
        for split, paths in files.items()
    }
    class_split = "train" if relative["train"] else "test"
    classes = sorted({name.split("/", 1)[0] for name in relative[class_split] if "/" in name})
    if not classes:
        raise PackError(
            f"no images in class folders under {source}; expected train/<class>/<image> and "
            "test/<class>/<image> (a folder, a .tar/.tar.gz archive of it, or a folder holding "
            "torchvision's cifar-10-batches-py)"
        )
    index = {name: label for label, name in enumerate(classes)}
    listing = SourceListing(classes)
    for split in ("train", "test"):
        items = []
        for path, name in zip(files[split], relative[split], strict=True):
            if "/" not in name:
                continue  # files directly in the split folder have no class
            label = index.get(name.split("/", 1)[0])
            if label is None:
                raise PackError(
                    f"{source}/{split}/{name.split('/', 1)[0]} is not a class of the "
                    f"{class_split} split; the splits must use the same class folders"
                )
            items.append(PackItem(name, label, str(path)))
        if items:
            listing.splits[split] = items
    return listing


def _list_cifar(root: Path, variant: str) -> SourceListing:
    from torchvision.datasets import CIFAR10, CIFAR100

    cls = CIFAR10 if variant == "cifar10" else CIFAR100
    listing = SourceListing(classes=[])
    for split in ("train", "test"):
        dataset = cls(str(root), train=split == "train", download=False)
        listing.classes = list(dataset.classes)
        listing.splits[split] = [
            PackItem(
                f"{dataset.classes[label]}/{split}_{i:05d}.png",
                int(label),
                (variant, str(root), i if split == "train" else -1 - i),
            )
            for i, label in enumerate(dataset.targets)
        ]
    return listing


def extract_archive(archive: Path, target: Path) -> Path:
    """Extract the image files of ``train/`` and ``test/`` of an archive into ``target``
    (a wrapper folder is dropped); hidden and non-image members are left out."""
    for split, name, data in iter_archive_images(archive, ["train", "test"]):
        path = target / split / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return target


def assign_splits(
    listing: SourceListing, val_fraction: float, seed: int | None
) -> dict[str, list[PackItem]]:
    """The splits to pack, each shuffled once with ``seed`` (None: keep the sorted order);
    ``val`` takes a seeded ``val_fraction`` of the training images."""
    rng = np.random.default_rng(seed if seed is not None else 0)
    splits = dict(listing.splits)
    if val_fraction > 0:
        train = splits.get("train", [])
        count = max(1, round(len(train) * val_fraction))
        if count >= len(train):
            raise PackError(
                f"--val-fraction {val_fraction} leaves no training images out of {len(train)}"
            )
        chosen = np.zeros(len(train), dtype=bool)
        chosen[rng.permutation(len(train))[:count]] = True
        splits["train"] = [item for item, c in zip(train, chosen, strict=True) if not c]
        splits["val"] = [item for item, c in zip(train, chosen, strict=True) if c]
    if seed is not None:
        splits = {
            name: [items[i] for i in rng.permutation(len(items))] for name, items in splits.items()
        }
    return {name: splits[name] for name in SPLITS if name in splits}


# ------------------------------------------------------------------------- per item
def fit_size(image: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """Bring a ``(C, H, W)`` uint8 image to ``size``: ``resize`` stretches (the pipeline's
    bilinear :func:`resize_uint8`); ``shorter-center-crop`` scales so that the image covers
    ``size`` with its aspect ratio kept, then crops the centre."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    if mode == "resize":
        return resize_uint8(image[None], size)[0]
    height, width = image.shape[-2:]
    scale = max(size[0] / height, size[1] / width)
    scaled = (max(size[0], round(height * scale)), max(size[1], round(width * scale)))
    image = resize_uint8(image[None], scaled)[0]
    top, left = (scaled[0] - size[0]) // 2, (scaled[1] - size[1]) // 2
    return image[:, top : top + size[0], left : left + size[1]].contiguous()


@dataclass
class PackRecipe:
    """The per-image work of a litdata worker: decode, fit to the size, encrypt.

    A generator (litdata writes every yielded item): a corrupt image yields nothing and is
    appended to ``failure_dir/<pid>``; without ``skip_bad`` every later item yields nothing
    too and :func:`pack` reports the file. Workers never raise: litdata turns a worker error
    into a traceback and leaves the other workers' processes behind.

    Args:
        cipher: registered cipher name.
        image_size: the stored size (H, W).
        block_size: the cipher's block size.
        key_file: the owner's key file (None for unkeyed ciphers); read in the worker.
        resize: bring images of other sizes to ``image_size`` (else they are errors).
        resize_mode: one of :data:`RESIZE_MODES`.
        skip_bad: skip corrupt images instead of failing.
        failure_dir: where workers record failed files.
        progress_dir: where workers record how many items they finished.
    """

    cipher: str
    image_size: tuple[int, int]
    block_size: int
    key_file: str | None
    resize: bool
    resize_mode: str
    skip_bad: bool
    failure_dir: str
    progress_dir: str
    _state: dict[str, Any] = field(default_factory=dict, repr=False)

    def __getstate__(self) -> dict[str, Any]:  # never ship a built cipher (key) to workers
        state = dict(self.__dict__)
        state["_state"] = {}
        return state

    def _cipher(self) -> Cipher:
        if "cipher" not in self._state:
            key = load_key(self.key_file) if self.key_file is not None else None
            self._state["cipher"] = (
                build_cipher(self.cipher, key=key)
                if key is not None
                else build_cipher(
                    self.cipher, image_size=self.image_size, block_size=self.block_size
                )
            )
        return self._state["cipher"]

    def _read(self, location: str | tuple[str, str, int]) -> torch.Tensor:
        if isinstance(location, str):
            return read_image(location)
        variant, root, index = location
        arrays = self._state.setdefault("cifar", {})
        train = index >= 0
        if train not in arrays:
            from torchvision.datasets import CIFAR10, CIFAR100

            cls = CIFAR10 if variant == "cifar10" else CIFAR100
            arrays[train] = cls(root, train=train, download=False).data
        return torch.from_numpy(arrays[train][index if train else -1 - index]).permute(2, 0, 1)

    def __call__(self, item: PackItem) -> Iterator[dict[str, Any]]:
        if "threads" not in self._state:
            # one thread per worker, as DataLoader workers do: an OpenMP pool inherited
            # through fork from a parent that used it deadlocks the child's first parallel op
            torch.set_num_threads(1)
            self._state["threads"] = 1
        if not self.skip_bad and any(os.scandir(self.failure_dir)):
            return  # the pack has failed already: finish quickly, pack() reports the file
        try:
            image = self._read(item.location)
            if tuple(image.shape[-2:]) != self.image_size and not self.resize:
                raise ImageReadError(
                    f"is {image.shape[-2]}x{image.shape[-1]}, not {self.image_size[0]}x"
                    f"{self.image_size[1]}; pass --resize to resize every image"
                )
        except ImageReadError as error:
            reason = " ".join(str(error).split()).removeprefix(f"{item.location}: ")
            self._record(self.failure_dir, f"{item.name}\t{reason}\n")
            return  # never raise: litdata reports worker errors only as tracebacks
        image = fit_size(image, self.image_size, self.resize_mode)
        encrypted = self._cipher().encrypt(image[None].contiguous())[0].contiguous()
        self._state["done"] = self._state.get("done", 0) + 1
        if self._state["done"] % 64 == 0:
            self._write_progress()
        yield {"image": encrypted, "label": int(item.label), "name": item.name}

    def _write_progress(self) -> None:
        Path(self.progress_dir, str(os.getpid())).write_text(str(self._state["done"]))

    @staticmethod
    def _record(folder: str, line: str) -> None:
        with open(Path(folder, str(os.getpid())), "a") as handle:
            handle.write(line)


# ------------------------------------------------------------------------------ pack
@dataclass(frozen=True)
class PackOptions:
    """What :func:`pack` does (the console script's options)."""

    key_file: Path | None = None
    cipher: str | None = None
    resize: tuple[int, int] | None = None
    resize_mode: str = "resize"
    block_size: int | None = None
    val_fraction: float = 0.0
    seed: int | None = 0
    num_workers: int = 1
    compression: str | None = None
    chunk_bytes: str = "64MB"
    skip_bad: bool = False
    overwrite: bool = False


def pack(
    source: Path,
    output: Path,
    options: PackOptions,
    progress: Callable[[int, int], None] | None = None,
) -> ShardMetadata:
    """Pack ``source`` (folder, archive or torchvision CIFAR folder) into shards at ``output``.

    Args:
        source: the plain images (see :func:`list_source`).
        output: a new folder (or a finished pack with ``overwrite``).
        options: see :class:`PackOptions`.
        progress: called as ``progress(done, total)`` about once a second while packing.

    Returns:
        The metadata written to ``output``.

    Raises:
        PackError: bad input (nothing is left at ``output``).
    """
    cipher_name, key_fingerprint, image_size, block_size, dtype = _resolve_cipher(source, options)
    _check_paths(source, output, options.overwrite)
    staging = output.parent / f".{output.name}.partial-{secrets.token_hex(4)}"
    for stale in output.parent.glob(f".{output.name}.partial-*"):
        shutil.rmtree(stale, ignore_errors=True)  # left by a killed run
    staging.mkdir(parents=True)
    try:
        if is_archive(source):
            source = extract_archive(source, staging / "_source")
        listing = list_source(source)
        splits = assign_splits(listing, options.val_fraction, options.seed)
        if image_size is None:  # plain, no --resize: the first image's size
            height, width = _first_image(splits).shape[-2:]
            image_size = (int(height), int(width))
        block_size = block_size if block_size is not None else math.gcd(*image_size)
        for side in image_size:
            if side % block_size:
                raise PackError(
                    f"the images are packed at {image_size[0]}x{image_size[1]}, not a multiple "
                    f"of the block size {block_size}; choose --resize or --block-size to fit"
                )
        recipe = PackRecipe(
            cipher=cipher_name,
            image_size=image_size,
            block_size=block_size,
            key_file=None if options.key_file is None else str(options.key_file.resolve()),
            resize=options.resize is not None,
            resize_mode=options.resize_mode,
            skip_bad=options.skip_bad,
            failure_dir=str(staging / "_failures"),
            progress_dir=str(staging / "_progress"),
        )
        counts, skipped = _optimize_all(splits, staging, recipe, options, progress)
        for folder in ("_source", "_failures", "_progress"):
            shutil.rmtree(staging / folder, ignore_errors=True)
        metadata = ShardMetadata(
            cipher=cipher_name,
            keyed=key_fingerprint is not None,
            image_size=image_size,
            block_size=block_size,
            key_fingerprint=key_fingerprint,
            counts=counts,
            classes=listing.classes,
            resize_mode=options.resize_mode,
            shuffle_seed=options.seed,
            compression=options.compression,
            skipped=skipped,
            dtype=dtype,
        )
        write_json_atomic(metadata.to_dict(), staging / METADATA_NAME)
        _move_into_place(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return metadata


def _resolve_cipher(
    source: Path, options: PackOptions
) -> tuple[str, str | None, tuple[int, int] | None, int | None, str]:
    """(cipher name, key fingerprint, stored size, block size, stored dtype) from the key file
    or options."""
    if not source.exists():
        raise PackError(f"{source} does not exist")
    _refuse_encrypted(source)
    if options.key_file is not None:
        key = load_key(options.key_file)
        if options.cipher is not None and options.cipher != key.method:
            raise PackError(
                f"--cipher {options.cipher} but {options.key_file} is a {key.method!r} key; "
                "drop --cipher (the key decides) or use a key of that cipher"
            )
        if options.resize is not None and tuple(options.resize) != key.image_size:
            raise PackError(
                f"--resize {options.resize[0]}x{options.resize[1]} but the key was made for "
                f"{key.image_size[0]}x{key.image_size[1]} images; make a key for the training "
                "size (vitlearnenc-keygen) or resize to the key's size"
            )
        if options.block_size is not None and options.block_size != key.block_size:
            raise PackError(
                f"--block-size {options.block_size} but the key was made for block size "
                f"{key.block_size}"
            )
        dtype = dtype_name(build_cipher(key.method, key=key).storage_dtype)
        return key.method, key.fingerprint, key.image_size, key.block_size, dtype
    if options.cipher is None:
        raise PackError(
            "give --key KEY (from vitlearnenc-keygen), or --cipher plain for plain shards"
        )
    cls = get_cipher_class(options.cipher)
    if cls.keyed:
        raise PackError(f"--cipher {options.cipher} needs --key KEY (from vitlearnenc-keygen)")
    if not cls.invertible:
        raise PackError(
            f"--cipher {options.cipher} packs nothing the provider could use; pack plain images "
            "with --cipher plain or encrypt them with --key KEY"
        )
    return cls.name, None, options.resize, options.block_size, "uint8"


def _refuse_encrypted(source: Path) -> None:
    if not source.is_dir():
        return
    if (source / METADATA_NAME).exists():
        raise PackError(
            f"{source} is already packed by {_WRITER}; pack the plain source images instead"
        )
    try:
        marker = find_marker([source, source / "train", source / "test", *source.resolve().parents])
    except MarkerError as error:
        raise PackError(str(error)) from None
    if marker is not None:
        raise PackError(
            f"{marker.path.parent} holds images already encrypted by vitlearnenc-encrypt "
            f"({marker.describe()}, see its {MARKER_NAME}); pack the plain images instead"
        )


def _check_paths(source: Path, output: Path, overwrite: bool) -> None:
    out, src = output.resolve(), source.resolve()
    if out == src or src in out.parents:
        raise PackError(f"the output {output} must not lie inside the source {source}")
    if not output.exists():
        return
    if not (output / METADATA_NAME).exists():
        if output.is_dir() and not any(output.iterdir()):
            return
        raise PackError(
            f"{output} exists and is not a finished {_WRITER} output; choose a new OUT or remove it"
        )
    if not overwrite:
        raise PackError(f"{output} is already a finished pack; pass --overwrite to replace it")


def _first_image(splits: dict[str, list[PackItem]]) -> torch.Tensor:
    recipe = PackRecipe("plain", (0, 0), 1, None, True, "resize", False, "", "")
    for items in splits.values():
        for item in items:
            try:
                return recipe._read(item.location)
            except ImageReadError:
                continue
    raise PackError("no readable images to pack")


def _optimize_all(
    splits: dict[str, list[PackItem]],
    staging: Path,
    recipe: PackRecipe,
    options: PackOptions,
    progress: Callable[[int, int], None] | None,
) -> tuple[dict[str, int], int]:
    """Run ``litdata.optimize`` per split; check the count written against the input."""
    import litdata

    Path(recipe.failure_dir).mkdir()
    Path(recipe.progress_dir).mkdir()
    total = sum(len(items) for items in splits.values())
    counts: dict[str, int] = {}
    skipped = 0
    finished = 0
    for split, items in splits.items():
        workers = max(1, min(options.num_workers, len(items)))
        stop = threading.Event()
        reporter = threading.Thread(
            target=_report_progress,
            args=(Path(recipe.progress_dir), finished, total, progress, stop),
            daemon=True,
        )
        if progress is not None:
            reporter.start()
        try:
            litdata.optimize(
                fn=recipe,
                inputs=items,
                output_dir=str(staging / split),
                num_workers=workers,
                chunk_bytes=options.chunk_bytes,
                compression=options.compression,
                keep_data_ordered=True,
                reorder_files=False,
                start_method="fork",
                verbose=False,
            )
        except Exception as error:  # a worker died: litdata re-raises its traceback
            raise PackError(
                f"packing {split} failed: {' '.join(str(error).split())[-300:]}"
            ) from None
        finally:
            stop.set()
            if progress is not None:
                reporter.join()
        failures = _failures(Path(recipe.failure_dir))
        if failures and not options.skip_bad:
            name, reason = failures[0]
            raise PackError(
                f"{split}/{name} cannot be packed ({reason}); fix or remove it, or pass "
                "--skip-bad to leave corrupt images out"
            )
        split_skipped = len(failures) - skipped
        written = _count_written(staging / split)
        if written != len(items) - split_skipped:
            raise PackError(
                f"packing {split} wrote {written} of {len(items) - split_skipped} images (a "
                "worker died?); nothing was kept, run the command again"
            )
        skipped = len(failures)
        counts[split] = written
        finished += len(items)
        for path in Path(recipe.progress_dir).iterdir():
            path.unlink()
        if progress is not None:
            progress(finished, total)
    if skipped:
        name, reason = _failures(Path(recipe.failure_dir))[0]
        import warnings

        warnings.warn(f"skipped {skipped} corrupt images (first: {name}: {reason})", stacklevel=2)
    return counts, skipped


def _report_progress(
    folder: Path,
    before: int,
    total: int,
    progress: Callable[[int, int], None] | None,
    stop: threading.Event,
) -> None:
    while not stop.wait(1.0):
        done = sum(int(p.read_text() or 0) for p in folder.iterdir() if p.is_file())
        if progress is not None:
            progress(before + done, total)


def _failures(folder: Path) -> list[tuple[str, str]]:
    lines = [line for path in sorted(folder.iterdir()) for line in path.read_text().splitlines()]
    return [tuple(line.split("\t", 1)) for line in lines]  # type: ignore[misc]


def _count_written(folder: Path) -> int:
    index = folder / "index.json"
    if not index.is_file():
        return 0
    return int(sum(chunk["chunk_size"] for chunk in json.loads(index.read_text())["chunks"]))


def _move_into_place(staging: Path, output: Path) -> None:
    """Rename the finished staging folder to ``output`` (replacing an old pack)."""
    old = None
    if output.exists():
        old = output.parent / f".{output.name}.old-{secrets.token_hex(4)}"
        os.replace(output, old)
    os.replace(staging, output)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def split_names(metadata: ShardMetadata) -> Sequence[str]:
    """The splits of a pack, in :data:`SPLITS` order."""
    return [name for name in SPLITS if name in metadata.counts]
