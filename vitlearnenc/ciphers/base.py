"""Cipher interface and the shared gather-plus-negation engine.

Every keyed transform of the project is, per key, a fixed map of value positions (a gather)
followed by a fixed negative-positive flip of some values (``v -> max - v``, which is
``v XOR 255`` on uint8). :class:`IndexCipher` precomputes that map once per key and applies it
to a whole batch with one scatter/gather and one in-place elementwise op
(:mod:`~vitlearnenc.ciphers.fastpath`), on whatever device the batch lives, so subclasses only
describe *where* each value comes from.

Value conventions: uint8 tensors hold 0..255; floating tensors hold 0..1 (negation is
``1 - v``). Ciphers that work on nibbles (LE, ELE) quantise float input to 8 bits first.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
import torch

from vitlearnenc.ciphers.fastpath import GatherKernel, Kernel
from vitlearnenc.ciphers.keys import CipherKey, KeyMismatchError, KeyRNG
from vitlearnenc.ciphers.plan import GatherPlan
from vitlearnenc.errors import InputError, VitlearnencError


class CipherInputError(VitlearnencError, ValueError):
    """Images that a cipher cannot process (wrong shape, size or dtype)."""


class NotInvertibleError(VitlearnencError, RuntimeError):
    """``decrypt`` called on a cipher (or mode) that has no inverse."""


def parse_image_size(image_size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """Normalise ``32``, ``(32, 32)`` or ``[32, 32]`` to ``(H, W)``."""
    if isinstance(image_size, int):
        return (image_size, image_size)
    size = tuple(int(v) for v in image_size)
    if len(size) != 2:
        raise InputError(f"image_size must be an int or (H, W), got {image_size!r}")
    return size  # type: ignore[return-value]


def check_block_grid(image_size: tuple[int, int], block_size: int) -> tuple[int, int]:
    """Return the block grid (H/M, W/M), or raise a clear error if M does not divide H and W."""
    height, width = image_size
    if block_size <= 0:
        raise InputError(f"block size must be positive, got {block_size}")
    if height % block_size or width % block_size:
        raise CipherInputError(
            f"image size {height}x{width} is not a multiple of the block size {block_size}; "
            f"resize the images (e.g. --resize {(max(height, width) // block_size + 1) * block_size}) "
            "or choose a block size that divides both sides"
        )
    return height // block_size, width // block_size


def log2_factorial(n: int) -> float:
    """log2(n!) exactly enough for key spaces (lgamma; exact to ~1e-12 relative)."""
    return math.lgamma(n + 1) / math.log(2)


class Structure:
    """Names of the key structures that structure-specific attacks exploit
    (:attr:`Cipher.structure`); an attack declares the structures it can solve."""

    #: scrambled blocks whose pixels all went through one shared, channel-tied pixel shuffle
    #: (the proposed cipher without ``channel_mix``): jigsaw solving, known-plaintext recovery
    PIXEL_SHUFFLED_BLOCKS = "pixel_shuffled_blocks"
    #: scrambled blocks, each rotated/flipped, maybe negated and colour-shuffled as a whole
    #: (EtC with ``etc_channel_mode=permute``): the EtC jigsaw solver
    ETC_BLOCKS = "etc_blocks"
    #: one nibble permutation + negation shared by every block (LE): known-plaintext recovery
    SHARED_NIBBLE_PERMUTATION = "shared_nibble_permutation"
    #: a nibble permutation + negation of its own for every block, fixed for all images, then
    #: block scrambling (ELE): the per-block correlation attack of a victim corpus
    PER_BLOCK_NIBBLE_MAPS = "per_block_nibble_maps"
    #: a value map (negation + colour shuffle) of its own for every pixel, fixed for all
    #: images (PE with one key): the per-block correlation attack with 1x1 blocks
    PER_PIXEL_VALUE_MAPS = "per_pixel_value_maps"


class Cipher(ABC):
    """A keyed, batched, device-agnostic image transform on ``(B, C, H, W)`` tensors.

    Subclasses set ``name`` (the registry name), implement :meth:`generate_key`,
    :meth:`validate_key`, :meth:`encrypt`, :meth:`decrypt`, :meth:`key_space_bits` and
    :meth:`is_patch_aligned`, and declare their **capabilities** below. Code outside
    ``ciphers/`` decides what to do with a cipher from these attributes, never from its name
    (a test enforces it). Attributes without ``ClassVar`` are class defaults that an instance
    may change for a mode of its key (as PE does for ``per_image_keys``), so read them on an
    instance, e.g. one built from a throw-away key with the configured options
    (:func:`~vitlearnenc.ciphers.registry.probe_cipher`).
    """

    name: ClassVar[str]
    #: other names the registry accepts for this cipher, each with a deprecation warning
    aliases: ClassVar[tuple[str, ...]] = ()
    #: whether ``decrypt`` is the exact inverse of ``encrypt`` (on uint8 input); a class default
    #: that an instance may turn off for a non-invertible mode of its key
    invertible: bool = True
    #: whether the cipher needs a key at all (``plain`` and ``pre_encrypted`` do not)
    keyed: ClassVar[bool] = True
    #: the input is already encrypted by the data owner (``pre_encrypted``): no key, no
    #: plain-domain augmentation, no resize, nothing to decrypt in this process
    pre_encrypted: ClassVar[bool] = False
    #: whether every image gets its own fresh key (PE's default mode): a known pair or a
    #: corpus of ciphertexts says nothing about the key of another image
    per_image_keys: bool = False
    #: whether a ViT's weights can absorb the key (``model.key_adapt=true``,
    #: :func:`~vitlearnenc.models.key_transform.transform_vit`): the cipher is
    #: ``y_i = A x_pi(i)``, one linear map A shared by all blocks after a block permutation pi
    absorbable_by_vit: bool = False
    #: whether ciphertexts are real numbers (orthomix) rather than 8-bit values: such
    #: ciphertexts are stored as ``.npy`` arrays and float shards of :attr:`storage_dtype`, not
    #: as image files
    real_valued_ciphertexts: ClassVar[bool] = False
    #: whether a ViT must use patch size = block size with this cipher (an error, not a warning,
    #: when the configured model's patches do not align)
    requires_patch_alignment: ClassVar[bool] = False
    #: the key structure that structure-specific attacks exploit (a :class:`Structure` name),
    #: or None
    structure: str | None = None
    #: why this key's mode lacks the structure of its class (for the reports of the attacks
    #: that need it), or None
    structure_note: str | None = None

    @property
    def storage_dtype(self) -> torch.dtype:
        """dtype of the ciphertexts of uint8 images: what files and shards store."""
        return torch.uint8

    @classmethod
    def fixed_key_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        """``options`` for a key that serves a whole group of images (an attacker who draws one
        key per group); a cipher with a per-image-key mode switches that mode off here."""
        return dict(options)

    def __init__(self, key: CipherKey) -> None:
        if key.method != self.name:
            raise KeyMismatchError(
                f"key was made for the {key.method!r} cipher, not {self.name!r}; "
                f"use a {self.name!r} key (vitlearnenc-keygen --cipher {self.name})"
            )
        self.validate_key(key)
        self.key = key

    @property
    def image_size(self) -> tuple[int, int]:
        return self.key.image_size

    @property
    def block_size(self) -> int:
        return self.key.block_size

    @classmethod
    @abstractmethod
    def generate_key(
        cls, image_size: tuple[int, int], block_size: int, rng: KeyRNG, **options: Any
    ) -> CipherKey:
        """Draw a fresh key for images of ``image_size`` with blocks of ``block_size``."""

    @classmethod
    @abstractmethod
    def validate_key(cls, key: CipherKey) -> None:
        """Raise :class:`~vitlearnenc.ciphers.keys.KeyFileError` if the material is malformed."""

    @abstractmethod
    def encrypt(self, images: torch.Tensor) -> torch.Tensor:
        """Encrypt ``(B, C, H, W)`` uint8 (0..255) or float (0..1) images; same dtype/device."""

    @abstractmethod
    def decrypt(self, images: torch.Tensor) -> torch.Tensor:
        """Exact inverse of :meth:`encrypt` (raises :class:`NotInvertibleError` if none)."""

    @abstractmethod
    def key_space_bits(self) -> float:
        """log2 of the number of distinct keys for this image size and block size."""

    @abstractmethod
    def is_patch_aligned(self, patch_size: int) -> bool:
        """True if every encrypted ViT patch of ``patch_size`` depends on one plain patch only."""

    def output_shape(self, channels: int) -> tuple[int, int, int]:
        """(C, H, W) of an encrypted image; equal to the input for all but grayscale EtC."""
        return (channels, *self.image_size)

    def check_input(self, images: torch.Tensor, expected_hw: tuple[int, int] | None = None) -> None:
        """Raise a clear :class:`CipherInputError` for tensors this cipher cannot process."""
        if images.ndim != 4:
            raise CipherInputError(
                f"expected a (B, C, H, W) batch, got a tensor of shape {tuple(images.shape)}; "
                "add a batch dimension with images.unsqueeze(0)"
            )
        if images.dtype != torch.uint8 and not images.is_floating_point():
            raise CipherInputError(
                f"images must be uint8 (0..255) or float (0..1), got {images.dtype}"
            )
        hw = tuple(images.shape[-2:])
        expected = expected_hw or self.image_size
        if hw != tuple(expected):
            raise KeyMismatchError(
                f"the key was made for {expected[0]}x{expected[1]} images but got "
                f"{hw[0]}x{hw[1]}; resize the images to {expected[0]}x{expected[1]} or make a key "
                "for this size"
            )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.key!r})"


class IndexCipher(Cipher):
    """A cipher whose transform is one :class:`GatherPlan` per key (see module docstring).

    The plan is built once from the key. A batch runs through the fast path by default
    (:class:`~vitlearnenc.ciphers.fastpath.GatherKernel`: one scatter or gather into the output
    and one in-place negation, cached per direction, channel count, device and dtype); set
    ``use_fast_path = False`` on an instance to run the plain reference gather instead
    (:meth:`_apply_reference`, same results, several times slower; the tests compare the two).
    """

    #: run batches through the fast kernels (True) or the reference gather (False)
    use_fast_path: bool = True

    def __init__(self, key: CipherKey) -> None:
        super().__init__(key)
        self._plans: dict[str, GatherPlan] = {}
        self._device_cache: dict[
            tuple[str, str, torch.dtype], tuple[torch.Tensor, torch.Tensor | None]
        ] = {}
        self._kernels: dict[tuple[str, int, str, torch.dtype], Kernel] = {}

    @abstractmethod
    def build_plan(self, channels: int) -> GatherPlan:
        """The encryption plan for images with ``channels`` colour channels."""

    def _plan(self, direction: str, channels: int) -> GatherPlan:
        cache_key = f"{direction}{channels}"
        if cache_key not in self._plans:
            plan = self.build_plan(channels)
            self._plans[f"encrypt{channels}"] = plan
            self._plans[f"decrypt{channels}"] = plan.inverse()
        return self._plans[cache_key]

    def _kernel(
        self, direction: str, channels: int, device: torch.device, dtype: torch.dtype
    ) -> Kernel:
        """The fast kernel of one plan, built on first use and cached per device and dtype."""
        cache_key = (direction, channels, str(device), dtype)
        if cache_key not in self._kernels:
            self._kernels[cache_key] = self._build_kernel(
                self._plan(direction, channels), channels, device, dtype
            )
        return self._kernels[cache_key]

    def _build_kernel(
        self, plan: GatherPlan, channels: int, device: torch.device, dtype: torch.dtype
    ) -> Kernel:
        """The fast kernel of ``plan``; subclasses whose plans index something other than values
        (nibbles) return their own."""
        return GatherKernel.from_plan(plan, channels, device, dtype)

    def _device_plan(
        self, direction: str, channels: int, device: torch.device, dtype: torch.dtype
    ) -> tuple[GatherPlan, torch.Tensor, torch.Tensor | None]:
        """The plan with its index and negation mask on ``device`` (reference path)."""
        plan = self._plan(direction, channels)
        cache_key = (f"{direction}{channels}", str(device), dtype)
        if cache_key not in self._device_cache:
            index = torch.as_tensor(plan.index, dtype=torch.long, device=device)
            mask = None
            if plan.negate is not None:
                negate = torch.as_tensor(plan.negate.astype(bool), device=device)
                # uint8: XOR with 255 negates; float: 1 - v, done as where() with a bool mask
                mask = negate.to(torch.uint8) * 255 if dtype == torch.uint8 else negate
            self._device_cache[cache_key] = (index, mask)
        index, mask = self._device_cache[cache_key]
        return plan, index, mask

    def _apply(
        self, images: torch.Tensor, direction: str, channels: int, out_shape: tuple[int, ...]
    ) -> torch.Tensor:
        """Run the ``direction`` plan of ``channels``-channel plain images on ``images``
        (plain images to encrypt, or ciphertexts of such images to decrypt)."""
        if not self.use_fast_path:
            return self._apply_reference(images, direction, channels, out_shape)
        kernel = self._kernel(direction, channels, images.device, images.dtype)
        return kernel(images, out_shape)

    def _apply_reference(
        self, images: torch.Tensor, direction: str, channels: int, out_shape: tuple[int, ...]
    ) -> torch.Tensor:
        """The plan applied literally: one ``index_select`` over the flattened values (or pixel
        positions) and one negation. Simple enough to trust; the fast path must equal it."""
        batch = images.shape[0]
        plan, index, mask = self._device_plan(direction, channels, images.device, images.dtype)
        if plan.spatial:
            flat = images.flatten(2).index_select(2, index)
        else:
            flat = images.flatten(1).index_select(1, index)
        if mask is not None:
            flat = flat.flatten(1)
            if images.dtype == torch.uint8:
                flat = flat ^ mask
            else:
                flat = torch.where(mask, 1.0 - flat, flat)
        return flat.reshape(batch, *out_shape)

    def encrypt(self, images: torch.Tensor) -> torch.Tensor:
        self.check_input(images)
        channels = images.shape[1]
        return self._apply(images, "encrypt", channels, self.output_shape(channels))

    def decrypt(self, images: torch.Tensor) -> torch.Tensor:
        channels = self.input_channels(images)
        self.check_input(images, self.output_shape(channels)[1:])
        return self._apply(images, "decrypt", channels, (channels, *self.image_size))

    def input_channels(self, encrypted: torch.Tensor) -> int:
        """Channels of the plain image behind an encrypted batch (differs for grayscale EtC)."""
        return int(encrypted.shape[1])


def block_grid_index(height: int, width: int, block_size: int) -> np.ndarray:
    """Flat pixel index arranged as ``(N, M, M)``: entry [b, r, c] is the row-major position
    of pixel (r, c) of block b (blocks numbered row-major). Helper for block-wise plans."""
    grid_h, grid_w = height // block_size, width // block_size
    flat = np.arange(height * width, dtype=np.int64).reshape(grid_h, block_size, grid_w, block_size)
    return flat.transpose(0, 2, 1, 3).reshape(grid_h * grid_w, block_size, block_size)
