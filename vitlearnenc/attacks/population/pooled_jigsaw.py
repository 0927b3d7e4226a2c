"""Pooled block puzzles: the jigsaw attack with the victim corpus as evidence (spec §2.0, §2.4).

The per-image jigsaw (:mod:`vitlearnenc.attacks.jigsaw`) solves every ciphertext's puzzle
alone, but K1 is the same for every image of the key. Here the puzzle is solved once, from
seam costs summed over the whole corpus (:mod:`~vitlearnenc.attacks.population.edges`), and the
solution is applied to every ciphertext:

- :func:`pooled_jigsaw` (proposed cipher): K2 from the pooled position correlations of
  :func:`vitlearnenc.attacks.jigsaw.estimate_pixel_perm` (accumulated chunk by chunk), then K1
  from the pooled seams of the K2-undone corpus with the same greedy best-buddy placement;
- :func:`pooled_etc_jigsaw` (EtC, and any cipher that leaves every block a rotated / flipped /
  negated / colour-shuffled plain block): the greedy placement over (block, variant)
  candidates of :mod:`vitlearnenc.attacks.jigsaw_etc` with pooled costs; the one global variant
  that no seam can see is chosen by the corpus' pixel moments against public plain images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vitlearnenc.attacks.jigsaw import (
    _compatibility,
    _decrypt,
    _open_slots,
    _place,
    _position_costs,
    pixel_perm_from_costs,
)
from vitlearnenc.attacks.population.corpus import Corpus, CorpusError, as_corpus
from vitlearnenc.attacks.population.edges import (
    OPPOSITE,
    EdgeStats,
    accumulate_edge_stats,
)
from vitlearnenc.attacks.population.plans import (
    DIHEDRAL,
    ValueMap,
    block_variant_map,
    channel_orders,
    global_variant_map,
    shape_keeping_variants,
    split_variant,
    transform_array,
)
from vitlearnenc.errors import InputError

_EXHAUSTIVE_LIMIT = 400_000


# ------------------------------------------------------------------------ proposed cipher


@dataclass(frozen=True, repr=False, eq=False)
class PooledJigsawResult:
    """Key estimate of :func:`pooled_jigsaw` (key material: repr shows no values).

    Attributes:
        block_perm: ``(N,)`` estimated K1 (encrypted block i = plain block ``block_perm[i]``).
        pixel_perm: ``((M/2)^2,)`` estimated K2.
        image_size: (H, W); ``block_size``: M; ``images``: the corpus size it was solved from.
    """

    block_perm: np.ndarray
    pixel_perm: np.ndarray
    image_size: tuple[int, int]
    block_size: int
    images: int

    def decrypt(self, encrypted: torch.Tensor) -> torch.Tensor:
        """Undo the estimated key on ``(B, C, H, W)`` uint8 ciphertexts."""
        return _decrypt(encrypted, self.block_perm, self.pixel_perm, self.block_size)

    def __repr__(self) -> str:
        return (
            f"PooledJigsawResult(images={self.images}, blocks={self.block_perm.size}, "
            f"block_size={self.block_size})"
        )


def pooled_jigsaw(corpus: Corpus | torch.Tensor, block_size: int) -> PooledJigsawResult:
    """Ciphertext-only key recovery for the proposed cipher from a whole corpus.

    Two passes over the corpus: K2 from pooled position differences, then K1 from pooled
    seams of the K2-undone ciphertexts. Memory does not depend on the corpus size.

    Args:
        corpus: ciphertexts of one key (:class:`Corpus`, tensor, batches or folder).
        block_size: M (even).
    """
    corpus = as_corpus(corpus)
    _, height, width = corpus.image_shape
    if block_size < 2 or block_size % 2 or height % block_size or width % block_size:
        raise InputError(
            f"the proposed cipher needs an even block size dividing {height}x{width}, "
            f"got {block_size}"
        )
    pixel_perm = pooled_pixel_perm(corpus, block_size)
    identity_blocks = np.arange((height // block_size) * (width // block_size))
    unshuffled = corpus.map(lambda c: _decrypt(c, identity_blocks, pixel_perm, block_size))
    block_perm = solve_fixed_puzzle(accumulate_edge_stats(unshuffled, block_size))
    return PooledJigsawResult(block_perm, pixel_perm, (height, width), block_size, len(corpus))


def pooled_pixel_perm(corpus: Corpus, block_size: int) -> np.ndarray:
    """K2 from position differences pooled over the corpus (as
    :func:`~vitlearnenc.attacks.jigsaw.estimate_pixel_perm`, whose costs are means, so the
    chunk means weighted by chunk size are the corpus means)."""
    side = block_size // 2
    if side == 1:
        return np.zeros(1, dtype=np.int64)
    totals: dict[str, np.ndarray] = {}
    images = 0
    for chunk in corpus:
        for name, cost in _position_costs(chunk, block_size).items():
            totals[name] = totals.get(name, 0.0) + cost * chunk.shape[0]
        images += chunk.shape[0]
    costs = {name: total / images for name, total in totals.items()}
    return pixel_perm_from_costs(costs, side)


def solve_fixed_puzzle(stats: EdgeStats) -> np.ndarray:
    """K1 from pooled seams of unrotated blocks: greedy best-buddy placement
    (:func:`vitlearnenc.attacks.jigsaw._place`). Returns ``(N,)`` positions = ``block_perm``."""
    if stats.num_blocks == 1:
        return np.zeros(1, dtype=np.int64)
    compatibility, buddies = _compatibility(stats.fixed_orientation_costs())
    return _place(compatibility, buddies, stats.grid)


# ---------------------------------------------------------------------------- EtC-style


@dataclass(frozen=True, repr=False, eq=False)
class PooledVariantResult:
    """Estimate of :func:`pooled_etc_jigsaw`: where every encrypted block goes and how it is
    turned, negated and recoloured (key material: repr shows no values).

    Attributes:
        value_map: the estimated decryption (:class:`ValueMap`), global variant included.
        block_size: M; ``images``: the corpus size it was solved from.
    """

    value_map: ValueMap
    block_size: int
    images: int

    def decrypt(self, encrypted: torch.Tensor) -> torch.Tensor:
        """Apply the estimated decryption to ``(B, C, H, W)`` uint8 ciphertexts."""
        return self.value_map.apply(encrypted)

    def __repr__(self) -> str:
        return (
            f"PooledVariantResult(images={self.images}, shape={self.value_map.shape}, "
            f"block_size={self.block_size})"
        )


def pooled_etc_jigsaw(
    corpus: Corpus | torch.Tensor,
    public: Corpus | torch.Tensor,
    block_size: int,
) -> PooledVariantResult:
    """Ciphertext-only key recovery for block-wise EtC from a whole corpus.

    Args:
        corpus: ciphertexts of one key.
        public: public plain images of the same domain and size (not the victims); their
            per-pixel mean and spread pick the global rotation / NP / colour order.
        block_size: M.
    """
    corpus, public = as_corpus(corpus), as_corpus(public)
    shape = corpus.image_shape
    if public.image_shape != shape:
        raise InputError(
            f"public images {public.image_shape} must have the ciphertexts' shape {shape}"
        )
    stats = accumulate_edge_stats(corpus, block_size)
    positions, variants = solve_variant_puzzle(stats)
    solved = block_variant_map(shape, block_size, positions, variants)
    fixed = solved.then(choose_global_variant(corpus.map(solved.apply), public))
    return PooledVariantResult(fixed, block_size, len(corpus))


class _VariantCosts:
    """Pooled seam costs of a placed (block, variant) against every (block, variant)."""

    def __init__(self, stats: EdgeStats) -> None:
        self.stats = stats
        channels = stats.channels
        self.orders = channel_orders(channels)
        self.per_piece = DIHEDRAL * 2 * len(self.orders)
        self.sides, self.reversed = dihedral_sides(stats.block_size)
        count = stats.num_blocks
        variants = np.arange(self.per_piece)
        self.dihedral, self.negated, self.order = split_variant(variants, channels)
        self.owner = np.repeat(np.arange(count), self.per_piece)
        self.variant = np.tile(variants, count)

    def around(self, piece: int, variant: int) -> np.ndarray:
        """``(4, N * V)``: cost of every candidate right of / below / left of / above ``piece``
        shown as ``variant``; ``inf`` for the piece's own variants."""
        stats = self.stats
        d, n, o = self.dihedral[variant], self.negated[variant], self.order[variant]
        cand_d = self.dihedral[self.variant]
        rows = []
        for direction in range(4):
            facing = OPPOSITE[direction]
            x = stats.index(piece, self.sides[d, direction], self.orders[o])
            y = stats.index(
                self.owner[:, None],
                self.sides[cand_d, facing][:, None],
                self.orders[self.order[self.variant]],
            )
            rho = self.reversed[d, direction] ^ self.reversed[cand_d, facing]
            sign = (1 - 2 * n) * (1 - 2 * self.negated[self.variant])
            rows.append(stats.seam_cost(x[None], y, rho, sign))
        costs = np.stack(rows)
        costs[:, self.owner == piece] = np.inf
        return costs


