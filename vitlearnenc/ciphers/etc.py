"""EtC: block-wise encryption-then-compression ciphers (Chuman et al. 2018), spec §1.4.

Colour version (``etc``), applied to M x M blocks numbered row-major, in the spec's order:

1. block scrambling: encrypted block i = plain block ``block_perm[i]``;
2. rotation and inversion of encrypted block i with dihedral code ``transform[i]`` (0..7):
   rotate by ``(t % 4) * 90`` degrees counter-clockwise (``torch.rot90`` on (H, W)), then, for
   t >= 4, flip horizontally (reverse the columns) — the 8 distinct maps of rotation x flip;
3. negative-positive transform (``v -> 255 - v``) of all channels of block i iff ``negate[i]``;
4. colour-component shuffling: encrypted channel c of block i = channel
   ``COLOUR_PERMUTATIONS[channel_perm[i]][c]``.

Keys are indexed by the *encrypted* block position. The reference code runs steps 2-4 first and
shuffles afterwards (keys indexed by the plain position): the same scheme up to relabelling the
per-block keys by ``block_perm``. Every step moves or negates whole values, so the cipher is one
gather plus one negation (:class:`~vitlearnenc.ciphers.base.IndexCipher`).

Grayscale-based version (``etc_gray``, Chuman/Sirichotedumrong/Kiya): the three colour components
(RGB kept, no YCbCr) are put side by side as one H x 3W single-channel image, which is then
encrypted with steps 1-3 on its 3N blocks; the output stays H x 3W.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch

from vitlearnenc.ciphers.base import (
    CipherInputError,
    GatherPlan,
    IndexCipher,
    NotInvertibleError,
    Structure,
    block_grid_index,
    check_block_grid,
    log2_factorial,
)
from vitlearnenc.ciphers.keys import CipherKey, KeyFileError, KeyRNG, check_permutation, check_range
from vitlearnenc.ciphers.registry import register_cipher
from vitlearnenc.ciphers.validation import check_fields, reject_unknown_options
from vitlearnenc.errors import InputError

#: colour permutation codes of the reference code's ``channel_change`` (code 0 = identity):
#: output channel c is input channel ``COLOUR_PERMUTATIONS[code][c]``.
COLOUR_PERMUTATIONS = np.array(
    [(0, 1, 2), (1, 0, 2), (2, 1, 0), (0, 2, 1), (2, 0, 1), (1, 2, 0)], dtype=np.int64
)
#: what the reference ``channel_change`` really computes: it assigns channels one after another in
#: place, so later assignments read overwritten channels and 5 of the 6 codes duplicate a channel.
ORIGINAL_COLOUR_MAPS = np.array(
    [(0, 1, 2), (1, 1, 2), (2, 1, 2), (0, 2, 2), (2, 2, 2), (1, 2, 1)], dtype=np.int64
)
CHANNEL_MODES = ("permute", "original")
_DIHEDRAL_CODES = 8


def dihedral_maps(block_size: int) -> np.ndarray:
    """Local gather maps of the 8 dihedral transforms, shape ``(8, M*M)``.

    Entry [t, k] is the row-major position in the source block of the pixel that lands at
    position k of the transformed block: rotation by ``(t % 4) * 90`` degrees counter-clockwise,
    then a horizontal flip for t >= 4.
    """
    base = np.arange(block_size * block_size, dtype=np.int64).reshape(block_size, block_size)
    maps = []
    for code in range(_DIHEDRAL_CODES):
        rotated = np.rot90(base, code % 4)
        maps.append((rotated[:, ::-1] if code >= 4 else rotated).ravel())
    return np.stack(maps)


def scramble_pixels(
    image_size: tuple[int, int], block_size: int, block_perm: np.ndarray, transform: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Pixel gather of steps 1-2 and the encrypted block of every pixel.

    Returns:
        ``index`` (H*W,): encrypted pixel q (row-major) = plain pixel ``index[q]``;
        ``block_of`` (H*W,): the encrypted block that pixel q lies in.
    """
    height, width = image_size
    blocks = block_grid_index(height, width, block_size).reshape(len(block_perm), -1)
    local = dihedral_maps(block_size)[transform]  # (N, M*M)
    index = np.empty(height * width, dtype=np.int64)
    index[blocks] = np.take_along_axis(blocks[block_perm], local, axis=1)
    block_of = np.empty(height * width, dtype=np.int64)
    block_of[blocks] = np.arange(len(block_perm))[:, None]
    return index, block_of


