"""CIFAR-10 and CIFAR-100 through torchvision, kept in memory as one uint8 tensor per split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torchvision.datasets import CIFAR10, CIFAR100

from vitlearnenc.data.base import DatasetNotFoundError, EncryptedDataModule
from vitlearnenc.data.datasets import UInt8ImageDataset
from vitlearnenc.errors import InputError

# name -> (torchvision class, folder torchvision unpacks into, display name, classes)
_VARIANTS: dict[str, tuple[type[CIFAR10], str, str, int]] = {
    "cifar10": (CIFAR10, "cifar-10-batches-py", "CIFAR-10", 10),
    "cifar100": (CIFAR100, "cifar-100-python", "CIFAR-100", 100),
}


class CIFARDataModule(EncryptedDataModule):
    """CIFAR-10/100 (32x32 RGB) from torchvision's pickled batches.

    ``prepare_data`` downloads into ``root`` when allowed (rank 0 only); ``setup`` reads the
    arrays into ``(N, 3, 32, 32)`` uint8 tensors, so loaders index tensors and never build a
    PIL image per item. Offline without a local copy, both raise
    :class:`~vitlearnenc.data.base.DatasetNotFoundError` saying how to point to one.

    Args:
        name: ``"cifar10"`` or ``"cifar100"``.
        root: folder holding (or receiving) ``cifar-10-batches-py`` / ``cifar-100-python``.
        download: fetch the dataset when it is missing.
        **kwargs: see :class:`~vitlearnenc.data.base.EncryptedDataModule`.
    """

    NATIVE_SIZE = (32, 32)

    def __init__(
        self, name: str = "cifar10", root: str = "data", download: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if name not in _VARIANTS:
            raise InputError(f"unknown CIFAR variant {name!r}; choose one of {sorted(_VARIANTS)}")
        self.name = name
        self.variant = _VARIANTS[name]
        self.root = Path(root)
        self.download = download
        self.check_native_size(self.NATIVE_SIZE)
        self._class_names: list[str] | None = None

    @property
    def dataset_num_classes(self) -> int:
        return self.variant[3]

    @property
    def dataset_class_names(self) -> list[str] | None:
        return self._class_names

    def native_size(self, stage: str | None) -> tuple[int, int]:
        return self.NATIVE_SIZE

    def prepare_data(self) -> None:
        """Download both splits if they are missing and downloading is allowed."""
        for train in (True, False):
            self._open(train, download=self.download)

    def load_split(self, split: str) -> UInt8ImageDataset:
        if split not in ("train", "test"):
            raise InputError(f"CIFAR has the splits 'train' and 'test', not {split!r}")
        dataset = self._open(split == "train", download=False)
        images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW
        labels = torch.as_tensor(dataset.targets, dtype=torch.long)
        self._class_names = list(dataset.classes)
        return UInt8ImageDataset(images, label=labels)

    def _open(self, train: bool, download: bool) -> CIFAR10:
        cls, folder, title, _ = self.variant
        try:
            return cls(str(self.root), train=train, download=download)
        except (OSError, RuntimeError) as error:
            why = "download failed (offline?)" if download else "data.download is false"
            alternative = (
                ", or use data=cifar10_folder data.root=../shared/data/cifar10-jpeg.tar.gz"
                if self.name == "cifar10"
                else ""
            )
            raise DatasetNotFoundError(
                f"{title} not found under {self.root} and {why}; set data.root to a folder "
                f"holding {folder}{alternative} (cause: {_reason(error)})"
            ) from error


def _reason(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