def dihedral_sides(block_size: int) -> tuple[np.ndarray, np.ndarray]:
    """For every dihedral code d and direction r: the raw side whose line becomes the
    transformed block's edge in direction r, and whether it is read reversed. ``(8, 4)`` each."""
    labels = np.arange(block_size * block_size).reshape(1, block_size, block_size)

    def lines(grid: np.ndarray) -> list[np.ndarray]:
        return [grid[:, -1], grid[-1, :], grid[:, 0], grid[0, :]]

    raw = lines(labels[0])
    sides = np.zeros((DIHEDRAL, 4), dtype=np.int64)
    flipped = np.zeros((DIHEDRAL, 4), dtype=np.int64)
    for code in range(DIHEDRAL):
        turned = transform_array(labels, code, np.array([0]))[0]
        for direction, line in enumerate(lines(turned)):
            for side, candidate in enumerate(raw):
                if np.array_equal(line, candidate) or np.array_equal(line, candidate[::-1]):
                    sides[code, direction] = side
                    flipped[code, direction] = int(not np.array_equal(line, candidate))
    return sides, flipped


def solve_variant_puzzle(stats: EdgeStats) -> tuple[np.ndarray, np.ndarray]:
    """Greedy placement of (block, variant) pieces with pooled costs (the growth rule of
    :func:`vitlearnenc.attacks.jigsaw_etc.solve_etc_puzzle`: fill the open slot whose best
    piece beats the runner-up piece most clearly).

    Returns:
        ``positions`` ``(N,)`` (row-major grid position of every encrypted block) and
        ``variants`` ``(N,)``, right up to one global variant.
    """
    grid, count = stats.grid, stats.num_blocks
    costs_of = _VariantCosts(stats)
    per_piece = costs_of.per_piece
    if count == 1:
        return np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64)
    canvas = np.full((2 * grid[0] + 1, 2 * grid[1] + 1), -1, dtype=np.int64)
    chosen = np.full(count, -1, dtype=np.int64)
    costs = np.zeros((count, 4, count * per_piece))
    first = _most_confident_piece(costs_of, count)
    box = [grid[0], grid[0], grid[1], grid[1]]

    def place(piece: int, variant: int, slot: tuple[int, int]) -> None:
        canvas[slot] = piece
        chosen[piece] = variant
        costs[piece] = costs_of.around(piece, variant)

    place(first, 0, (grid[0], grid[1]))
    for _ in range(count - 1):
        slots, neighbours = _open_slots(canvas, box, grid)
        valid = neighbours >= 0
        owners = np.where(valid, neighbours, 0)
        around = costs[owners, np.broadcast_to(OPPOSITE, owners.shape)]  # (S, 4, K)
        total = np.where(valid[..., None], around, 0.0).sum(axis=1) / valid.sum(axis=1)[:, None]
        total[:, chosen[costs_of.owner] >= 0] = np.inf
        best_per_piece = total.reshape(len(slots), count, per_piece).min(axis=2)
        ranked = np.sort(best_per_piece, axis=1)
        confidence = 1.0 - ranked[:, 0] / np.maximum(ranked[:, 1], 1e-9)
        slot_index = int(np.argmax(np.where(np.isfinite(ranked[:, 0]), confidence, -np.inf)))
        candidate = int(np.argmin(total[slot_index]))
        slot = slots[slot_index]
        place(int(costs_of.owner[candidate]), candidate % per_piece, slot)
        box = [
            min(box[0], slot[0]),
            max(box[1], slot[0]),
            min(box[2], slot[1]),
            max(box[3], slot[1]),
        ]

    positions = np.empty(count, dtype=np.int64)
    rows, cols = np.nonzero(canvas >= 0)
    positions[canvas[rows, cols]] = (rows - box[0]) * grid[1] + (cols - box[2])
    return positions, chosen


