"""Stream shards written by ``vitlearnenc-pack`` to every rank, with bounded memory.

:class:`StreamingDataModule` reads ``ROOT/train``, ``ROOT/val`` (when packed) and ``ROOT/test``
with :class:`litdata.StreamingDataset` (a local folder or any URI litdata reads, e.g.
``s3://bucket/shards``): each rank and loader worker reads only its own chunks, so memory
does not grow with the dataset, and remote chunks are cached locally up to ``max_cache_size``.
Batches are the same uint8 ``{"image", "label"}`` dicts as in the in-memory modules, so the
on-device pipeline of :class:`~vitlearnenc.data.base.EncryptedDataModule` (augment, resize,
encrypt, normalise) is unchanged: encrypted shards train with ``cipher=pre_encrypted``, plain shards
with any cipher.

Before any batch, :meth:`StreamingDataModule.setup` checks the shards' metadata against the
config (ciphertexts vs a keyed or plain cipher, block size, image size, the key fingerprint
when one is expected) and that every chunk is present at its full size.

Real-valued ciphertexts (orthomix) are stored as float32 or float16 tensors (the key's storage
dtype, recorded in the metadata); with ``cipher=pre_encrypted`` they pass the pipeline
unchanged and are normalised exactly as on-device encryption's output. Every batch's dtype is
checked against the metadata (litdata's index does not record it), so chunks of another pack
fail at their first batch with the reason.

Splits across ranks: training drops the tail so every rank gets the same number of batches
(DDP needs that); evaluation drops nothing, so every image is seen exactly once and ranks may
differ by a batch (nothing syncs per step; metrics sync at the end of the epoch).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import default_collate

from vitlearnenc.data.base import EncryptedDataModule
from vitlearnenc.data.datasets import UInt8ImageDataset
from vitlearnenc.data.shards import (
    ShardMetadata,
    ShardMetadataError,
    check_chunks,
    join_uri,
    read_metadata,
)
from vitlearnenc.utils.imagefiles import dtype_name
from vitlearnenc.utils.logging import RankedLogger

log = RankedLogger(__name__)


def collate_items(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack streamed items into ``{"image": (B, C, H, W) uint8, "label": (B,) int64,
    "name": list of B relative file names}``.

    Why ``default_collate`` and not ``torch.stack``: in a loader worker it stacks the images
    straight into a shared-memory batch, which the main process then maps without a copy. A
    plain ``torch.stack`` mallocs a batch-sized buffer (9.6 MB at 64x224x224x3) that is copied
    into shared memory when sent and freed; after the first such free glibc raises its mmap
    threshold, later batches come from the heap, and the worker's anonymous memory grew with
    every epoch's batches (measured: +600 MB in 140 batches, flat with this collate; see
    ``experiments/benchmarks/bench_streaming.py``).
    """
    return default_collate(items)  # type: ignore[no-any-return]


