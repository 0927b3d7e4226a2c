"""The base DataModule: splits, loaders and the on-device transform pipeline.

Loaders hand over uint8 ``(B, C, H, W)`` batches (dicts with ``image`` and ``label`` or
``index``); everything else happens on the training device, for a whole batch at once, in
:meth:`EncryptedDataModule.on_after_batch_transfer`, in this fixed order::

    augment (training only: pad + random crop + h-flip, plain domain)
      -> resize (uint8, e.g. 32 -> 224)
      -> encrypt (uint8, every stage: sanity check, train, val, test, predict)
      -> float in [0, 1] -> normalise with mean/std

Augmenting after encryption would be a different cipher (a crop of a ciphertext is not the
ciphertext of a crop), and resizing after encryption would blend pixels of different blocks,
so both happen before. The cipher works on exact 8-bit values, so the resize output is uint8.

The module holds only the key *source* (``key_file`` path or the non-secret ``key_seed``) in its
hyperparameters; the key itself is read in :meth:`setup` and lives only in ``self.cipher``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchdata.stateful_dataloader import StatefulDataLoader
from torchvision.transforms.v2.functional import normalize

from vitlearnenc.ciphers import (
    Cipher,
    CipherKey,
    KeyMismatchError,
    build_cipher,
    get_cipher_class,
    load_key,
)
from vitlearnenc.data.augment import random_crop_flip
from vitlearnenc.data.datasets import (
    EpochShuffleSampler,
    UInt8ImageDataset,
    collate_batch,
    split_train_val,
)
from vitlearnenc.errors import InputError
from vitlearnenc.utils.image_ops import resize_uint8
from vitlearnenc.utils.logging import RankedLogger

log = RankedLogger(__name__)


class DatasetNotFoundError(FileNotFoundError):
    """A dataset that is neither on disk nor downloadable; the message says how to point to it."""


class EncryptedDataModule(L.LightningDataModule):
    """Base of every DataModule: train/val split, loaders, and the on-device pipeline.

    Subclasses implement :meth:`native_size`, :meth:`load_split` and
    :attr:`dataset_num_classes` (and :attr:`dataset_class_names` where known), and
    may override :meth:`load_predict` (default: the test images with their index) and
    ``prepare_data`` (downloads).

    Args:
        batch_size: global batch size; each of the trainer's devices gets
            ``batch_size // world_size`` (it must divide).
        num_workers: DataLoader worker processes (they only index uint8 tensors).
        val_fraction: share of the training set held out for validation (0 = no validation).
        split_seed: seed of the train/val split, independent of the training seed.
        image_size: side length the images are resized to on the device before encryption
            (224 for the paper's ViT-B/16 setting); None keeps the native size.
        augment: random crop + horizontal flip in training (forced off for ``cipher="none"``).
        crop_padding: zero padding of the random crop, in native pixels (0 = no crop).
        flip: random horizontal flip in training.
        cipher: registered cipher name; ``"plain"`` (no encryption) and ``"none"`` (the images
            are already encrypted) need no key.
        block_size: block size of the cipher, in pixels after the resize.
        cipher_options: options for drawing a key from ``key_seed`` (e.g. ``channel_mix``);
            with ``key_file`` they must agree with the options recorded in the key.
        key_file: key file written by ``vitlearnenc-keygen``.
        key_seed: derive the key from this integer instead; reproducible and **not secret**.
        mean: per-channel mean subtracted after scaling to [0, 1].
        std: per-channel standard deviation divided by after that.
        pin_memory: pin loader memory (only used when CUDA is available).
        keep_plain: also return the plain uint8 image (augmented, resized, not encrypted) as
            ``batch["plain"]``, for attack datasets.
        label_subset: keep only these labels, renumbered 0..k-1 in this order (None: all).
        augment_seed: seed of the training augmentation and shuffle; None takes the run's seed
            (``torch.initial_seed()``, what ``L.seed_everything`` set before this is built).
    """

    def __init__(
        self,
        batch_size: int = 128,
        num_workers: int = 2,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        image_size: int | None = None,
        augment: bool = True,
        crop_padding: int = 4,
        flip: bool = True,
        cipher: str = "plain",
        block_size: int = 4,
        cipher_options: dict[str, Any] | None = None,
        key_file: str | None = None,
        key_seed: int | None = None,
        mean: Sequence[float] = (0.5, 0.5, 0.5),
        std: Sequence[float] = (0.5, 0.5, 0.5),
        pin_memory: bool = True,
        keep_plain: bool = False,
        label_subset: Sequence[int] | None = None,
        augment_seed: int | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        for name, value, minimum in (
            ("batch_size", batch_size, 1),
            ("num_workers", num_workers, 0),
            ("crop_padding", crop_padding, 0),
            ("block_size", block_size, 1),
        ):
            _check_int(name, value, minimum)
        if image_size is not None:
            _check_int("image_size", image_size, minimum=1)
        if not 0 <= val_fraction < 1:
            raise InputError(f"data.val_fraction must be in [0, 1), got {val_fraction}")
        self.batch_size = batch_size
        self.batch_size_per_device = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.val_fraction = val_fraction
        self.split_seed = split_seed
        self.image_size = image_size
        self.augment = augment
        self.crop_padding = crop_padding
        self.flip = flip
        self.keep_plain = keep_plain
        self.label_subset = None if label_subset is None else [int(v) for v in label_subset]
        if self.label_subset is not None and (
            not self.label_subset or len(set(self.label_subset)) != len(self.label_subset)
        ):
            raise InputError(f"data.label_subset must list distinct labels, got {label_subset}")

        self.cipher_name = cipher
        self.cipher_class = get_cipher_class(cipher)  # unknown names fail here, listing the known
        self.block_size = block_size
        self.cipher_options = dict(cipher_options or {})
        self.key_file = key_file
        self.key_seed = key_seed
        self._check_key_source()
        if image_size is not None:
            self._check_block_multiple((image_size, image_size))
        if self.cipher_class.pre_encrypted and augment:
            log.warning(
                "cipher=pre_encrypted: the images are already encrypted, so augmentation is switched "
                "off (a crop or flip of a ciphertext is not the ciphertext of a crop or flip)"
            )
            self.augment = False

        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        if len(self.mean) != len(self.std) or not all(v > 0 for v in self.std):
            raise InputError(
                f"data.mean and data.std need one value per channel and std > 0, got "
                f"mean={self.mean} std={self.std}"
            )

        self.train_set: Dataset[Any] | None = None
        self.val_set: Dataset[Any] | None = None
        self.test_set: Dataset[Any] | None = None
        self.predict_set: Dataset[Any] | None = None
        self._cipher: Cipher | None = None
        self.augment_seed = torch.initial_seed() if augment_seed is None else int(augment_seed)
        #: training batches transformed so far (the same on every rank); in checkpoints
        self.train_batches = 0

    # ----------------------------------------------------------------- subclass interface
    def native_size(self, stage: str | None) -> tuple[int, int]:
        """(H, W) of the stored images that ``stage`` will load (cheap: no full decoding)."""
        raise NotImplementedError

    def load_split(self, split: str) -> UInt8ImageDataset:
        """The labelled ``"train"`` or ``"test"`` split: uint8 images and int64 ``label``."""
        raise NotImplementedError

    def load_predict(self) -> UInt8ImageDataset:
        """Images to predict on, with an int64 ``index`` field; default: the test split."""
        test = (
            self.test_set
            if isinstance(self.test_set, UInt8ImageDataset)
            else self._load_subset_split("test")
        )
        return UInt8ImageDataset(
            test.images, label=test.fields["label"], index=torch.arange(len(test))
        )

    @property
    def dataset_num_classes(self) -> int:
        """Number of classes of the stored dataset (subclasses implement it)."""
        raise NotImplementedError

    @property
    def dataset_class_names(self) -> list[str] | None:
        """Label names of the stored dataset, when it has them (after ``setup``)."""
        return None

    @property
    def num_classes(self) -> int:
        """Number of classes the model sees (those of ``label_subset`` when one is set)."""
        return len(self.label_subset) if self.label_subset else self.dataset_num_classes

    # ------------------------------------------------------------------------ validation
    @property
    def class_names(self) -> list[str] | None:
        """Label names in the model's label order, when the dataset has them."""
        names = self.dataset_class_names
        if names is None or not self.label_subset:
            return names
        return [names[i] for i in self.label_subset]

    def _load_subset_split(self, split: str) -> UInt8ImageDataset:
        """A labelled split, restricted to ``label_subset`` (relabelled 0..k-1 in its order)
        when one is set: e.g. pretraining on some classes and fine-tuning on the others."""
        dataset = self.load_split(split)
        if not self.label_subset:
            return dataset
        labels = dataset.fields["label"]
        if max(self.label_subset) >= self.dataset_num_classes or min(self.label_subset) < 0:
            raise InputError(
                f"data.label_subset={self.label_subset} has labels outside 0..{self.dataset_num_classes - 1}"
            )
        remap = torch.full((self.dataset_num_classes,), -1, dtype=torch.long)
        remap[torch.as_tensor(self.label_subset)] = torch.arange(len(self.label_subset))
        keep = remap[labels] >= 0
        fields = {name: values[keep] for name, values in dataset.fields.items()}
        fields["label"] = remap[labels[keep]]
        return UInt8ImageDataset(dataset.images[keep], **fields)

    def _check_key_source(self) -> None:
        if not self.cipher_class.keyed:
            if self.key_file is not None or self.key_seed is not None:
                log.warning(
                    "cipher=%s needs no key; the key source in the config is ignored",
                    self.cipher_name,
                )
            return
        if self.key_seed is not None:
            _check_int("key_seed", self.key_seed, minimum=0)
        if (self.key_file is None) == (self.key_seed is None):
            given = "both were set" if self.key_file is not None else "neither was set"
            raise InputError(
                f"the {self.cipher_name!r} cipher needs exactly one key source, but {given}: "
                "use key=file key.path=KEY with a key file from vitlearnenc-keygen (the "
                "DataModule's key_file) or key=seed key.seed=N (its key_seed; reproducible, not "
                "secret)"
            )

    def _check_block_multiple(self, size: tuple[int, int]) -> None:
        block = self.block_size
        if size[0] % block or size[1] % block:
            raise InputError(
                f"the images reach the cipher as {size[0]}x{size[1]}, which is not a multiple of "
                f"the block size {block}; set image_size to a multiple of {block} or "
                "choose a block size (cipher.block_size / the model's patch size) that divides it"
            )

    def check_native_size(self, native: tuple[int, int]) -> tuple[int, int]:
        """Check that stored images of size ``native`` fit the pipeline; return the size the
        cipher sees (after the resize).

        Raises:
            ValueError: pre-encrypted images would need resizing, or the size after the
                resize is not a multiple of the block size.
        """
        if self.image_size is None:
            target = (int(native[0]), int(native[1]))
        else:
            target = (self.image_size, self.image_size)
        if self.cipher_class.pre_encrypted and target != tuple(native):
            raise InputError(
                f"the pre-encrypted images are {native[0]}x{native[1]} but image_size "
                f"is {self.image_size}; resizing a ciphertext blends "
                f"pixels of different blocks, so set image_size={native[0]} or encrypt the plain "
                f"images at that size (vitlearnenc-encrypt --resize {self.image_size})"
            )
        self._check_block_multiple(target)
        return target

    def _check_loaded(self, dataset: UInt8ImageDataset, what: str) -> None:
        """Fail now, not at the first batch, if a loaded split does not fit the cipher."""
        size = self.check_native_size(dataset.image_size)
        if size != self.cipher.image_size:
            raise KeyMismatchError(
                f"the {what} images reach the cipher as {size[0]}x{size[1]}, but it was built "
                f"for {self.cipher.image_size[0]}x{self.cipher.image_size[1]}; give all splits "
                "one size or set image_size to resize them"
            )

    # ---------------------------------------------------------------------------- cipher
    @property
    def cipher(self) -> Cipher:
        """The cipher applied to every batch (built on first use, normally in :meth:`setup`)."""
        if self._cipher is None:
            self._cipher = self._build_cipher(self._cipher_input_size(None))
        return self._cipher

    def _cipher_input_size(self, stage: str | None) -> tuple[int, int]:
        """The size the cipher sees; stored images are probed only when it depends on them."""
        if self.image_size is not None and not self.cipher_class.pre_encrypted:
            return (self.image_size, self.image_size)
        return self.check_native_size(self.native_size(stage))

    def _build_cipher(self, size: tuple[int, int]) -> Cipher:
        name, block = self.cipher_name, self.block_size
        if not self.cipher_class.keyed:
            cipher = build_cipher(name, image_size=size, block_size=block, **self.cipher_options)
        elif self.key_file is not None:
            key = load_key(self.key_file, method=name, image_size=size, block_size=block)
            _check_key_options(key, self.cipher_options, self.key_file)
            cipher = build_cipher(name, image_size=size, block_size=block, key=key)
        else:
            cipher = build_cipher(
                name, image_size=size, block_size=block, seed=self.key_seed, **self.cipher_options
            )
        log.info(
            "cipher %s on %dx%d images, block size %d, key %s",
            name,
            size[0],
            size[1],
            block,
            cipher.key.fingerprint if cipher.keyed else "none",
        )
        return cipher

    # ------------------------------------------------------------------------ lifecycle
    def setup(self, stage: str | None = None) -> None:
        """Per-device batch size, the cipher (before any data is decoded), then the splits
        that ``stage`` needs; splits already loaded are kept."""
        self._set_batch_size_per_device()
        if self._cipher is None:
            self._cipher = self._build_cipher(self._cipher_input_size(stage))
        if stage in (None, "fit", "validate") and self.train_set is None:
            full = self._load_subset_split("train")
            self._check_loaded(full, "train")
            self.train_set, self.val_set = split_train_val(full, self.val_fraction, self.split_seed)
        if stage in (None, "test") and self.test_set is None:
            test = self._load_subset_split("test")
            self._check_loaded(test, "test")
            self.test_set = test
        if stage == "predict" and self.predict_set is None:
            predict = self.load_predict()
            self._check_loaded(predict, "predict")
            self.predict_set = predict

    def _set_batch_size_per_device(self) -> None:
        """The global batch size divided among the trainer's devices (it must divide)."""
        if self.trainer is not None:
            world = self.trainer.world_size
            if self.batch_size % world:
                raise InputError(
                    f"data.batch_size={self.batch_size} does not divide among {world} devices "
                    f"(trainer.devices x trainer.num_nodes); use a multiple of {world}"
                )
            self.batch_size_per_device = self.batch_size // world

    def _loader(
        self, dataset: Dataset[Any] | None, stage: str, shuffle: bool = False
    ) -> DataLoader:
        """A ``StatefulDataLoader`` (shuffled by :class:`EpochShuffleSampler`): Lightning
        saves its position (sampler order, batches already yielded, worker states) in step
        checkpoints, so a run resumed mid-epoch continues with the batches an uninterrupted
        run would have seen."""
        if dataset is None:
            raise RuntimeError(f"the data for {stage!r} is not loaded; call setup({stage!r}) first")
        workers = self.num_workers
        return StatefulDataLoader(
            dataset,
            batch_size=self.batch_size_per_device,
            # the order of epoch e from (augment_seed, e): no draws from the global RNG
            sampler=EpochShuffleSampler(dataset, self.augment_seed) if shuffle else None,  # type: ignore[arg-type]
            generator=torch.Generator().manual_seed(self.augment_seed),  # workers' base seed
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            collate_fn=collate_batch,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, "fit", shuffle=True)

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        """The held-out part of the training set; no loaders when ``val_fraction`` is 0."""
        if self.val_fraction == 0:
            return []
        return self._loader(self.val_set, "validate")

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, "test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.predict_set, "predict")

    # ---------------------------------------------------------------- device pipeline
    def augment_and_resize(
        self, images: torch.Tensor, train: bool, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The plain-domain half of the pipeline: augmentation (if ``train``), then resize.

        Args:
            images: ``(B, C, H, W)`` uint8 batch (0..255) on any device; with
                ``cipher=pre_encrypted`` also real-valued float ciphertexts, passed through.
            train: apply the training augmentation (when enabled).
            generator: randomness for the augmentation; None uses torch's global RNG.

        Returns:
            ``(B, C, S, S)`` uint8 plain images, S = ``image_size`` (or the native size).
        """
        if images.ndim == 4 and images.is_floating_point() and self.cipher_class.pre_encrypted:
            # real-valued ciphertexts stored by the data owner (orthomix .npy folders, float
            # shards): pre_encrypted never augments, and check_native_size made image_size
            # their stored size, so they pass unchanged, as on-device encryption returns them
            return images
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise TypeError(
                f"the pipeline takes (B, C, H, W) uint8 batches, got {images.dtype} "
                f"{tuple(images.shape)}"
            )
        if train and self.augment:
            images = random_crop_flip(images, self.crop_padding, self.flip, generator=generator)
        if self.image_size is not None:
            images = resize_uint8(images, self.image_size)
        return images

    def encrypt_and_normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Encrypt a uint8 batch, scale to [0, 1] and normalise.

        Args:
            images: ``(B, C, S, S)`` uint8 plain batch, as :meth:`augment_and_resize` returns.

        Returns:
            float32 batch of the cipher's output shape, ``(x / 255 - mean) / std`` for uint8
            ciphertexts, ``(x - mean) / std`` for real-valued ones (already on the 0..1 scale).
        """
        encrypted = self.cipher.encrypt(images)
        if encrypted.shape[1] != len(self.mean):
            raise InputError(
                f"the {self.cipher_name} cipher outputs {encrypted.shape[1]} channels but "
                f"data.mean/std have {len(self.mean)} values; give one value per channel"
            )
        # uint8 ciphertexts hold 0..255; real-valued ones (orthomix) are already on the 0..1
        # scale of float images, and dividing them by 255 again would flatten the input
        scaled = (
            encrypted.float().div_(255) if encrypted.dtype == torch.uint8 else encrypted.float()
        )
        return normalize(scaled, list(self.mean), list(self.std))

    def transform_batch(
        self, images: torch.Tensor, train: bool, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The whole pipeline on one batch: augment -> resize -> encrypt -> normalise.

        Args:
            images: ``(B, C, H, W)`` uint8 batch (0..255) on any device.
            train: apply the training augmentation (when enabled).
            generator: randomness for the augmentation; None uses torch's global RNG.

        Returns:
            float32 model input on the batch's device.
        """
        return self.encrypt_and_normalize(self.augment_and_resize(images, train, generator))

    def augmentation_generator(self, batch_number: int) -> torch.Generator:
        """The random stream of training batch ``batch_number`` on this rank.

        Seeded from ``augment_seed``, the global rank and the batch number: ranks draw
        different crops and flips (one global stream would give image i of every rank's
        batch the same ones), a rerun draws the same, and a run resumed from any checkpoint
        continues the stream (the batch count is in :meth:`state_dict`, and rank 0's count
        is every rank's). A CPU generator, so the numbers do not depend on the device.
        """
        rank = self.trainer.global_rank if self.trainer is not None else 0
        seed = np.random.SeedSequence([self.augment_seed, rank, batch_number]).generate_state(1)
        return torch.Generator().manual_seed(int(seed[0]))

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        """Run the pipeline on the device; augmentation only while the trainer is training."""
        train = self.trainer is not None and self.trainer.training
        generator = None
        if train:
            generator = self.augmentation_generator(self.train_batches)
            self.train_batches += 1
        plain = self.augment_and_resize(batch["image"], train, generator)
        if self.keep_plain:
            batch["plain"] = plain
        batch["image"] = self.encrypt_and_normalize(plain)
        return batch

    def state_dict(self) -> dict[str, Any]:
        """What Lightning stores in checkpoints: the training batch count (no key material)."""
        return {"train_batches": self.train_batches}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.train_batches = int(state_dict.get("train_batches", 0))


def _check_int(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(f"data.{name} must be an integer >= {minimum}, got {value!r}")


def _check_key_options(key: CipherKey, options: dict[str, Any], source: str) -> None:
    """A key file fixes its cipher's (public) options; the config may repeat them, not change them."""
    for name, value in options.items():
        if name not in key.options:
            raise InputError(
                f"data.cipher_options sets {name!r}, but the key file {source} does not record "
                "that option and a key file fixes the cipher's options; remove it from the config"
            )
        if key.options[name] != value:
            raise KeyMismatchError(
                f"the key file {source} was made with {name}={key.options[name]!r}, but the "
                f"config asks for {name}={value!r}; use a matching key or drop the option"
            )