def _most_confident_piece(costs_of: _VariantCosts, count: int) -> int:
    """The piece (shown as variant 0) whose best match in some direction beats the
    runner-up piece most clearly: the safest seed for the greedy growth."""
    best = np.empty(count)
    for piece in range(count):
        per_piece = costs_of.around(piece, 0).reshape(4, count, -1).min(axis=2)
        ranked = np.sort(per_piece, axis=1)
        best[piece] = (1.0 - ranked[:, 0] / np.maximum(ranked[:, 1], 1e-9)).max()
    return int(np.argmax(best))


# --------------------------------------------------------------------- global variant


@dataclass(frozen=True)
class PixelMoments:
    """Per-value mean and mean square of a set of images, ``(C, H, W)`` float64 each."""

    mean: np.ndarray
    square: np.ndarray

    @classmethod
    def of(cls, corpus: Corpus) -> PixelMoments:
        """One chunked pass over ``corpus``."""
        total = square = None
        count = 0
        for chunk in corpus:
            values = chunk.double().cpu()
            part, part_sq = values.sum(0), (values**2).sum(0)
            total = part if total is None else total + part
            square = part_sq if square is None else square + part_sq
            count += chunk.shape[0]
        if total is None or square is None:
            raise CorpusError("the public images are empty; give at least one")
        return cls((total / count).numpy(), (square / count).numpy())


