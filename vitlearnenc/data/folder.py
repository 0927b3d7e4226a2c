"""Image-folder datasets (``train/<class>/*``, ``test/<class>/*``), from a folder or an archive.

Reads the real CIFAR-10 copy (``../shared/data/cifar10-jpeg.tar.gz``) straight from the
archive and folders written by ``vitlearnenc-encrypt`` (train with ``cipher=pre_encrypted``).

Design choices:

- Every split is decoded once, in ``setup``, into one in-memory ``(N, 3, H, W)`` uint8 tensor
  (60k CIFAR JPEGs take a few seconds), and kept only in memory: a disk cache would need
  invalidation when the source changes and saves little at this scale. Very large datasets
  (e.g. 60k images pre-encrypted at 224x224 are 9 GB per process) need that much RAM.
- The train and test splits are decoded together, in one pass over an archive, so that both
  get their labels from the same class list: the sorted class folders of the training split
  (of the test split when there is no training split).
- Headers are read first: all images of a split must have one size, and a clear error names
  the first file that differs before any pixel is decoded (resize such datasets beforehand);
  then each file is decoded into its row of one preallocated tensor (no list + stack, so no
  2x peak). Only prediction inputs, which
  are not augmented, are resized on load to ``image_size`` when their sizes differ.
- Image files that cannot be decoded are skipped, with one warning per split giving the count
  and the first file; files lying directly in the split folder (no class) are ignored the
  same way. Files without an image extension and hidden files are not considered.
- A folder written by ``vitlearnenc-encrypt`` carries a ``.vitlearnenc.json`` marker (in the
  root, a split folder or a parent folder). A keyed cipher on such a folder would encrypt
  ciphertexts, so it is refused before anything is decoded; ``cipher=pre_encrypted`` on a folder
  without the marker, and ``cipher=plain`` on one with it, are warned about. Archives are not
  checked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vitlearnenc.data.base import DatasetNotFoundError, EncryptedDataModule
from vitlearnenc.data.datasets import UInt8ImageDataset
from vitlearnenc.data.imagestore import ArrayFormat, LoadedTree, load_tree, probe_size
from vitlearnenc.errors import InputError
from vitlearnenc.utils.logging import RankedLogger
from vitlearnenc.utils.markers import MARKER_NAME, find_marker

log = RankedLogger(__name__)

_LAYOUT = "train/<class>/<image> and test/<class>/<image>"


class ImageFolderDataModule(EncryptedDataModule):
    """Labelled splits from class folders, plus an optional unlabelled folder to predict on.

    Args:
        root: a folder, or a ``.tar``/``.tar.gz`` archive (read without extracting), holding
            ``<train_dir>/<class>/<image>`` and ``<test_dir>/<class>/<image>``; an archive may
            wrap them in one top-level folder. Not needed when only predicting.
        name: dataset name for run names and logs (e.g. ``cifar10``).
        train_dir: training split folder inside ``root`` (train/val split from it).
        test_dir: test split folder inside ``root``, used for final numbers only.
        predict_dir: a folder (any tree, no labels) or archive of images to predict on;
            ``predict_dataloader`` yields ``{"image", "index"}`` and ``predict_files[index]`` is
            the file's path relative to ``predict_dir``.
        **kwargs: see :class:`~vitlearnenc.data.base.EncryptedDataModule`.
    """

    def __init__(
        self,
        root: str | None = None,
        name: str = "folder",
        train_dir: str = "train",
        test_dir: str = "test",
        predict_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if train_dir == test_dir:
            raise InputError(f"data.train_dir and data.test_dir are both {train_dir!r}")
        self.name = name
        self.root = None if root is None else Path(root)
        self.train_dir = train_dir
        self.test_dir = test_dir
        self.predict_dir = None if predict_dir is None else Path(predict_dir)
        self.classes: list[str] | None = None
        self.predict_files: list[str] = []
        self._labelled: dict[str, UInt8ImageDataset] | None = None
        self._handed_over: set[str] = set()  # splits load_split returned (and dropped)
        #: roots whose marker was checked, with the array format of real-valued ciphertexts
        self._marker_checked: dict[Path, ArrayFormat | None] = {}

    @property
    def dataset_class_names(self) -> list[str] | None:
        return self.classes

    @property
    def dataset_num_classes(self) -> int:
        if self.classes is None:
            raise RuntimeError("the classes of an image folder are known after setup('fit'/'test')")
        return len(self.classes)

    def native_size(self, stage: str | None) -> tuple[int, int]:
        if stage == "predict":
            source = self._predict_source()
            return probe_size(source, [""], self._marker_checked.get(source))
        order = (
            [self.test_dir, self.train_dir] if stage == "test" else [self.train_dir, self.test_dir]
        )
        root = self._root()
        return probe_size(root, order, self._marker_checked.get(root))

    def load_split(self, split: str) -> UInt8ImageDataset:
        folders = {"train": self.train_dir, "test": self.test_dir}
        if split not in folders:
            raise InputError(f"image folders have the splits 'train' and 'test', not {split!r}")
        if self._labelled is None or (
            split not in self._labelled and split in self._handed_over
        ):  # a second request decodes again
            self._labelled, self._handed_over = self._load_labelled(), set()
        if split not in self._labelled:
            raise DatasetNotFoundError(
                f"no images in class folders under {self._root()}/{folders[split]}; expected "
                f"{_LAYOUT} (a folder or a .tar/.tar.gz archive of that layout)"
            )
        # handed over, not kept: setup keeps what it needs (a label_subset or split copy),
        # so a cached full split would double the memory
        self._handed_over.add(split)
        return self._labelled.pop(split)

    def load_predict(self) -> UInt8ImageDataset:
        source = self._predict_source()
        dataset, self.predict_files = _load_unlabelled(
            source, self._predict_resize(), self._marker_checked.get(source)
        )
        return dataset

    def _predict_resize(self) -> tuple[int, int] | None:
        """Prediction inputs of mixed sizes are resized on load to this (None: not allowed)."""
        if self.image_size is None or self.cipher_class.pre_encrypted:
            return None
        return (self.image_size, self.image_size)

    def _root(self) -> Path:
        if self.root is None:
            raise InputError(
                f"data.root is not set; point it to a folder or archive with {_LAYOUT}"
            )
        if not self.root.exists():
            raise DatasetNotFoundError(
                f"{self.root} does not exist; set data.root to a folder or a .tar/.tar.gz archive "
                f"with {_LAYOUT}"
            )
        self._check_marker(self.root, [self.root / self.train_dir, self.root / self.test_dir])
        return self.root

    def _predict_source(self) -> Path:
        if self.predict_dir is None:
            raise InputError(
                "data.predict_dir is not set; point it to the folder of images to label"
            )
        if not self.predict_dir.exists():
            raise DatasetNotFoundError(f"the prediction input {self.predict_dir} does not exist")
        self._check_marker(self.predict_dir, [])
        return self.predict_dir

    def _check_marker(self, root: Path, splits: list[Path]) -> None:
        """Refuse a keyed cipher on images that ``vitlearnenc-encrypt`` already encrypted, and
        warn where ``cipher=pre_encrypted``/``plain`` do not match what the folder holds (once per
        root); remember the array format of a folder of real-valued ciphertexts.

        Raises:
            ValueError: the folder is marked as encrypted and the cipher needs a key, or it
                holds real-valued ciphertexts and the cipher is not ``pre_encrypted``.
        """
        if root in self._marker_checked or not root.is_dir():
            return
        marker = find_marker([root, *splits, *root.resolve().parents])
        self._marker_checked[root] = None
        name = self.cipher_name
        if marker is not None and self.cipher_class.keyed:
            raise InputError(
                f"{marker.path.parent} is already encrypted by vitlearnenc-encrypt "
                f"({marker.describe()}); encrypting it again with cipher={name} is not the "
                "method: use cipher=pre_encrypted (key=none) to train on it, or point data.root to the "
                "plain images"
            )
        if marker is not None and marker.real_valued:
            if not self.cipher_class.pre_encrypted:
                raise InputError(
                    f"{marker.path.parent} holds real-valued ciphertexts ({marker.describe()}, "
                    f".npy files), not images; cipher={name} cannot use them: train on them with "
                    "cipher=pre_encrypted (key=none)"
                )
            self._marker_checked[root] = ArrayFormat(
                marker.dtype, marker.shape, source=str(marker.path)
            )
        if marker is None and self.cipher_class.pre_encrypted:
            log.warning(
                "cipher=pre_encrypted treats %s as images encrypted by vitlearnenc-encrypt, but it has no "
                "%s marker; plain images would be used unencrypted (say cipher=plain for that)",
                root,
                MARKER_NAME,
            )
        elif marker is not None and not self.cipher_class.pre_encrypted:  # plain: unkeyed
            log.warning(
                "%s holds images encrypted by vitlearnenc-encrypt (%s); cipher=plain treats them "
                "as plain images and augments them: use cipher=pre_encrypted for pre-encrypted data",
                marker.path.parent,
                marker.describe(),
            )

    def _load_labelled(self) -> dict[str, UInt8ImageDataset]:
        root = self._root()
        trees = load_tree(
            root,
            [self.train_dir, self.test_dir],
            accept=lambda name: "/" in name,
            arrays=self._marker_checked.get(root),
        )
        splits = {"train": self.train_dir, "test": self.test_dir}
        class_source = self.train_dir if _class_folders(trees[self.train_dir]) else self.test_dir
        classes = _class_folders(trees[class_source])
        if not classes:
            raise DatasetNotFoundError(
                f"no images in class folders under {root}; expected {_LAYOUT}"
            )
        if class_source != self.train_dir:
            log.warning(
                "%s has no training split %r; the class list comes from %r",
                root,
                self.train_dir,
                self.test_dir,
            )
        self.classes = classes
        index = {name: label for label, name in enumerate(classes)}
        loaded: dict[str, UInt8ImageDataset] = {}
        for split, folder in splits.items():
            tree = trees[folder]
            where = f"{root}/{folder}"
            _warn_failures(tree, where)
            if tree.ignored:
                log.warning(
                    "ignored %d image files lying directly in %s (not in a class folder)",
                    len(tree.ignored),
                    where,
                )
            if not tree.names:
                continue
            names = tree.names
            labels = []
            for name in names:
                label = index.get(name.split("/", 1)[0])
                if label is None:
                    raise InputError(
                        f"{where}/{name.split('/', 1)[0]} is not a class of the training split "
                        f"({len(classes)} classes under {root}/{class_source}); the splits must "
                        "use the same class folders"
                    )
                labels.append(label)
            loaded[split] = UInt8ImageDataset(
                tree.images, label=torch.tensor(labels, dtype=torch.long)
            )
            self._check_loaded(loaded[split], split)  # both splits now: before training, not after
            log.info("%s: %d images, %d classes", where, len(names), len(classes))
        return loaded


class PredictFolderDataModule(ImageFolderDataModule):
    """Only images to predict on (``vitlearnenc-predict``): ``root`` is a folder (any tree,
    no labels) or archive of images, e.g. a folder written by ``vitlearnenc-encrypt``.

    ``predict_dataloader`` yields ``{"image", "index"}``; ``predict_files[index]`` is the
    file's path relative to ``root``. Augmentation is off by default (prediction never
    augments, and ``cipher="none"`` would warn about it).

    Args:
        root: the folder or archive of images.
        name: dataset name for logs.
        **kwargs: see :class:`~vitlearnenc.data.base.EncryptedDataModule`.
    """

    def __init__(self, root: str, name: str = "predict", **kwargs: Any) -> None:
        kwargs.setdefault("augment", False)
        super().__init__(root=None, name=name, predict_dir=root, **kwargs)

    def native_size(self, stage: str | None) -> tuple[int, int]:
        source = self._predict_source()
        return probe_size(source, [""], self._marker_checked.get(source))

    def load_split(self, split: str) -> UInt8ImageDataset:
        raise RuntimeError(
            "PredictFolderDataModule has no labelled splits; use ImageFolderDataModule to "
            "train or test"
        )


def _load_unlabelled(
    source: Path, resize_to: tuple[int, int] | None, arrays: ArrayFormat | None
) -> tuple[UInt8ImageDataset, list[str]]:
    """Every image (or ``arrays`` file) under ``source`` with an ``index`` field, and the
    relative file paths."""
    tree = load_tree(source, [""], resize_to=resize_to, arrays=arrays)[""]
    _warn_failures(tree, str(source))
    if not tree.names:
        raise DatasetNotFoundError(f"no decodable image files under {source}")
    return UInt8ImageDataset(tree.images, index=torch.arange(len(tree.names))), list(tree.names)


def _class_folders(tree: LoadedTree) -> list[str]:
    """Sorted class names: first path component of every image file in a class folder
    (decoded or not, so that a corrupt file cannot shift the labels)."""
    names = tree.names + [name for name, _ in tree.failures]
    return sorted({name.split("/", 1)[0] for name in names if "/" in name})


def _warn_failures(tree: LoadedTree, where: str) -> None:
    if tree.failures:
        name, reason = tree.failures[0]
        log.warning(
            "skipped %d of %d image files under %s that could not be decoded (first: %s: %s)",
            len(tree.failures),
            len(tree.failures) + len(tree.names) + len(tree.ignored),
            where,
            name,
            reason,
        )
