"""Orthomix: block scrambling plus one keyed orthogonal map of every patch vector.

A ViT absorbs exactly any transform ``y_i = A x_{pi(i)}`` with a block permutation pi (the
position embedding follows it) and one shared invertible linear map A of the C*M*M patch vector
(the patch embedding becomes ``E A^-1``), see :mod:`vitlearnenc.models.key_transform`. The
paper's cipher is the special case "A permutes the pixels of each sub-block", which keeps pixel
adjacency and so falls to the jigsaw attack; these ciphers make A a keyed Haar-random orthogonal
matrix instead:

* ``orthomix``: one dense A over the whole patch vector (L = C*M*M: 48 at 32/4, 768 at 224/16);
* ``orthomix_sub``: the cheaper variant, the paper's structure with its pixel shuffle replaced by
  one Haar-random orthogonal A_s of each sub-block's C*(M/2)^2 values (the same A_s in the four
  sub-blocks of every block), so A is block diagonal: a quarter of the multiply-adds and of the
  mixing, the proposed cipher being the case "A_s is a channel-tied permutation".

Encryption of a ``(B, C, H, W)`` batch, values v in [0, 1] (uint8 / 255, or float input):

1. cut into N blocks of M x M, row-major, each flattened channel-major (C, M, M): the order of
   timm's ``patch_embed.proj.weight``;
2. ``y_i = A (x_{block_perm[i]} - 0.5) + 0.5``: centred at mid-grey, so that with the project's
   normalisation ``(v - 0.5) / 0.5`` the model input is exactly ``A z`` (no offset to absorb);
3. reassemble. Ciphertexts are real-valued, mostly in [-0.5, 1.5], and keep each patch's norm
   around 0.5 (A is orthogonal) but none of its pixel structure.

Storage (option ``storage``, fixed in the key): uint8 input gives ciphertexts of the storage
dtype, which is what ``vitlearnenc-encrypt`` writes (``.npy`` arrays, CHW) and ``vitlearnenc-pack``
stores (float shards), so pre-encrypted folders and shards feed the model bit for bit what
on-device encryption feeds it (tested for both dtypes). **float32 is the default**, because it
keeps every value to ~1e-7 and so decrypts with a wide margin (measured on 320 CIFAR-10
images, ``experiments/results/data/storage_bytes.json``: errors up to 1.3e-4 of an 8-bit step
at 32/4 and 5.3e-4 at 224/16; experiments/results/frontier/table.md: 1e-4 on 1000 test
images), and exact to the training input of the frontier runs. ``float16`` halves the bytes
(224x224: 301,184 per ``.npy`` file and 301,114 per shard item, against 602,240 / 602,170 for
float32, 97,528 for the proposed cipher's PNG and 150,586 for its uint8 shard item) at a
measured cost: errors up to 0.18 of a step (rms 0.03; 0.25 on the frontier table's 1000
images), no value off after rounding, but half a step is the limit, so it leaves under 2x
margin. Its accuracy effect at inference: the float32-trained orthomix vit_mini of the frontier
sweep (seed 0, 8 epochs) scores 63.46 % on the 10,000 CIFAR-10 test images fed as float32 and
63.48 % fed as float16, 2 predictions differing (``storage_accuracy.json`` beside the byte counts);
training on float16 is the frontier utility sweep's float16 run. Choose float16 when storage or
bandwidth is the bottleneck. zstd saves only 11-18 % on either (ciphertexts look like noise).
Float input keeps its dtype. Decryption returns [0, 1] values of the input's dtype;
:meth:`LinearPatchCipher.decrypt_uint8` rounds them to the exact image.

Keys hold a 256-bit ``secret`` (32 integers 0..255) and ``block_perm`` (K1); A is expanded from
the secret (:func:`~vitlearnenc.ciphers.orthomix_matrix.haar_orthogonal`, bit-identical on every
machine) for the channel count of the images, and lives only in this object.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from vitlearnenc.ciphers.base import (
    Cipher,
    CipherInputError,
    check_block_grid,
    log2_factorial,
)
from vitlearnenc.ciphers.keys import (
    CipherKey,
    KeyFileError,
    KeyRNG,
    check_permutation,
    check_range,
)
from vitlearnenc.ciphers.orthomix_matrix import SECRET_BYTES, haar_orthogonal
from vitlearnenc.ciphers.registry import register_cipher
from vitlearnenc.ciphers.validation import check_fields, check_geometry, reject_unknown_options

#: storage dtypes of ciphertexts made from uint8 images
STORAGE_DTYPES = {"float32": torch.float32, "float16": torch.float16}
_CENTRE = 0.5


class LinearPatchCipher(Cipher):
    """Block scrambling K1 + one keyed orthogonal map A of every patch vector (module doc).

    Subclasses set ``name`` and implement :meth:`mixing_dim`, :meth:`patch_matrix` and
    :meth:`unit_order`.
    """

    #: y_i = A x_{pi(i)} with one shared linear A: key_adapt / transform_vit absorb it
    absorbable_by_vit = True
    real_valued_ciphertexts: ClassVar[bool] = True
    #: the mixing unit is the (M / divisor)-block: the whole block (1) or its sub-blocks (2);
    #: public (the attacker knows the variant)
    mixing_unit_divisor: ClassVar[int] = 1

    def __init__(self, key: CipherKey) -> None:
        super().__init__(key)
        self._matrices: dict[int, np.ndarray] = {}
        self._device_cache: dict[tuple[str, int, str, torch.dtype], torch.Tensor] = {}
        self._plan_cache: dict[tuple[bool, int, str], tuple[torch.Tensor, torch.Tensor]] = {}
        self._block_perm = np.array(key["block_perm"], dtype=np.int64)  # a writable copy

    # ------------------------------------------------------------------------------ keys
    @classmethod
    def generate_key(
        cls,
        image_size: tuple[int, int],
        block_size: int,
        rng: KeyRNG,
        storage: str = "float32",
        **options: Any,
    ) -> CipherKey:
        reject_unknown_options(cls.name, options)
        grid_h, grid_w = check_block_grid(image_size, block_size)
        cls._check_block(block_size)
        _check_storage(storage)
        material = {
            "secret": rng.integers(256, SECRET_BYTES),
            "block_perm": rng.permutation(grid_h * grid_w),
        }
        return CipherKey(cls.name, image_size, block_size, material, {"storage": storage})

    @classmethod
    def validate_key(cls, key: CipherKey) -> None:
        check_fields(key, {"secret", "block_perm"})
        grid_h, grid_w = check_geometry(key)
        try:
            cls._check_block(key.block_size)
            _check_storage(key.options.get("storage", "float32"))
        except ValueError as error:
            raise KeyFileError(f"key parameters do not fit together: {error}") from None
        unknown = set(key.options) - {"storage"}
        if unknown:
            raise KeyFileError(f"unknown option(s) in a {cls.name!r} key: {sorted(unknown)}")
        check_range(key["secret"], SECRET_BYTES, 256, "secret")
        check_permutation(key["block_perm"], grid_h * grid_w, "block_perm")

    @classmethod
    def _check_block(cls, block_size: int) -> None:
        """Raise ValueError if the variant cannot use this block size."""

    @property
    def storage_dtype(self) -> torch.dtype:
        return STORAGE_DTYPES[self.key.options.get("storage", "float32")]

    @property
    def block_perm(self) -> np.ndarray:
        """K1 (secret): encrypted block i holds plain block ``block_perm[i]``."""
        return self._block_perm

    # ------------------------------------------------------------------------- the map A
    def mixing_dim(self, channels: int) -> int:
        """Size of the keyed orthogonal factor for ``channels``-channel images."""
        raise NotImplementedError

    def mixing_matrix(self, channels: int) -> np.ndarray:
        """The keyed orthogonal factor (float64, secret), expanded once per channel count."""
        if channels not in self._matrices:
            secret = bytes(int(v) for v in self.key["secret"])
            matrix = haar_orthogonal(secret, self.mixing_dim(channels), self.name)
            matrix.setflags(write=False)
            self._matrices[channels] = matrix
        return self._matrices[channels]

    def patch_matrix(self, channels: int) -> np.ndarray:
        """A as an ``(L, L)`` float64 matrix on the C*M*M patch vector in timm's weight order
        (channel-major): ``y_patch = A @ (x_patch - 0.5) + 0.5``. Secret: never log it."""
        raise NotImplementedError

    def unit_order(self, channels: int) -> np.ndarray:
        """Order of the channel-major C*M*M patch vector in which its consecutive runs of
        :meth:`mixing_dim` values are the mixing units (the whole block, or its sub-blocks)."""
        raise NotImplementedError

    def _device_matrix(
        self, channels: int, transpose: bool, device: torch.device, dtype: torch.dtype
    ) -> torch.Tensor:
        cache_key = ("t" if transpose else "n", channels, str(device), dtype)
        if cache_key not in self._device_cache:
            matrix = self.mixing_matrix(channels)
            matrix = matrix.T if transpose else matrix
            self._device_cache[cache_key] = torch.tensor(matrix, dtype=dtype, device=device)
        return self._device_cache[cache_key]

    # --------------------------------------------------------------------- transform
    def _patches(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, N, C*M*M)`` row-major blocks, channel-major vectors."""
        batch, channels, height, width = images.shape
        size = self.block_size
        grid = images.reshape(batch, channels, height // size, size, width // size, size)
        return grid.permute(0, 2, 4, 1, 3, 5).reshape(batch, -1, channels * size * size)

    def _plan(
        self, channels: int, decrypt: bool, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(gather, scatter)`` indices over flat ``C*H*W`` images (secret: they hold K1).

        Why one gather and one scatter: taking the blocks and then the sub-blocks apart with
        reshapes and permutes copied the batch eight times with 8- to 32-byte runs, which cost
        two thirds of orthomix_sub's time at 224/16 (measured with torch.profiler). ``gather``
        lines every block's mixing units up in block order (K1 applied for encryption) as
        consecutive ``mixing_dim`` runs; ``scatter`` puts the mixed values where they belong.
        """
        cache_key = (decrypt, channels, str(device))
        if cache_key not in self._plan_cache:
            height, width = self.image_size
            positions = torch.arange(channels * height * width).view(1, channels, height, width)
            layout = self._patches(positions)[0].numpy()[:, self.unit_order(channels)]
            keyed = layout[self._block_perm]  # encrypted block i holds plain block perm[i]
            source, target = (layout, keyed) if decrypt else (keyed, layout)
            self._plan_cache[cache_key] = (
                torch.as_tensor(source.reshape(-1), device=device),
                torch.as_tensor(np.argsort(target.reshape(-1)), device=device),
            )
        return self._plan_cache[cache_key]

    def _transform(
        self, images: torch.Tensor, decrypt: bool, compute: torch.dtype, out_dtype: torch.dtype
    ) -> torch.Tensor:
        """Gather the mixing units, centre them, apply A (encrypt) or its transpose
        (decrypt), uncentre, cast to ``out_dtype`` and scatter them back into images."""
        batch, channels = images.shape[:2]
        gather, scatter = self._plan(channels, decrypt, images.device)
        units = images.reshape(batch, -1).index_select(1, gather).to(compute)
        if images.dtype == torch.uint8:
            units.mul_(1 / 255)
        units = units.sub_(_CENTRE).view(batch, -1, self.mixing_dim(channels))
        factor = self._device_matrix(channels, not decrypt, images.device, compute)
        mixed = torch.matmul(units, factor).add_(_CENTRE).to(out_dtype)
        return mixed.view(batch, -1).index_select(1, scatter).view(images.shape)

    def encrypt(self, images: torch.Tensor) -> torch.Tensor:
        """Encrypt ``(B, C, H, W)`` uint8 (0..255) or float (0..1) images.

        Returns:
            Real-valued ciphertexts of the same shape on the same device: the ``storage``
            dtype for uint8 input (float32 by default), the input's dtype for float input.
        """
        self.check_input(images)
        compute = torch.float64 if images.dtype == torch.float64 else torch.float32
        out_dtype = self.storage_dtype if images.dtype == torch.uint8 else images.dtype
        return self._transform(images, False, compute, out_dtype)

    def _decrypt_compute(self, images: torch.Tensor) -> torch.Tensor:
        """Decrypted [0, 1] values in float32 (float64 for float64 input)."""
        if images.dtype == torch.uint8:
            raise CipherInputError(
                f"{self.name} ciphertexts are real-valued (float32/float16), got uint8; decrypt "
                "the float tensors that encrypt returned, not an 8-bit copy of them"
            )
        self.check_input(images)
        compute = torch.float64 if images.dtype == torch.float64 else torch.float32
        return self._transform(images, True, compute, compute)

    def decrypt(self, images: torch.Tensor) -> torch.Tensor:
        """Invert :meth:`encrypt`: [0, 1] values of the ciphertexts' dtype (round them with
        :meth:`decrypt_uint8` to get the 8-bit image back exactly)."""
        return self._decrypt_compute(images).to(images.dtype).contiguous()

    def decrypt_uint8(self, images: torch.Tensor) -> torch.Tensor:
        """Decrypt and round to the exact uint8 (0..255) plain images."""
        values = self._decrypt_compute(images)
        return values.mul_(255).round_().clamp_(0, 255).to(torch.uint8).contiguous()

    # ---------------------------------------------------------------------- properties
    def key_space_bits(self) -> float:
        """256 bits of secret (A is a function of it) plus log2(N!) for K1."""
        return 8.0 * SECRET_BYTES + log2_factorial(self._block_perm.size)

    def is_patch_aligned(self, patch_size: int) -> bool:
        return patch_size == self.block_size


@register_cipher
class OrthoMixCipher(LinearPatchCipher):
    """K1 + one dense keyed Haar-random orthogonal A over the whole C*M*M patch vector."""

    name = "orthomix"

    def mixing_dim(self, channels: int) -> int:
        return channels * self.block_size**2

    def patch_matrix(self, channels: int) -> np.ndarray:
        return self.mixing_matrix(channels).copy()

    def unit_order(self, channels: int) -> np.ndarray:
        return np.arange(self.mixing_dim(channels))


@register_cipher
class OrthoMixSubCipher(LinearPatchCipher):
    """K1 + one keyed Haar-random orthogonal A_s of every sub-block's C*(M/2)^2 values (the
    same A_s in all four sub-blocks TL, TR, BL, BR of every block; vectors channel-major)."""

    name = "orthomix_sub"
    mixing_unit_divisor: ClassVar[int] = 2

    @classmethod
    def _check_block(cls, block_size: int) -> None:
        if block_size % 2:
            raise ValueError(
                f"orthomix_sub mixes the four sub-blocks of each block, so the block size must "
                f"be even, got {block_size}"
            )

    def mixing_dim(self, channels: int) -> int:
        return channels * (self.block_size // 2) ** 2

    def subblock_index(self, channels: int) -> np.ndarray:
        """``(4, C*(M/2)^2)`` positions in the C*M*M patch vector of every sub-block's values."""
        size, half = self.block_size, self.block_size // 2
        flat = np.arange(channels * size * size).reshape(channels, 2, half, 2, half)
        return flat.transpose(1, 3, 0, 2, 4).reshape(4, channels * half * half)

    def patch_matrix(self, channels: int) -> np.ndarray:
        sub, index = self.mixing_matrix(channels), self.subblock_index(channels)
        full = np.zeros((channels * self.block_size**2,) * 2)
        for rows in index:
            full[np.ix_(rows, rows)] = sub
        return full

    def unit_order(self, channels: int) -> np.ndarray:
        return self.subblock_index(channels).reshape(-1)


def _check_storage(storage: object) -> None:
    if storage not in STORAGE_DTYPES:
        raise ValueError(f"storage must be one of {sorted(STORAGE_DTYPES)}, got {storage!r}")
