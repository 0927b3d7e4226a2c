"""LE: learnable image encryption (Tanaka, ICCE-TW 2018), spec §1.2.

Per M x M block, with ONE key shared by every block (so block positions are kept):

1. flatten the block in (row, column, channel) order into C*M^2 bytes;
2. split every byte into its low and high nibble: a 2*C*M^2 vector, low nibbles first (the
   "six-channel block" for RGB);
3. reverse (``v -> 15 - v``) the nibbles at the key's mask positions, permute them with the key
   (``out[j] = in[perm[j]]``), reverse the mask positions again;
4. merge the nibbles back into bytes and un-flatten.

The whole image is one gather over nibbles plus one XOR (see :mod:`vitlearnenc.ciphers.nibbles`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vitlearnenc.ciphers.base import GatherPlan, Structure, check_block_grid
from vitlearnenc.ciphers.keys import CipherKey, KeyRNG, check_permutation
from vitlearnenc.ciphers.nibbles import NibbleCipher, nibble_key_bits, nibble_plan
from vitlearnenc.ciphers.registry import register_cipher
from vitlearnenc.ciphers.validation import (
    check_channels_option,
    check_fields,
    check_geometry,
    key_channels,
    reject_unknown_options,
)


@register_cipher
class LECipher(NibbleCipher):
    """Tanaka's LE: nibble split, keyed reversal + permutation, one key for all blocks.

    Key field: ``perm``, a permutation of 2*C*M^2 (96 for RGB, M = 4), 0-based gather map over the
    block's nibble vector: encrypted nibble j = (masked) plain nibble ``perm[j]``. The reversal
    mask is not stored: position j is reversed iff ``perm[j] > C*M^2`` (0-based values, strict
    ``>``, exactly the reference code's ``key > key.size / 2``), so C*M^2 - 1 positions are
    reversed. Options: ``channels`` (default 3).

    Float input is quantised to 8 bits (``round(255 * x)``) and returned as ``value / 255``.
    """

    name = "le"
    structure: str | None = Structure.SHARED_NIBBLE_PERMUTATION

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
        check_block_grid(image_size, block_size)
        check_channels_option(channels)
        material = {"perm": rng.permutation(2 * channels * block_size**2)}
        return CipherKey(cls.name, image_size, block_size, material, {"channels": int(channels)})

    @classmethod
    def validate_key(cls, key: CipherKey) -> None:
        check_fields(key, {"perm"})
        check_geometry(key)
        check_permutation(key["perm"], 2 * key_channels(key) * key.block_size**2, "perm")

    def build_plan(self, channels: int) -> GatherPlan:
        self.check_channels(channels)
        perm = np.asarray(self.key["perm"])
        num_blocks = int(np.prod(check_block_grid(self.image_size, self.block_size)))
        perms = np.broadcast_to(perm, (num_blocks, perm.size))
        return nibble_plan(self.image_size, self.block_size, channels, perms)

    def key_space_bits(self) -> float:
        """log2 of the published (2CM^2)!·2^(2CM^2) (≈10^179 for RGB, M = 4); see
        :func:`~vitlearnenc.ciphers.nibbles.nibble_key_bits` for why it overcounts."""
        return nibble_key_bits(int(self.key["perm"].size))

    def is_patch_aligned(self, patch_size: int) -> bool:
        """Blocks stay in place, so any patch made of whole blocks is aligned."""
        height, width = self.image_size
        return (
            patch_size > 0
            and patch_size % self.block_size == 0
            and height % patch_size == 0
            and width % patch_size == 0
        )
