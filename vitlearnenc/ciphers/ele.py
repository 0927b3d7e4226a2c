"""ELE: extended learnable encryption (Madono, Tanaka, Onishi, Ogawa 2020), spec §1.3.

LE's nibble operation (:mod:`vitlearnenc.ciphers.le`) with a different key for every block, the
key indexed by the block's *source* (plain) position, followed by block location shuffling, as in
the reference code. (The paper's figure draws the shuffle first; both orders are the same scheme up
to relabelling the per-block keys.) One gather over nibbles plus one XOR per batch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vitlearnenc.ciphers.base import GatherPlan, Structure, check_block_grid, log2_factorial
from vitlearnenc.ciphers.keys import CipherKey, KeyRNG, check_permutation
from vitlearnenc.ciphers.nibbles import (
    NibbleCipher,
    check_rows_are_permutations,
    nibble_key_bits,
    nibble_plan,
)
from vitlearnenc.ciphers.registry import register_cipher
from vitlearnenc.ciphers.validation import (
    check_channels_option,
    check_fields,
    check_geometry,
    key_channels,
    reject_unknown_options,
)


@register_cipher
class ELECipher(NibbleCipher):
    """Madono's ELE: per-block LE keys, then block scrambling.

    Key fields (0-based gather maps):

    - ``perms``: N keys of length L = 2*C*M^2 laid end to end (length N*L); row b =
      ``perms[b*L:(b+1)*L]`` is the LE key of *plain* block b (row-major), with the reversal mask
      derived from it as in LE (position j reversed iff ``row[j] > C*M^2``);
    - ``block_perm``: permutation of N; encrypted block i = LE-transformed plain block
      ``block_perm[i]``.

    Options: ``channels`` (default 3). Float input is quantised to 8 bits (``round(255 * x)``)
    and returned as ``value / 255``.
    """

    name = "ele"
    structure: str | None = Structure.PER_BLOCK_NIBBLE_MAPS

    @classmethod
    def generate_key(
        cls,
        image_size: tuple[int, int],
        block_size: int,
        rng: KeyRNG,
        channels: int = 3,
        **options: Any,
    ) -> CipherKey:
        reject_unknown_options(cls.name, options)
        grid_h, grid_w = check_block_grid(image_size, block_size)
        check_channels_option(channels)
        num_blocks = grid_h * grid_w
        length = 2 * channels * block_size**2
        material = {
            "perms": np.concatenate([rng.permutation(length) for _ in range(num_blocks)]),
            "block_perm": rng.permutation(num_blocks),
        }
        return CipherKey(cls.name, image_size, block_size, material, {"channels": int(channels)})

    @classmethod
    def validate_key(cls, key: CipherKey) -> None:
        check_fields(key, {"perms", "block_perm"})
        grid_h, grid_w = check_geometry(key)
        num_blocks = grid_h * grid_w
        length = 2 * key_channels(key) * key.block_size**2
        check_rows_are_permutations(key["perms"], num_blocks, length, "perms")
        check_permutation(key["block_perm"], num_blocks, "block_perm")

    @property
    def num_blocks(self) -> int:
        return int(self.key["block_perm"].size)

    def build_plan(self, channels: int) -> GatherPlan:
        self.check_channels(channels)
        perms = np.asarray(self.key["perms"]).reshape(self.num_blocks, -1)
        return nibble_plan(
            self.image_size, self.block_size, channels, perms, self.key["block_perm"]
        )

    def key_space_bits(self) -> float:
        """log2 of {(L)!·2^L}^N·N! (≈10^11538 for RGB, M = 4, N = 64), the published count."""
        length = int(self.key["perms"].size) // self.num_blocks
        return self.num_blocks * nibble_key_bits(length) + log2_factorial(self.num_blocks)

    def is_patch_aligned(self, patch_size: int) -> bool:
        """Blocks move, so only patches that are exactly the blocks stay aligned."""
        return patch_size == self.block_size