class StreamingDataModule(EncryptedDataModule):
    """Shards from ``vitlearnenc-pack`` streamed with litdata.

    Args:
        root: the packed output: a local folder or a URI (``s3://``, ``gs://``, ...).
        name: dataset name for run names and logs.
        key_fingerprint: the fingerprint the data owner announced; shards encrypted with
            another key are refused (None: not checked).
        shuffle_seed: seed of litdata's chunk and item shuffle in training (one order per
            epoch, the same on every rank).
        cache_dir: where remote chunks are cached (None: litdata's default).
        max_cache_size: bound of that cache, e.g. ``"50GB"``.
        **kwargs: see :class:`~vitlearnenc.data.base.EncryptedDataModule`; the validation
            split is the packed ``val`` split, so ``val_fraction`` must stay 0.
    """

    def __init__(
        self,
        root: str,
        name: str = "shards",
        key_fingerprint: str | None = None,
        shuffle_seed: int = 0,
        cache_dir: str | None = None,
        max_cache_size: str = "50GB",
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("val_fraction", 0.0)
        super().__init__(**kwargs)
        if self.val_fraction:
            raise ValueError(
                "data=streaming takes its validation images from the packed val split; set "
                "data.val_fraction=0 and pack with vitlearnenc-pack --val-fraction F"
            )
        if self.label_subset is not None:
            raise ValueError(
                "data.label_subset is not supported for streamed shards; pack the classes "
                "you want into their own shards"
            )
        self.name = name
        self.root = str(root)
        self.key_fingerprint = key_fingerprint
        self.shuffle_seed = shuffle_seed
        self.cache_dir = cache_dir
        self.max_cache_size = max_cache_size
        self._metadata: ShardMetadata | None = None

    # ----------------------------------------------------------------------- metadata
    @property
    def metadata(self) -> ShardMetadata:
        """The shards' metadata (read once)."""
        if self._metadata is None:
            self._metadata = read_metadata(self.root)
        return self._metadata

    @property
    def dataset_num_classes(self) -> int:
        return len(self.metadata.classes)

    @property
    def dataset_class_names(self) -> list[str] | None:
        return list(self.metadata.classes)

    def native_size(self, stage: str | None) -> tuple[int, int]:
        return self.metadata.image_size

    def check_metadata(self) -> None:
        """Refuse shards that do not fit the config, with the reason and the fix.

        Raises:
            ShardMetadataError: ciphertexts with a keyed or plain cipher, plain images with
                ``cipher=pre_encrypted``, another block size, image size or key than expected.
        """
        meta, root, name = self.metadata, self.root, self.cipher_name
        if meta.keyed:
            if not self.cipher_class.pre_encrypted and meta.dtype != "uint8":
                raise ShardMetadataError(
                    f"{root} holds real-valued {meta.dtype} ciphertexts ({meta.describe()}), not "
                    f"images; cipher={name} cannot use them: use cipher=pre_encrypted key=none"
                )
            if not self.cipher_class.pre_encrypted:
                raise ShardMetadataError(
                    f"{root} holds images already encrypted by the data owner ({meta.describe()});"
                    f" cipher={name} would treat them as plain images: use cipher=pre_encrypted key=none"
                )
            if meta.block_size != self.block_size:
                raise ShardMetadataError(
                    f"{root} was encrypted with block size {meta.block_size}, but the config "
                    f"uses {self.block_size} (cipher.block_size, the model's patch size); use a "
                    f"model with patch size {meta.block_size} or pack with a matching key"
                )
            if self.key_fingerprint is not None and meta.key_fingerprint != self.key_fingerprint:
                raise ShardMetadataError(
                    f"{root} was encrypted with key {meta.key_fingerprint}, not the expected "
                    f"{self.key_fingerprint} (data.key_fingerprint); ask the data owner which "
                    "key they used"
                )
        elif self.cipher_class.pre_encrypted:
            raise ShardMetadataError(
                f"{root} holds plain images ({meta.describe()}); cipher=pre_encrypted would train on "
                "them unencrypted: choose a cipher (e.g. cipher=proposed) or cipher=plain"
            )
        if (
            meta.keyed
            and self.image_size is not None
            and meta.image_size
            != (
                self.image_size,
                self.image_size,
            )
        ):
            height, width = meta.image_size
            raise ShardMetadataError(
                f"{root} holds {height}x{width} ciphertexts but image_size is {self.image_size}; "
                f"resizing a ciphertext blends its blocks: set image_size={height} or pack at "
                f"{self.image_size}"
            )

    # ------------------------------------------------------------------------ lifecycle
    def setup(self, stage: str | None = None) -> None:
        """Check the metadata and chunks, build the cipher and the datasets ``stage`` needs."""
        self._set_batch_size_per_device()
        if self._cipher is None:
            self.check_metadata()
            self._cipher = self._build_cipher(self._cipher_input_size(stage))
        wanted = {
            None: ("train", "val", "test"),
            "fit": ("train", "val"),
            "validate": ("val",),
            "test": ("test",),
        }
        if stage == "predict":
            raise ValueError(
                "data=streaming has no prediction input; predict from a folder of images "
                "(vitlearnenc-predict input_dir=FOLDER)"
            )
        for split in wanted.get(stage, ()):
            attribute = f"{split}_set"
            if getattr(self, attribute) is None and split in self.metadata.counts:
                setattr(self, attribute, self._dataset(split))

    def _dataset(self, split: str) -> Any:
        from litdata import StreamingDataset

        count = check_chunks(self.root, split)
        if count != self.metadata.counts[split]:
            raise ShardMetadataError(
                f"{join_uri(self.root, split)} lists {count} images but the metadata says "
                f"{self.metadata.counts[split]}; copy the whole packed output again"
            )
        train = split == "train"
        dataset = StreamingDataset(
            join_uri(self.root, split),
            cache_dir=self.cache_dir,
            max_cache_size=self.max_cache_size,
            shuffle=train,
            drop_last=train,
            seed=self.shuffle_seed,
            # one item deserialised per read: litdata's "auto" decodes a window of 16 rows for
            # 150 KB tensors and keeps one when the order is fully shuffled (2.3x slower here)
            batch_decode=0,
        )
        log.info(
            "%s/%s: %d images streamed (%s)", self.root, split, count, self.metadata.describe()
        )
        return dataset

    def load_split(self, split: str) -> UInt8ImageDataset:
        raise NotImplementedError("streamed shards are never loaded into memory")

    def _loader(self, dataset: Any, stage: str, shuffle: bool = False) -> Any:
        from vitlearnenc.data.resumable import ResumableStreamingDataLoader

        if dataset is None:
            raise RuntimeError(f"the data for {stage!r} is not loaded; call setup({stage!r}) first")
        dataset = self._in_current_world(dataset)
        return ResumableStreamingDataLoader(
            dataset,
            batch_size=self.batch_size_per_device,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            collate_fn=collate_items,
        )

    def _in_current_world(self, dataset: Any) -> Any:
        """``dataset``, or a new one for its split if the DDP world changed since it was made.

        litdata reads the rank and world size once, when a dataset is made. ``vitlearnenc-train``
        sets the data up before the Trainer starts DDP (the model needs the class count), so on
        rank 0 of ``trainer=ddp`` the dataset believed it was alone: it streamed every image,
        not its share, its epoch was twice as long as the other ranks', and the run hung at the
        end of the first epoch (rank 1 waiting in the epoch-end sync, rank 0 in a training
        step). Loaders are made after DDP has started, so the world is checked here.
        """
        from litdata.utilities.env import _DistributedEnv

        now, then = _DistributedEnv.detect(), dataset.distributed_env
        if (now.world_size, now.global_rank) == (then.world_size, then.global_rank):
            return dataset
        split = next(s for s in ("train", "val", "test") if getattr(self, f"{s}_set") is dataset)
        log.info(
            "%s: rank %d of %d (the data was set up before DDP started)",
            split, now.global_rank, now.world_size,
        )  # fmt: skip
        fresh = self._dataset(split)
        setattr(self, f"{split}_set", fresh)
        return fresh

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        """Check the batch's dtype against the metadata, then run the pipeline."""
        stored = dtype_name(batch["image"].dtype)
        if stored != self.metadata.dtype:
            raise ShardMetadataError(
                f"{self.root} streams {stored} images but its metadata says "
                f"{self.metadata.dtype} ({self.metadata.describe()}); the chunks come from "
                "another pack: copy the whole packed output again"
            )
        return super().on_after_batch_transfer(batch, dataloader_idx)

    def val_dataloader(self) -> Any:
        """The packed ``val`` split; no loaders when the shards have none."""
        if "val" not in self.metadata.counts:
            return []
        return self._loader(self.val_set, "validate")
