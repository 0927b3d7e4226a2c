"""The nibble engine shared by LE and ELE (Tanaka 2018; Madono et al. 2020).

Both ciphers work on 4-bit values: every byte of a block is split into its low and high nibble,
some nibbles are reversed (``v -> 15 - v``), the nibbles are permuted, the same positions are
reversed again and the nibbles are merged back into bytes. Per key this is one gather over the
nibbles of the whole image plus one XOR with 15, so :class:`NibbleCipher` stores it as a
:class:`~vitlearnenc.ciphers.base.GatherPlan` over nibble positions and applies it to a batch with
one gather and one XOR (:class:`~vitlearnenc.ciphers.fastpath.NibbleKernel`).

Nibble vector of an image ``(C, H, W)``: ``nib[p * C*H*W + c*H*W + y*W + x]`` is the low (p = 0)
or high (p = 1) nibble of the byte at (c, y, x); plans index this ``2*C*H*W`` vector.
"""

from __future__ import annotations

import numpy as np
import torch

from vitlearnenc.ciphers.base import GatherPlan, IndexCipher, block_grid_index, log2_factorial
from vitlearnenc.ciphers.fastpath import Kernel, NibbleKernel
from vitlearnenc.ciphers.keys import KeyFileError, KeyMismatchError, check_range


def reversal_mask(perm: np.ndarray) -> np.ndarray:
    """LE's negative-positive mask, derived from the key itself (Tanaka's ``BlockScramble``).

    Position j of the six-channel block is reversed iff ``perm[j] > L / 2`` with L = len(perm) and
    0-based key values, i.e. ``perm[j] > 3B^2`` for RGB: values L/2+1 .. L-1, so L/2 - 1 of the
    L positions are reversed (47 of 96 for B = 4). ``perm`` may be ``(L,)`` or ``(N, L)``.
    """
    return perm > perm.shape[-1] // 2


def block_nibble_positions(
    image_size: tuple[int, int], block_size: int, channels: int
) -> np.ndarray:
    """Nibble-vector positions of every block's six-channel vector, shape ``(N, 2*C*M^2)``.

    Entry [b, j] is where nibble j of block b lives in the image's nibble vector (see the module
    docstring). Within a block, bytes are flattened in (row, column, channel) order and the vector
    holds all low nibbles first, then all high nibbles, as in the reference code.
    """
    height, width = image_size
    plane = height * width
    pixels = block_grid_index(height, width, block_size).reshape(-1, block_size * block_size)
    channel_offsets = np.arange(channels, dtype=np.int64) * plane
    values = (pixels[:, :, None] + channel_offsets).reshape(pixels.shape[0], -1)  # (N, C*M^2)
    return np.concatenate([values, values + channels * plane], axis=1)


def nibble_plan(
    image_size: tuple[int, int],
    block_size: int,
    channels: int,
    perms: np.ndarray,
    block_perm: np.ndarray | None = None,
) -> GatherPlan:
    """The LE/ELE transform as one gather + reversal mask over the image's nibble vector.

    Args:
        perms: ``(N, L)`` per-source-block keys (L = 2*C*M^2); row b encrypts plain block b.
        block_perm: ``(N,)`` block shuffle applied afterwards (encrypted block i = transformed
            plain block ``block_perm[i]``); None keeps the block positions (LE).

    Returns:
        A non-spatial plan: ``out[g(i, j)] = in[g(s, k_s[j])] XOR 15*(rev_s[j] != rev_s[k_s[j]])``
        with s = ``block_perm[i]``, which equals reverse -> permute -> reverse of the spec.
    """
    positions = block_nibble_positions(image_size, block_size, channels)
    num_blocks = positions.shape[0]
    sources = np.arange(num_blocks) if block_perm is None else np.asarray(block_perm)
    rev = reversal_mask(perms)
    index = np.empty(positions.size, dtype=np.int64)
    negate = np.empty(positions.size, dtype=bool)
    for target, source in enumerate(sources):
        key = perms[source]
        index[positions[target]] = positions[source][key]
        negate[positions[target]] = rev[source] != rev[source][key]
    return GatherPlan(index, negate, spatial=False)


def nibble_key_bits(length: int) -> float:
    """log2 of the published LE key space (L)!·2^L for one block key of length L.

    The 2^L factor counts an independent reversal mask, as Tanaka and Madono do; in the reference
    code (and here) the mask is derived from the permutation, so the keys that actually differ
    number only L!.
    """
    return log2_factorial(length) + length


def check_rows_are_permutations(values: np.ndarray, rows: int, length: int, what: str) -> None:
    """Raise :class:`KeyFileError` unless ``values`` is ``rows`` permutations of ``range(length)``
    laid end to end (the message names the field, never its content)."""
    check_range(values, rows * length, length, what)
    ordered = np.sort(values.reshape(rows, length), axis=1)
    if not (ordered == np.arange(length)).all():
        raise KeyFileError(
            f"{what} must hold {rows} permutations of 0..{length - 1} (repeated values)"
        )


class NibbleCipher(IndexCipher):
    """An :class:`IndexCipher` whose plan indexes nibbles instead of bytes.

    Float input (0..1) is quantised to 8 bits with ``round(255 * x)`` (for images that came from
    uint8 this equals the reference code's ``(255 * x).astype(uint8)``) and returned as
    ``value / 255`` in the input's dtype; uint8 input is exact. Options: ``channels`` (the key's
    colour channels, default 3).
    """

    @property
    def channels(self) -> int:
        return int(self.key.options.get("channels", 3))

    def check_channels(self, channels: int) -> None:
        """Raise :class:`KeyMismatchError` if the images do not have the key's channel count."""
        if channels != self.channels:
            raise KeyMismatchError(
                f"this {self.name} key was made for {self.channels}-channel images, got "
                f"{channels}; make a key with channels={channels}"
            )

    def _build_kernel(
        self, plan: GatherPlan, channels: int, device: torch.device, dtype: torch.dtype
    ) -> Kernel:
        return NibbleKernel.from_plan(plan, device)

    def _apply(
        self, images: torch.Tensor, direction: str, channels: int, out_shape: tuple[int, ...]
    ) -> torch.Tensor:
        self.check_channels(channels)
        return super()._apply(images, direction, channels, out_shape)

    def _apply_reference(
        self, images: torch.Tensor, direction: str, channels: int, out_shape: tuple[int, ...]
    ) -> torch.Tensor:
        """The nibble plan applied literally: split every byte into two nibbles, one
        ``index_select`` over the nibble vector, XOR, merge."""
        batch = images.shape[0]
        plan, index, _ = self._device_plan(direction, channels, images.device, torch.uint8)
        negate = plan.negate if plan.negate is not None else np.zeros(plan.index.size, bool)
        mask = torch.as_tensor(negate.astype(np.uint8) * 15, device=images.device)
        if images.dtype == torch.uint8:
            values = images
        else:
            values = (images * 255).round().clamp(0, 255).to(torch.uint8)
        nibbles = torch.stack([values & 15, values >> 4], dim=1).flatten(1)
        nibbles = nibbles.index_select(1, index) ^ mask
        low, high = nibbles.unflatten(1, (2, -1)).unbind(1)
        merged = (low | (high << 4)).reshape(batch, *out_shape)
        if images.dtype == torch.uint8:
            return merged
        return merged.to(images.dtype) / 255