class _BlockwiseEtC(IndexCipher):
    """Key handling shared by the colour and grayscale EtC versions (steps 1-3 of the module)."""

    #: whether the key has per-block colour shuffling (step 4)
    colour_shuffle: ClassVar[bool]

    @classmethod
    def scrambled_size(cls, image_size: tuple[int, int]) -> tuple[int, int]:
        """(H, W) of the image that is cut into blocks."""
        return image_size

    @classmethod
    def _fields(cls) -> set[str]:
        fields = {"block_perm", "transform", "negate"}
        return fields | {"channel_perm"} if cls.colour_shuffle else fields

    @classmethod
    def _draw(
        cls, image_size: tuple[int, int], block_size: int, rng: KeyRNG
    ) -> dict[str, np.ndarray]:
        grid_h, grid_w = check_block_grid(cls.scrambled_size(image_size), block_size)
        num_blocks = grid_h * grid_w
        material = {
            "block_perm": rng.permutation(num_blocks),
            "transform": rng.integers(_DIHEDRAL_CODES, num_blocks),
            "negate": rng.integers(2, num_blocks),
        }
        if cls.colour_shuffle:
            material["channel_perm"] = rng.integers(len(COLOUR_PERMUTATIONS), num_blocks)
        return material

    @classmethod
    def validate_key(cls, key: CipherKey) -> None:
        check_fields(key, cls._fields())
        try:
            grid_h, grid_w = check_block_grid(cls.scrambled_size(key.image_size), key.block_size)
        except ValueError as error:
            raise KeyFileError(f"key parameters do not fit together: {error}") from None
        num_blocks = grid_h * grid_w
        check_permutation(key["block_perm"], num_blocks, "block_perm")
        check_range(key["transform"], num_blocks, _DIHEDRAL_CODES, "transform")
        check_range(key["negate"], num_blocks, 2, "negate")
        if cls.colour_shuffle:
            check_range(key["channel_perm"], num_blocks, len(COLOUR_PERMUTATIONS), "channel_perm")

    @property
    def num_blocks(self) -> int:
        return int(self.key["block_perm"].size)

    def _check_rgb(self, channels: int) -> None:
        if channels != 3:
            raise CipherInputError(
                f"the {self.name} cipher works on RGB images (3 channels), got {channels}; "
                "convert the images to RGB first"
            )

    def _scramble(self) -> tuple[np.ndarray, np.ndarray]:
        return scramble_pixels(
            self.scrambled_size(self.image_size),
            self.block_size,
            self.key["block_perm"],
            self.key["transform"],
        )

    def key_space_bits(self) -> float:
        """log2 of N!·8^N·2^N (·6^N with colour shuffling)."""
        per_block = math.log2(_DIHEDRAL_CODES) + 1.0
        if self.colour_shuffle:
            per_block += math.log2(len(COLOUR_PERMUTATIONS))
        return log2_factorial(self.num_blocks) + self.num_blocks * per_block

    def is_patch_aligned(self, patch_size: int) -> bool:
        """Blocks move, so only patches that are exactly the blocks stay aligned."""
        return patch_size == self.block_size


