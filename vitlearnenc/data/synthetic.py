"""Synthetic, learnable images generated in memory: fast tests and smoke runs, no download."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from vitlearnenc.data.base import EncryptedDataModule
from vitlearnenc.data.datasets import UInt8ImageDataset
from vitlearnenc.errors import InputError

_SPLITS = {"train": 1, "test": 2}  # stream ids; 0 draws the class prototypes


def make_synthetic_images(
    num_images: int, num_classes: int, size: int, seed: int, split: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic images whose class is easy to learn, also after encryption.

    Each class has a base colour and a stripe texture (orientation and frequency); each image
    adds a random stripe phase and contrast and Gaussian pixel noise. The mean colour alone
    identifies the class, and it survives every cipher that moves pixels around (block
    scrambling, pixel shuffling), so a tiny model beats chance within a few steps.

    Args:
        num_images: images to draw; labels are balanced over the classes, then shuffled.
        num_classes: number of classes (prototypes are shared by the splits of one ``seed``).
        size: side length in pixels.
        seed: dataset seed; the same arguments always give the same images.
        split: ``"train"`` or ``"test"`` (independent images of the same classes).

    Returns:
        ``(images, labels)``: ``(N, 3, size, size)`` uint8 and ``(N,)`` int64, on the CPU.
    """
    classes = np.random.default_rng([seed, 0])
    colours = classes.uniform(40, 215, size=(num_classes, 3))
    angles = np.pi * (np.arange(num_classes) + classes.uniform(0, 0.5, num_classes)) / num_classes
    frequencies = 2 + np.arange(num_classes) % 3  # stripe cycles across the image

    rng = np.random.default_rng([seed, _SPLITS[split]])
    labels = rng.permutation(np.arange(num_images) % num_classes)
    grid = np.arange(size) / size
    y, x = np.meshgrid(grid, grid, indexing="ij")
    along = (
        x[None] * np.cos(angles[labels])[:, None, None]
        + y[None] * np.sin(angles[labels])[:, None, None]
    )
    phase = rng.uniform(0, 2 * np.pi, size=(num_images, 1, 1))
    contrast = rng.uniform(30, 50, size=(num_images, 1, 1))
    stripes = contrast * np.sin(2 * np.pi * frequencies[labels][:, None, None] * along + phase)
    images = (
        colours[labels][:, :, None, None]
        + stripes[:, None]
        + rng.normal(0, 12, size=(num_images, 3, size, size))
    )
    images = np.clip(np.rint(images), 0, 255).astype(np.uint8)
    return torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))


class SyntheticDataModule(EncryptedDataModule):
    """In-memory synthetic dataset (see :func:`make_synthetic_images`) with the full pipeline.

    Args:
        name: dataset name for run names and logs.
        num_classes: number of classes.
        num_train: training images (before the train/val split).
        num_test: test images.
        native_size: side length of the generated images (before any on-device resize).
        seed: dataset seed (independent of the training seed and of the key).
        **kwargs: see :class:`~vitlearnenc.data.base.EncryptedDataModule`.
    """

    def __init__(
        self,
        name: str = "synthetic",
        num_classes: int = 10,
        num_train: int = 512,
        num_test: int = 128,
        native_size: int = 32,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        for what, value in (
            ("num_classes", num_classes),
            ("num_train", num_train),
            ("num_test", num_test),
            ("native_size", native_size),
        ):
            if value < 1:
                raise InputError(f"data.{what} must be >= 1, got {value}")
        self.name = name
        self._num_classes = num_classes
        self.counts = {"train": num_train, "test": num_test}
        self.size = native_size
        self.seed = seed
        self.check_native_size((native_size, native_size))

    @property
    def dataset_num_classes(self) -> int:
        return self._num_classes

    def native_size(self, stage: str | None) -> tuple[int, int]:
        return (self.size, self.size)

    def load_split(self, split: str) -> UInt8ImageDataset:
        if split not in self.counts:
            raise InputError(
                f"the synthetic dataset has the splits {sorted(self.counts)}, not {split!r}"
            )
        images, labels = make_synthetic_images(
            self.counts[split], self._num_classes, self.size, self.seed, split
        )
        return UInt8ImageDataset(images, label=labels)
