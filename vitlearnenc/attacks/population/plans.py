"""Estimated decryptions as value maps: a gather over an image's values plus a negation mask.

Every shared-key cipher attacked here (proposed, EtC, LE/ELE on nibbles) is undone by such a
map, so a population attack's key estimate is turned into one, applied to any number of
ciphertexts in batches, composed with a global correction, and compared with the true
decryption map value by value (the key-recovery score). Block *variants* follow
:func:`vitlearnenc.attacks.jigsaw_etc.piece_variants`: variant ``v = (d * 2 + negated) * C! +
order`` is the dihedral code d (``np.rot90`` by d % 4 quarter turns, then for d >= 4 the columns
reversed), the negation, then the channel order (output channel c = input channel
``order[c]``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch

DIHEDRAL = 8


def channel_orders(channels: int) -> np.ndarray:
    """``(C!, C)``: the channel orders in :func:`itertools.permutations` order."""
    return np.array(list(itertools.permutations(range(channels))), dtype=np.int64)


def split_variant(variant: np.ndarray, channels: int) -> tuple[np.ndarray, ...]:
    """(dihedral code, negated, order index) of variant numbers."""
    orders = len(channel_orders(channels))
    variant = np.asarray(variant)
    return variant // (2 * orders), (variant // orders) % 2, variant % orders


def transform_array(array: np.ndarray, dihedral: int, order: np.ndarray) -> np.ndarray:
    """Apply a dihedral code and a channel order to ``(..., C, M, M)`` (no negation)."""
    turned = np.rot90(array, dihedral % 4, axes=(-2, -1))
    if dihedral >= 4:
        turned = turned[..., ::-1]
    return np.ascontiguousarray(turned[..., order, :, :])


@dataclass(frozen=True, repr=False, eq=False)
class ValueMap:
    """``out[q] = in[index[q]]`` over the flattened ``(C, H, W)`` values, then ``255 - v``
    where ``negate[q]``. Key material when it is right: never logged (repr shows the shape)."""

    index: np.ndarray
    negate: np.ndarray
    shape: tuple[int, int, int]

    @classmethod
    def identity(cls, shape: tuple[int, int, int]) -> ValueMap:
        size = int(np.prod(shape))
        return cls(np.arange(size), np.zeros(size, dtype=bool), shape)

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` uint8 -> the mapped images, same device."""
        index = torch.as_tensor(self.index, device=images.device)
        mask = torch.as_tensor(self.negate.astype(np.uint8) * 255, device=images.device)
        out = images.flatten(1).index_select(1, index) ^ mask
        return out.reshape(images.shape[0], *self.shape)

    def then(self, other: ValueMap) -> ValueMap:
        """The map that applies ``self`` and then ``other``."""
        return ValueMap(
            self.index[other.index], self.negate[other.index] ^ other.negate, other.shape
        )

    def __repr__(self) -> str:
        return f"ValueMap(shape={self.shape})"


def block_variant_map(
    shape: tuple[int, int, int],
    block_size: int,
    positions: np.ndarray,
    variants: np.ndarray,
) -> ValueMap:
    """Put encrypted block i, seen through variant ``variants[i]``, at row-major block position
    ``positions[i]`` (a restoration in the solver's frame)."""
    channels, height, width = shape
    grid_h, grid_w = height // block_size, width // block_size
    values = np.arange(channels * height * width).reshape(channels, grid_h, block_size, grid_w, -1)
    pieces = values.transpose(1, 3, 0, 2, 4).reshape(grid_h * grid_w, channels, block_size, -1)
    dihedral, negated, order = split_variant(variants, channels)
    orders = channel_orders(channels)
    moved = np.empty_like(pieces)
    for code in range(DIHEDRAL):
        for which, chosen in enumerate(orders):
            members = np.flatnonzero((dihedral == code) & (order == which))
            if members.size:
                moved[members] = transform_array(pieces[members], code, chosen)
    out = np.empty_like(moved)
    out[positions] = moved
    negate = np.broadcast_to(negated[np.argsort(positions)][:, None, None, None], out.shape)
    layout = (grid_h, grid_w, channels, block_size, block_size)
    index = out.reshape(layout).transpose(2, 0, 3, 1, 4).reshape(-1)
    mask = np.ascontiguousarray(negate).reshape(layout).transpose(2, 0, 3, 1, 4).reshape(-1)
    return ValueMap(index, mask.astype(bool), shape)


def global_variant_map(shape: tuple[int, int, int], variant: int) -> ValueMap:
    """The whole image seen through one variant (square images, or shape-keeping codes)."""
    channels = shape[0]
    dihedral, negated, order = (int(v) for v in split_variant(np.array(variant), channels))
    values = np.arange(int(np.prod(shape))).reshape(shape)
    index = transform_array(values, dihedral, channel_orders(channels)[order])
    if index.shape != shape:
        raise ValueError(f"variant {variant} does not keep the image shape {shape}")
    return ValueMap(index.reshape(-1), np.full(index.size, bool(negated)), shape)


def shape_keeping_variants(shape: tuple[int, int, int]) -> np.ndarray:
    """Variant numbers whose dihedral code keeps an image of ``shape`` (all for squares)."""
    channels, height, width = shape
    per_code = 2 * len(channel_orders(channels))
    codes = range(DIHEDRAL) if height == width else (0, 2, 4, 6)
    return np.concatenate([np.arange(code * per_code, (code + 1) * per_code) for code in codes])


def block_sources(value_map: ValueMap, block_size: int) -> np.ndarray:
    """``(N,)``: the input block that every output block (row-major) draws its first value from."""
    channels, height, width = value_map.shape
    grid_w = width // block_size
    first = value_map.index.reshape(channels, height, width)[0, ::block_size, ::block_size].reshape(
        -1
    )
    pixel = first % (height * width)
    return (pixel // width // block_size) * grid_w + (pixel % width) // block_size


def block_agreement(estimate: ValueMap, truth: ValueMap, block_size: int) -> np.ndarray:
    """``(N,)`` bool: output blocks whose every value (source and negation) matches ``truth``."""
    channels, height, width = truth.shape
    grid_h, grid_w = height // block_size, width // block_size
    same = (estimate.index == truth.index) & (estimate.negate == truth.negate)
    blocks = same.reshape(channels, grid_h, block_size, grid_w, block_size)
    return blocks.all(axis=(0, 2, 4)).reshape(-1)
