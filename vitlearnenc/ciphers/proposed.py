"""The proposed cipher of Qi, MaungMaung, Kinoshita and Kiya (2022).

Block scrambling with key K1 (``block_perm``) followed by pixel shuffling with one shared key K2
(``pixel_perm``) inside each of the four (M/2)x(M/2) sub-blocks of every block:

1. cut the image into N blocks of M x M (M = the ViT patch size), numbered row-major;
2. encrypted block i = plain block ``block_perm[i]``;
3. cut every block into four sub-blocks (TL, TR, BL, BR);
4. in every sub-block, flattened row-major, encrypted pixel k = plain pixel ``pixel_perm[k]``;
   the RGB triplet of a pixel moves as a unit (``channel_mix=False``, the paper's key space);
   with ``channel_mix=True`` the C*(M/2)^2 values of a sub-block, flattened channel-major,
   are permuted instead;
5. reassemble. Both steps are position maps, so the whole cipher is one gather.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vitlearnenc.ciphers.base import (
    GatherPlan,
    IndexCipher,
    Structure,
    block_grid_index,
    check_block_grid,
    log2_factorial,
)
from vitlearnenc.ciphers.keys import CipherKey, KeyFileError, KeyRNG, check_permutation
from vitlearnenc.ciphers.registry import register_cipher
from vitlearnenc.ciphers.validation import check_fields, check_geometry, reject_unknown_options
from vitlearnenc.errors import InputError


@register_cipher
class ProposedCipher(IndexCipher):
    """Block scrambling (K1) + shared sub-block pixel shuffling (K2).

    Key fields: ``block_perm`` (length N = HW/M^2) and ``pixel_perm`` (length (M/2)^2, or
    C*(M/2)^2 with ``channel_mix``). Options: ``channel_mix`` (bool, default False) and
    ``channels`` (needed only with ``channel_mix``; default 3).
    """

    name = "proposed"
    #: with or without ``channel_mix``: one in-block value permutation shared by every block
    absorbable_by_vit = True
    requires_patch_alignment = True
    structure: str | None = Structure.PIXEL_SHUFFLED_BLOCKS

    def __init__(self, key: CipherKey) -> None:
        super().__init__(key)
        if self.channel_mix:  # per key; the class default is the channel-tied shuffle
            self.structure = None
            self.structure_note = (
                "channel_mix=true shuffles values across colour channels, so blocks are not "
                "channel-tied pixel shuffles of the plain blocks"
            )

    @classmethod
    def generate_key(
        cls,
        image_size: tuple[int, int],
        block_size: int,
        rng: KeyRNG,
        channel_mix: bool = False,
        channels: int = 3,
        **options: Any,
    ) -> CipherKey:
        reject_unknown_options(cls.name, options)
        grid_h, grid_w = check_block_grid(image_size, block_size)
        _check_even(block_size)
        sub = block_size // 2
        pixel_len = sub * sub * (channels if channel_mix else 1)
        material = {
            "block_perm": rng.permutation(grid_h * grid_w),
            "pixel_perm": rng.permutation(pixel_len),
        }
        key_options: dict[str, Any] = {"channel_mix": bool(channel_mix)}
        if channel_mix:
            key_options["channels"] = int(channels)
        return CipherKey(cls.name, image_size, block_size, material, key_options)

    @classmethod
    def validate_key(cls, key: CipherKey) -> None:
        check_fields(key, {"block_perm", "pixel_perm"})
        grid_h, grid_w = check_geometry(key)
        try:
            _check_even(key.block_size)
        except ValueError as error:
            raise KeyFileError(f"key parameters do not fit together: {error}") from None
        sub = key.block_size // 2
        pixel_len = (
            sub
            * sub
            * (int(key.options.get("channels", 3)) if key.options.get("channel_mix") else 1)
        )
        check_permutation(key["block_perm"], grid_h * grid_w, "block_perm")
        check_permutation(key["pixel_perm"], pixel_len, "pixel_perm")

    @property
    def channel_mix(self) -> bool:
        return bool(self.key.options.get("channel_mix", False))

    @property
    def num_blocks(self) -> int:
        return int(self.key["block_perm"].size)

    def build_plan(self, channels: int) -> GatherPlan:
        height, width = self.image_size
        size, sub = self.block_size, self.block_size // 2
        n = self.num_blocks
        blocks = block_grid_index(height, width, size)  # (N, M, M) plain positions

        def as_subblocks(block_positions: np.ndarray) -> np.ndarray:
            # (N, M, M) -> (N, 4, s*s): the four sub-blocks, each flattened row-major
            return (
                block_positions.reshape(n, 2, sub, 2, sub)
                .transpose(0, 1, 3, 2, 4)
                .reshape(n, 4, sub * sub)
            )

        target = as_subblocks(blocks)  # where encrypted pixels go
        source = as_subblocks(blocks[self.key["block_perm"]])  # K1: plain block per slot
        if not self.channel_mix:
            index = np.empty(height * width, dtype=np.int64)
            index[target.ravel()] = source[..., self.key["pixel_perm"]].ravel()
            return GatherPlan(index, None, spatial=True)
        expected = int(self.key.options.get("channels", 3))
        if channels != expected:
            raise KeyFileError(
                f"this channel-mixing key was made for {expected}-channel images, got {channels}"
            )
        plane = height * width
        channel_offsets = (np.arange(channels, dtype=np.int64) * plane)[:, None]

        def with_channels(positions: np.ndarray) -> np.ndarray:
            # (N, 4, s*s) pixel positions -> (N, 4, C*s*s) value positions, channel-major
            return (positions[:, :, None, :] + channel_offsets).reshape(n, 4, channels * sub * sub)

        index = np.empty(channels * plane, dtype=np.int64)
        index[with_channels(target).ravel()] = with_channels(source)[
            ..., self.key["pixel_perm"]
        ].ravel()
        return GatherPlan(index, None, spatial=False)

    def key_space_bits(self) -> float:
        return log2_factorial(self.num_blocks) + log2_factorial(int(self.key["pixel_perm"].size))

    def is_patch_aligned(self, patch_size: int) -> bool:
        return patch_size == self.block_size


def _check_even(block_size: int) -> None:
    if block_size % 2:
        raise InputError(
            f"the proposed cipher splits each block into four sub-blocks, so the block size must "
            f"be even, got {block_size}"
        )
