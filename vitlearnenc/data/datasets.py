"""In-memory uint8 image datasets that hand out dict batches, and the seeded train/val split.

Every DataModule of the project keeps its images decoded in memory as one ``(N, C, H, W)``
uint8 tensor, so a batch costs one ``index_select`` per field (:meth:`UInt8ImageDataset.
__getitems__`, which ``DataLoader`` calls with a whole batch of indices) instead of a Python
call per image plus a stack. All float work (resize, encryption, normalisation) happens later,
on the training device.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Sized
from typing import Any

import numpy as np
import torch
from torch.utils.data import (
    Dataset,
    RandomSampler,
    Subset,
    default_collate,
    get_worker_info,
    random_split,
)
from torchdata.stateful_dataloader.sampler import RandomSampler as StatefulRandomSampler

from vitlearnenc.errors import InputError
from vitlearnenc.utils.imagefiles import ARRAY_DTYPES

#: uint8 images, or the float ciphertexts that real-valued ciphers store
_DTYPES = (torch.uint8, *ARRAY_DTYPES.values())


class UInt8ImageDataset(Dataset[dict[str, torch.Tensor]]):
    """Images plus per-image fields (``label``, ``index``, ...), returned as dicts.

    Args:
        images: ``(N, C, H, W)`` uint8 tensor (0..255) on the CPU; or float32/float16 for
            real-valued ciphertexts stored by the data owner (orthomix, ``cipher=pre_encrypted``).
        **fields: tensors with first dimension N (e.g. ``label=`` int64 ``(N,)``).
    """

    def __init__(self, images: torch.Tensor, **fields: torch.Tensor) -> None:
        if images.dtype not in _DTYPES or images.ndim != 4:
            raise InputError(
                f"images must be a (N, C, H, W) uint8 (or float32/float16 ciphertext) tensor, "
                f"got {images.dtype} {tuple(images.shape)}"
            )
        for name, values in fields.items():
            if values.shape[0] != images.shape[0]:
                raise InputError(
                    f"field {name!r} has {values.shape[0]} entries but there are "
                    f"{images.shape[0]} images"
                )
        self.images = images
        self.fields = fields

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of every image."""
        return int(self.images.shape[-2]), int(self.images.shape[-1])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = {"image": self.images[index]}
        item.update({name: values[index] for name, values in self.fields.items()})
        return item

    def __getitems__(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        """A whole batch at once (``DataLoader`` and ``Subset`` call this when it exists)."""
        index = torch.as_tensor(indices, dtype=torch.long)
        batch = {"image": _select_rows(self.images, index)}
        batch.update({name: _select_rows(values, index) for name, values in self.fields.items()})
        return batch


def _select_rows(source: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``source.index_select(0, index)``; in a loader worker, written straight into shared memory.

    Why: a worker sends each batch to the main process through shared memory. A plain
    ``index_select`` mallocs a batch-sized buffer (19 MB at 128x3x224x224) that is copied into
    shared memory when sent and then freed; once glibc has raised its mmap threshold, later
    buffers come from the heap, which it does not give back, so each worker's private memory
    grew with the number of batches read (measured: +260 MB per worker from 2,000 to 6,000
    images at 224, all of it ``[heap]``; ``experiments/benchmarks/bench_streaming.py
    --in-memory``). The same fix as the streaming path's ``default_collate``.
    """
    if get_worker_info() is None:
        return source.index_select(0, index)
    rows = index.numel()
    storage = source._typed_storage()._new_shared(rows * source[0].numel() if rows else 0)
    out = source.new(storage).view(rows, *source.shape[1:])
    return torch.index_select(source, 0, index, out=out)


def collate_batch(batch: Mapping[str, torch.Tensor] | list[Any]) -> Any:
    """``collate_fn`` for loaders over :class:`UInt8ImageDataset` (or subsets of it).

    A batch that :meth:`UInt8ImageDataset.__getitems__` already stacked passes through; a list
    of per-item dicts (from any other dataset) is stacked with ``default_collate``.
    """
    if isinstance(batch, Mapping):
        return dict(batch)
    return default_collate(batch)


def split_train_val(
    dataset: Dataset[Any], val_fraction: float, seed: int
) -> tuple[Subset[Any], Subset[Any] | None]:
    """Split a training set into disjoint train/val subsets, the same way for the same seed.

    The split uses its own ``torch.Generator``, so the global seed (which drives augmentation
    and initialisation) does not move images between train and val.

    Returns:
        ``(train, val)``; ``val`` is None when ``val_fraction`` is 0.
    """
    size = len(dataset)  # type: ignore[arg-type]
    num_val = round(size * val_fraction)
    if val_fraction > 0 and num_val == 0:
        num_val = 1
    if num_val >= size:
        raise InputError(
            f"val_fraction={val_fraction} leaves no training images out of {size}; "
            "lower data.val_fraction"
        )
    generator = torch.Generator().manual_seed(seed)
    train, val = random_split(dataset, [size - num_val, num_val], generator=generator)
    return train, (val if num_val else None)


class EpochShuffleSampler(StatefulRandomSampler, RandomSampler):
    """A random order per epoch, drawn from ``(seed, epoch)`` alone; resumable mid-epoch.

    Why: the order of every epoch must not depend on what consumed random numbers before it.
    Lightning calls :meth:`set_epoch` before each epoch (as for ``DistributedSampler``), so a
    run resumed at an epoch boundary shuffles that epoch as an uninterrupted run does; within
    an epoch, ``StatefulDataLoader`` saves and restores the position (torchdata's stateful
    iterator). It is also a ``torch.utils.data.RandomSampler``, so Lightning knows the loader
    shuffles and gives it a shuffling ``DistributedSampler`` under DDP.
    """

    def __init__(self, data_source: Sized, seed: int) -> None:
        StatefulRandomSampler.__init__(self, data_source, generator=torch.Generator())
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Seed the order of ``epoch`` (what the next iteration uses)."""
        state = np.random.SeedSequence([self.seed, epoch]).generate_state(1)
        self.generator.manual_seed(int(state[0]))