def choose_global_variant(
    restored: Corpus, public: Corpus, allowed: np.ndarray | None = None
) -> ValueMap:
    """The global variant g minimising the expected standardised squared distance between
    g(restored) and the public images' per-value mean (their spread as scale), computed from
    first and second moments only: ``E||(g(x) - mu) / s||^2``.

    Args:
        restored: the corpus as the solver restored it (right up to g).
        public: public plain images of the same shape.
        allowed: the variant numbers to choose from (default: all that keep the shape).

    Returns the map of g (apply after the solver's map).
    """
    shape = restored.image_shape
    mine, theirs = PixelMoments.of(restored), PixelMoments.of(public)
    spread = np.maximum(np.sqrt(np.maximum(theirs.square - theirs.mean**2, 0.0)), 1.0)
    best, best_cost = 0, np.inf
    candidates = shape_keeping_variants(shape) if allowed is None else allowed
    for variant in candidates:
        mapping = global_variant_map(shape, int(variant))
        mean = mine.mean.reshape(-1)[mapping.index]
        square = mine.square.reshape(-1)[mapping.index]
        negated = mapping.negate
        mean, square = (
            np.where(negated, 255.0 - mean, mean),
            np.where(negated, 255.0**2 - 510.0 * mean + square, square),
        )
        mu, scale = theirs.mean.reshape(-1), spread.reshape(-1)
        cost = float(((square - 2 * mu * mean + mu**2) / scale**2).sum())
        if cost < best_cost:
            best, best_cost = int(variant), cost
    return global_variant_map(shape, best)