@register_cipher
class EtCCipher(_BlockwiseEtC):
    """Colour block-wise EtC: scrambling, rotation/flip, NP and colour shuffling per block.

    Key fields (length N each, indexed by the encrypted block, row-major): ``block_perm``
    (permutation; encrypted block i = plain block ``block_perm[i]``), ``transform`` (0..7, the
    dihedral code of the module docstring), ``negate`` (0/1, NP of the whole block) and
    ``channel_perm`` (0..5, row of :data:`COLOUR_PERMUTATIONS`).

    Option ``etc_channel_mode``: ``"permute"`` (default) shuffles the colour components with a
    true permutation; ``"original"`` reproduces the reference code, whose in-place assignment
    duplicates a channel for 5 of the 6 codes (:data:`ORIGINAL_COLOUR_MAPS`). That variant made
    the published EtC accuracies but loses information, so its :meth:`decrypt` raises
    :class:`NotInvertibleError` and the instance's ``invertible`` is False.
    """

    name = "etc"
    colour_shuffle = True
    structure: str | None = Structure.ETC_BLOCKS

    def __init__(self, key: CipherKey) -> None:
        super().__init__(key)
        if self.channel_mode == "original":
            self.invertible = False  # per key; the class flags are the defaults
            self.structure = None
            self.structure_note = (
                "etc_channel_mode=original duplicates colour channels, so its pieces are not "
                "rotated/flipped/negated/colour-shuffled views of the plain blocks"
            )

    @classmethod
    def generate_key(
        cls,
        image_size: tuple[int, int],
        block_size: int,
        rng: KeyRNG,
        etc_channel_mode: str = "permute",
        **options: Any,
    ) -> CipherKey:
        reject_unknown_options(cls.name, options)
        if etc_channel_mode not in CHANNEL_MODES:
            raise InputError(
                f"etc_channel_mode must be one of {', '.join(CHANNEL_MODES)}, got {etc_channel_mode!r}"
            )
        material = cls._draw(image_size, block_size, rng)
        options = {"etc_channel_mode": etc_channel_mode}
        return CipherKey(cls.name, image_size, block_size, material, options)

    @classmethod
    def validate_key(cls, key: CipherKey) -> None:
        if key.options.get("etc_channel_mode", "permute") not in CHANNEL_MODES:
            raise KeyFileError(
                f"the key option etc_channel_mode must be one of {', '.join(CHANNEL_MODES)}"
            )
        super().validate_key(key)

    @property
    def channel_mode(self) -> str:
        return str(self.key.options.get("etc_channel_mode", "permute"))

    def build_plan(self, channels: int) -> GatherPlan:
        self._check_rgb(channels)
        pixel_index, block_of = self._scramble()
        table = COLOUR_PERMUTATIONS if self.channel_mode == "permute" else ORIGINAL_COLOUR_MAPS
        source_channel = table[self.key["channel_perm"][block_of]].T  # (3, H*W)
        index = source_channel * pixel_index.size + pixel_index
        negate = np.tile(self.key["negate"][block_of].astype(bool), channels)
        return GatherPlan(index.ravel(), negate, spatial=False)

    def decrypt(self, images: torch.Tensor) -> torch.Tensor:
        if not self.invertible:
            raise NotInvertibleError(
                "etc_channel_mode='original' duplicates colour channels, so its images cannot be "
                "decrypted; use etc_channel_mode='permute' for an invertible EtC"
            )
        return super().decrypt(images)


@register_cipher
class EtCGrayCipher(_BlockwiseEtC):
    """Grayscale-based EtC: R, G and B side by side as one H x 3W image, then per block
    scrambling, rotation/flip and NP (no colour shuffling).

    Input ``(B, 3, H, W)``; output ``(B, 1, H, 3W)`` with gray pixel (y, c*W + x) = plain value
    (c, y, x) before encryption. The blocks are those of the H x 3W image (N_g = 3N, row-major).
    Key fields (length N_g each, indexed by the encrypted block): ``block_perm``, ``transform``
    (0..7) and ``negate`` (0/1), as in :class:`EtCCipher`.
    """

    name = "etc_gray"
    colour_shuffle = False

    @classmethod
    def generate_key(
        cls, image_size: tuple[int, int], block_size: int, rng: KeyRNG, **options: Any
    ) -> CipherKey:
        reject_unknown_options(cls.name, options)
        return CipherKey(cls.name, image_size, block_size, cls._draw(image_size, block_size, rng))

    @classmethod
    def scrambled_size(cls, image_size: tuple[int, int]) -> tuple[int, int]:
        height, width = image_size
        return (height, 3 * width)

    def output_shape(self, channels: int) -> tuple[int, int, int]:
        return (1, *self.scrambled_size(self.image_size))

    def input_channels(self, encrypted: torch.Tensor) -> int:
        if encrypted.ndim != 4 or encrypted.shape[1] != 1:
            raise CipherInputError(
                f"etc_gray ciphertexts are (B, 1, H, 3W) batches, got shape {tuple(encrypted.shape)}"
            )
        return 3

    def build_plan(self, channels: int) -> GatherPlan:
        self._check_rgb(channels)
        height, width = self.image_size
        # value position (c, y, x) of the plain image behind every gray pixel (y, c*W + x)
        gray_column = np.arange(3 * width)
        to_plain = (
            (gray_column // width) * (height * width)
            + np.arange(height)[:, None] * width
            + gray_column % width
        ).ravel()
        pixel_index, block_of = self._scramble()
        negate = self.key["negate"][block_of].astype(bool)
        return GatherPlan(to_plain[pixel_index], negate, spatial=False)
