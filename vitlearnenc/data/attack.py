"""Data of the attacks, with the victim and the attacker kept apart.

Threat model (spec §2.0, §2.2, §2.3): the attacker knows the algorithm (the cipher's *name*,
block size and public options) but not the victim's key. It holds

* the victim's ciphertexts (the test set encrypted with the victim's secret key),
* public plain images, which it encrypts itself with keys it draws (ITN), and
* for SIA-GAN, the victim's training ciphertexts with their labels and unpaired natural images.

The two sides meet only through uint8 tensors:

* **victim side** — :func:`encrypt_victim_sets` takes a DataModule that holds the victim's key
  and returns a :class:`VictimData` of tensors; the DataModule (and with it the key) is
  dropped by the caller afterwards. The plain test images travel along *for scoring only*.
* **attacker side** — :func:`encrypt_with_fresh_keys`, :class:`ITNDataModule` and
  :class:`GANDataModule` are built from tensors plus the cipher name; none of them can reach
  the victim's key (a test walks their object graphs to check this).

Batches are dicts of uint8 ``(B, 3, H, W)`` tensors (``image`` = ciphertext, ``plain`` = the
matching plain image where the stage has one); the tasks scale them to [-1, 1] themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from vitlearnenc.ciphers import build_cipher, get_cipher_class, probe_cipher
from vitlearnenc.data.base import EncryptedDataModule
from vitlearnenc.data.datasets import UInt8ImageDataset, collate_batch, split_train_val
from vitlearnenc.errors import InputError
from vitlearnenc.utils.imagefiles import ARRAY_DTYPES
from vitlearnenc.utils.logging import RankedLogger

log = RankedLogger(__name__)

#: domain tag mixed into the attacker's seed, so its key stream never equals a victim key drawn
#: from the same small integer seed
_ATTACKER_TAG = 0x61747461  # "atta"
#: images encrypted per call on the victim side (bounds peak memory at 224x224)
_CHUNK = 1024


@dataclass(frozen=True, eq=False)
class VictimData:
    """What the victim side hands over: ciphertexts, plus plain images for scoring only.

    Attributes:
        test_ciphertexts: ``(N, C, H, W)`` uint8, the victim's test images encrypted with its key.
        test_plain: ``(N, 3, H, W)`` uint8 plain test images (after the resize); only the
            researcher's scoring reads them, never an attack.
        train_ciphertexts: ``(M, C, H, W)`` uint8 victim training images encrypted with the same
            key (SIA-GAN's labelled ciphertexts, KPA's known pairs), or None.
        train_labels: ``(M,)`` int64 labels of ``train_ciphertexts``, or None.
        train_plain: ``(M, 3, H, W)`` uint8 plain counterparts of ``train_ciphertexts`` (the
            known-plaintext attack's pairs), or None.
        key_fingerprint: public id of the victim key (None for unkeyed ciphers); safe to log.
    """

    test_ciphertexts: torch.Tensor
    test_plain: torch.Tensor
    train_ciphertexts: torch.Tensor | None = None
    train_labels: torch.Tensor | None = None
    train_plain: torch.Tensor | None = None
    key_fingerprint: str | None = None


def _resized(datamodule: EncryptedDataModule, images: torch.Tensor) -> torch.Tensor:
    """Plain images resized to the pipeline's size (no augmentation), in chunks."""
    return torch.cat(
        [
            datamodule.augment_and_resize(images[i : i + _CHUNK], train=False)
            for i in range(0, len(images), _CHUNK)
        ]
    )


def encrypt_victim_sets(
    datamodule: EncryptedDataModule,
    test_indices: torch.Tensor,
    train_indices: torch.Tensor | None = None,
) -> VictimData:
    """The victim side: encrypt the chosen test (and training) images with the victim's key.

    Args:
        datamodule: a DataModule configured with the victim's cipher and key source; only its
            splits, resize and cipher are used (no augmentation).
        test_indices: ``(N,)`` indices into the test split: the victim ciphertexts to attack.
        train_indices: ``(M,)`` indices into the training split encrypted with the same key
            (labelled ciphertexts for SIA-GAN, known pairs for KPA), or None.

    Returns:
        Tensors only; the caller drops ``datamodule`` so that no attack can reach the key.
    """
    cipher = datamodule.cipher

    def encrypt(images: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [cipher.encrypt(images[i : i + _CHUNK]) for i in range(0, len(images), _CHUNK)]
        )

    test = datamodule.load_split("test")
    test_plain = _resized(datamodule, test.images[test_indices])
    train_cipher = train_labels = train_plain = None
    if train_indices is not None and len(train_indices):
        train = datamodule.load_split("train")
        train_plain = _resized(datamodule, train.images[train_indices])
        train_cipher = encrypt(train_plain)
        train_labels = train.fields["label"][train_indices]
    return VictimData(
        test_ciphertexts=encrypt(test_plain),
        test_plain=test_plain,
        train_ciphertexts=train_cipher,
        train_labels=train_labels,
        train_plain=train_plain,
        key_fingerprint=cipher.key.fingerprint if cipher.keyed else None,
    )


def load_public_images(datamodule: EncryptedDataModule, indices: torch.Tensor) -> torch.Tensor:
    """Plain training images, resized to the pipeline's size: the attacker's public data.

    Args:
        datamodule: any DataModule of the dataset (only its training split and resize are used).
        indices: ``(N,)`` indices into the training split.

    Returns:
        ``(N, 3, H, W)`` uint8 plain images.
    """
    return _resized(datamodule, datamodule.load_split("train").images[indices])


def encrypt_with_fresh_keys(
    images: torch.Tensor,
    cipher: str,
    block_size: int,
    cipher_options: dict[str, Any] | None = None,
    images_per_key: int = 1,
    seed: int = 0,
) -> torch.Tensor:
    """The attacker side: encrypt public images, each group of ``images_per_key`` with a fresh key.

    Keys are drawn from the attacker's own seeded stream (tagged so that it never reproduces a
    victim key made from the same small seed) and thrown away. PE in its per-image-key mode
    encrypts the whole batch at once; every other cipher builds one key per group through the
    public :func:`~vitlearnenc.ciphers.build_cipher` (about 0.4-1.4 ms per 32x32 image, 8 ms at
    224x224), once per dataset in ``setup``, not per training step.

    Args:
        images: ``(N, C, H, W)`` uint8 plain images (0..255), at the cipher's image size.
        cipher: registered cipher name (the algorithm is public).
        block_size: the cipher's block size.
        cipher_options: the cipher's public options (e.g. ``per_image_keys`` for PE).
        images_per_key: images sharing one key (1 = a fresh key per image, the ITN setting).
        seed: seed of the attacker's key stream.

    Returns:
        ``(N, C', H', W')`` uint8 ciphertexts on the input's device.
    """
    if images_per_key < 1:
        raise InputError(f"images_per_key must be >= 1, got {images_per_key}")
    options = dict(cipher_options or {})
    size = (int(images.shape[-2]), int(images.shape[-1]))
    cls = get_cipher_class(cipher)
    if not cls.keyed:
        return build_cipher(cipher, size, block_size, **options).encrypt(images)
    rng = np.random.default_rng([seed, _ATTACKER_TAG])
    probe = probe_cipher(cipher, size, block_size, **options)
    if probe.per_image_keys and images_per_key == 1:  # the cipher draws a key per image itself
        generator = torch.Generator(device=images.device).manual_seed(int(rng.integers(2**62)))
        return probe.encrypt(images, generator=generator)  # type: ignore[call-arg]
    options = cls.fixed_key_options(options)  # one drawn key per group, for the whole group
    seeds = rng.integers(0, 2**62, size=-(-len(images) // images_per_key))
    out = [
        build_cipher(cipher, size, block_size, seed=int(key_seed), **options).encrypt(
            images[i * images_per_key : (i + 1) * images_per_key]
        )
        for i, key_seed in enumerate(seeds)
    ]
    return torch.cat(out)


def _loader(
    dataset: Dataset[Any] | None,
    batch_size: int,
    num_workers: int,
    shuffle: bool,
    drop_last: bool = False,
) -> DataLoader:
    if dataset is None:
        raise RuntimeError("the data of this stage is not set up; call setup(stage) first")
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=drop_last,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        collate_fn=collate_batch,
    )


def _check_images(images: torch.Tensor, what: str, ciphertexts: bool = False) -> None:
    """``images`` is a ``(N, C, H, W)`` uint8 tensor; ``ciphertexts`` may also be real-valued
    (orthomix: float32/float16 on the 0..1 scale of the float cipher API)."""
    allowed = (torch.uint8, *ARRAY_DTYPES.values()) if ciphertexts else (torch.uint8,)
    if not isinstance(images, torch.Tensor) or images.dtype not in allowed or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        kind = "uint8 (or float32/float16 ciphertext)" if ciphertexts else "uint8"
        raise InputError(f"{what} must be a (N, C, H, W) {kind} tensor, got {shape}")


class VictimEvalMixin:
    """Test and predict stages over the victim's ciphertexts (shared by both attack modules).

    ``test`` batches carry ``plain`` (scoring only); ``predict`` batches carry ``index``.
    """

    victim_ciphertexts: torch.Tensor
    victim_plain: torch.Tensor | None
    batch_size: int
    num_workers: int
    test_set: Dataset[Any] | None
    predict_set: Dataset[Any] | None

    def _setup_victim(self, stage: str | None) -> None:
        if stage == "test" and self.victim_plain is None:
            raise InputError("the test stage scores against plain images: pass victim_plain")
        if stage in (None, "test") and self.test_set is None and self.victim_plain is not None:
            self.test_set = UInt8ImageDataset(self.victim_ciphertexts, plain=self.victim_plain)
        if stage in (None, "predict") and self.predict_set is None:
            index = torch.arange(len(self.victim_ciphertexts))
            self.predict_set = UInt8ImageDataset(self.victim_ciphertexts, index=index)

    def test_dataloader(self) -> DataLoader:
        return _loader(self.test_set, self.batch_size, self.num_workers, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return _loader(self.predict_set, self.batch_size, self.num_workers, shuffle=False)


class ITNDataModule(VictimEvalMixin, L.LightningDataModule):
    """ITN-Attack data (spec §2.3): attacker-encrypted public images paired with their plain
    originals for training/validation; the victim's ciphertexts for test/predict.

    Each public image gets a fresh attacker key (``images_per_key=1``), drawn once in
    ``setup``: every epoch revisits the same pairs, like the ITN paper's encrypted dataset.

    Args:
        public_images: ``(N, 3, H, W)`` uint8 plain public images (e.g. CIFAR-10 train).
        victim_ciphertexts: ``(V, C, H, W)`` uint8 victim ciphertexts to restore (float32/float16
            for the real-valued orthomix ciphers, on the 0..1 scale).
        cipher: registered cipher name (public); no key.
        block_size: the cipher's block size (public).
        cipher_options: public cipher options (e.g. ``per_image_keys`` for PE).
        victim_plain: ``(V, 3, H, W)`` uint8 plain victim images for the test stage's scores.
        images_per_key: public images sharing one attacker key.
        key_seed: seed of the attacker's key stream.
        val_fraction: share of the attacker pairs held out for validation.
        split_seed: seed of the train/val split.
        batch_size: images per batch.
        num_workers: DataLoader workers.
    """

    def __init__(
        self,
        public_images: torch.Tensor,
        victim_ciphertexts: torch.Tensor,
        cipher: str,
        block_size: int,
        cipher_options: dict[str, Any] | None = None,
        victim_plain: torch.Tensor | None = None,
        images_per_key: int = 1,
        key_seed: int = 0,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        batch_size: int = 128,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        _check_images(public_images, "public_images")
        _check_images(victim_ciphertexts, "victim_ciphertexts", ciphertexts=True)
        if victim_plain is not None:
            _check_images(victim_plain, "victim_plain")
        get_cipher_class(cipher)  # unknown names fail here, listing the known ones
        self.save_hyperparameters(ignore=["public_images", "victim_ciphertexts", "victim_plain"])
        self.public_images = public_images
        self.victim_ciphertexts = victim_ciphertexts
        self.victim_plain = victim_plain
        self.cipher_name = cipher
        self.block_size = block_size
        self.cipher_options = dict(cipher_options or {})
        self.images_per_key = images_per_key
        self.key_seed = key_seed
        self.val_fraction = val_fraction
        self.split_seed = split_seed
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.train_set: Dataset[Any] | None = None
        self.val_set: Dataset[Any] | None = None
        self.test_set: Dataset[Any] | None = None
        self.predict_set: Dataset[Any] | None = None

    def setup(self, stage: str | None = None) -> None:
        """Encrypt the public images with fresh attacker keys (once) and split them."""
        if stage in (None, "fit", "validate") and self.train_set is None:
            encrypted = encrypt_with_fresh_keys(
                self.public_images,
                self.cipher_name,
                self.block_size,
                self.cipher_options,
                self.images_per_key,
                self.key_seed,
            )
            pairs = UInt8ImageDataset(encrypted, plain=self.public_images)
            self.train_set, self.val_set = split_train_val(
                pairs, self.val_fraction, self.split_seed
            )
            log.info(
                "attacker pairs: %d public images, a fresh %s key per %d image(s)",
                len(pairs),
                self.cipher_name,
                self.images_per_key,
            )
        self._setup_victim(stage)

    def train_dataloader(self) -> DataLoader:
        return _loader(self.train_set, self.batch_size, self.num_workers, shuffle=True)

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        if self.val_fraction == 0:
            return []
        return _loader(self.val_set, self.batch_size, self.num_workers, shuffle=False)


class GANDataModule(VictimEvalMixin, L.LightningDataModule):
    """SIA-GAN / GAN-Attack data (spec §2.2): labelled victim ciphertexts and unpaired natural
    images for training; the victim's test ciphertexts for test/predict.

    Training batches are ``{"scrambled": {"image", "label"}, "natural": {"image"}}`` from two
    independently shuffled loaders (Lightning combines them, cycling the shorter), so the
    natural half of a batch is unrelated to the scrambled half. No validation: the attacker has
    no pairs to validate on.

    Args:
        scrambled: ``(M, C, H, W)`` uint8 victim training ciphertexts.
        labels: ``(M,)`` int64 their class labels.
        natural: ``(K, 3, H, W)`` uint8 natural images (disjoint from the scrambled ones).
        victim_ciphertexts: ``(V, C, H, W)`` uint8 victim test ciphertexts to restore.
        victim_plain: ``(V, 3, H, W)`` uint8 plain victim images for the test stage's scores.
        batch_size: images per loader batch (a step sees this many of each kind).
        num_workers: DataLoader workers per loader.
    """

    def __init__(
        self,
        scrambled: torch.Tensor,
        labels: torch.Tensor,
        natural: torch.Tensor,
        victim_ciphertexts: torch.Tensor,
        victim_plain: torch.Tensor | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        for images, what in (
            (scrambled, "scrambled"),
            (natural, "natural"),
            (victim_ciphertexts, "victim_ciphertexts"),
        ):
            _check_images(images, what)
        if labels.shape != (len(scrambled),):
            raise InputError(
                f"labels must have shape ({len(scrambled)},), got {tuple(labels.shape)}"
            )
        if min(len(scrambled), len(natural)) < batch_size:
            raise InputError(
                f"batch_size={batch_size} exceeds the {len(scrambled)} scrambled / {len(natural)} "
                "natural images; lower the batch size or give more images"
            )
        self.scrambled = UInt8ImageDataset(scrambled, label=labels.long())
        self.natural = UInt8ImageDataset(natural)
        self.victim_ciphertexts = victim_ciphertexts
        self.victim_plain = victim_plain
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.test_set: Dataset[Any] | None = None
        self.predict_set: Dataset[Any] | None = None

    def setup(self, stage: str | None = None) -> None:
        self._setup_victim(stage)

    def train_dataloader(self) -> dict[str, DataLoader]:
        return {
            name: _loader(data, self.batch_size, self.num_workers, shuffle=True, drop_last=True)
            for name, data in (("scrambled", self.scrambled), ("natural", self.natural))
        }
