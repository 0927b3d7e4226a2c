"""Correlation attack on ciphers that permute and reverse nibbles with a shared key (LE, ELE).

LE moves the 2*C*M^2 nibbles of every block with one keyed permutation and reverses some
(``v -> 15 - v``); ELE does the same with a key per block and then shuffles the blocks. Either
way, encrypted nibble u of block position i is always the same plain nibble, possibly reversed,
so over a corpus of one key its correlations with the other nibbles are the plain image's
correlations, signed by the reversals. The attack reads the map back from them:

1. **High nibbles.** They carry the image and correlate strongly with each other; low nibbles
   barely. The C*M^2 encrypted nibbles with the largest summed |correlation| are the high ones.
2. **Where each goes.** The |correlation| graph of the high nibbles is matched to the one public
   plain images of the domain give (graph matching, scipy's FAQ quadratic assignment); the
   signs of the encrypted correlations give every nibble's reversal up to one global sign.
   Pixel correlations cannot tell a block from its rotations, reflections and colour
   relabellings, so the result is right up to one such *variant* per block.
3. **Variants and block order** come from pooled seams of the provisionally decrypted corpus
   (high nibbles in place, low nibbles at mid-range): the pooled variant puzzle of
   :mod:`~vitlearnenc.attacks.population.pooled_jigsaw` for ELE; for LE, whose blocks stay in
   place, the one per-block rotation/reflection with the cheapest seams. Public images' pixel
   moments choose the global variant (NP, colour order, and for ELE the image orientation).
4. **Low nibbles.** A plain low nibble is predictable from where the neighbours' high nibbles
   sit: a pixel whose neighbours are in a higher 16-level bin is likely near the top of its
   own. Each encrypted low nibble goes to the position whose prediction it correlates with
   most (Hungarian assignment), its reversal read off the sign.

With one key for all blocks (LE, ``shared=True``) steps 1-2 and 4 pool every block of every
image; with a key per block (ELE) only the images, so ELE needs more ciphertexts. PE draws a
fresh key per image: its signs average out over the corpus and the attack must fail.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from scipy.sparse.csgraph import minimum_spanning_tree, shortest_path

from vitlearnenc.attacks.jigsaw import _grid_edges, _mds_placement
from vitlearnenc.attacks.population.corpus import Corpus, CorpusError, as_corpus
from vitlearnenc.attacks.population.edges import DOWN, RIGHT, accumulate_edge_stats
from vitlearnenc.attacks.population.plans import (
    DIHEDRAL,
    ValueMap,
    block_variant_map,
    channel_orders,
)
from vitlearnenc.attacks.population.pooled_jigsaw import (
    _VariantCosts,
    choose_global_variant,
    solve_variant_puzzle,
)
from vitlearnenc.ciphers.base import GatherPlan
from vitlearnenc.ciphers.fastpath import NibbleKernel
from vitlearnenc.ciphers.nibbles import block_nibble_positions
from vitlearnenc.errors import InputError

_CENTRE = 7.5
#: low-nibble assignment rounds: the first predicts from the neighbours' bins, the next from
#: their values as the previous round restored them
_LOW_ROUNDS = 2


# ------------------------------------------------------------------------------- statistics


def block_nibbles(images: torch.Tensor, block_size: int) -> torch.Tensor:
    """``(B, C, H, W)`` uint8 -> ``(B, N, 2*C*M^2)`` float32 nibbles centred at 7.5, in LE's
    block layout (bytes in (row, column, channel) order, low nibbles first)."""
    batch, channels, height, width = images.shape
    grid_h, grid_w = height // block_size, width // block_size
    values = images.reshape(batch, channels, grid_h, block_size, grid_w, block_size)
    values = values.permute(0, 2, 4, 3, 5, 1).reshape(batch, grid_h * grid_w, -1)
    nibbles = torch.cat([values & 15, values >> 4], dim=2)
    return nibbles.float() - _CENTRE


#: per-position Gram matrices are accumulated in float32, which is exact (bit-identical to
#: float64) while every sum stays a multiple of 0.25 below 2**22: nibble products are at most
#: 7.5**2 = 56.25, so up to this many ciphertexts
EXACT_FLOAT32_SAMPLES = int(2**22 / 56.25)


@dataclass(frozen=True)
class MomentSums:
    """Sums of nibbles and their products over a corpus: ``(P, L)`` and ``(P, L, L)``, P = 1
    (pooled over blocks) or N (per block position); ``count`` samples per position.

    ``second`` is float32 per position (ELE at 224/16: 196 x 1536^2 entries, 1.85 GB instead
    of 3.7 GB in float64; exact, see :data:`EXACT_FLOAT32_SAMPLES`) and float64 when pooled."""

    first: np.ndarray
    second: np.ndarray
    count: int

    def __len__(self) -> int:
        return len(self.first)

    def correlation(self, position: int) -> tuple[np.ndarray, np.ndarray]:
        """Mean ``(L,)`` and correlation matrix ``(L, L)`` (float64) of one position (one at a
        time, so that no float64 copy of every position's matrix is ever made)."""
        mean = self.first[position] / self.count
        cov = self.second[position].astype(np.float64) / self.count - np.outer(mean, mean)
        std = np.sqrt(np.maximum(np.diagonal(cov), 1e-12))
        return mean, cov / np.outer(std, std)


def nibble_moments(corpus: Corpus, block_size: int, shared: bool) -> MomentSums:
    """One chunked pass: nibble sums and Gram matrices, pooled over block positions
    (``shared``) or per position. Memory: the Gram matrices plus one chunk; they are updated
    in place (``baddbmm_``), never copied per chunk."""
    first: torch.Tensor | None = None
    second: torch.Tensor | None = None
    count = 0
    dtype = torch.float64 if shared else torch.float32
    for chunk in corpus:
        nib = block_nibbles(chunk.cpu(), block_size).to(dtype)  # (B, N, L)
        # shared: every block is one sample of one position; else (N, B, L) per position
        nib = nib.reshape(1, -1, nib.shape[-1]) if shared else nib.transpose(0, 1)
        if first is None or second is None:
            positions, length = nib.shape[0], nib.shape[2]
            first = torch.zeros(positions, length, dtype=torch.float64)
            second = torch.zeros(positions, length, length, dtype=dtype)
        first += nib.sum(1, dtype=torch.float64)
        second.baddbmm_(nib.transpose(1, 2), nib)
        count += nib.shape[1]
    if first is None or second is None:
        raise CorpusError("the corpus is empty; give it at least one ciphertext")
    if not shared and count > EXACT_FLOAT32_SAMPLES:
        raise InputError(
            f"per-position nibble statistics are exact up to {EXACT_FLOAT32_SAMPLES} "
            f"ciphertexts, got {count}; pass a smaller corpus (corpus.take(n))"
        )
    return MomentSums(first.numpy(), second.numpy(), count)


# ----------------------------------------------------------------------------- high nibbles


@dataclass(frozen=True)
class HighMatch:
    """Per position: the encrypted nibble at every plain high slot and its sign.

    ``atoms``: ``(P, S)`` int64, S = C*M^2 slots ordered (row, column, channel) as LE's bytes;
    ``signs``: ``(P, S)`` +1 / -1 (-1: reversed).
    """

    atoms: np.ndarray
    signs: np.ndarray


def match_high_nibbles(cipher: MomentSums, plain: MomentSums, block_size: int) -> HighMatch:
    """Steps 1-2 of the module docstring for every position of ``cipher``; ``plain`` holds the
    pooled statistics of public plain images (identity map)."""
    plain_mean, _ = plain.correlation(0)
    slots = plain_mean.shape[-1] // 2
    channels = slots // block_size**2
    reference_mean = plain_mean[slots:]
    atoms = np.empty((len(cipher), slots), dtype=np.int64)
    signs = np.empty((len(cipher), slots), dtype=np.int64)
    for position in range(len(cipher)):
        mean, corr = cipher.correlation(position)
        strength = np.abs(corr).sum(axis=1)
        high = np.sort(np.argsort(-strength, kind="stable")[:slots])
        atom_at = high[_place_block(corr[np.ix_(high, high)], block_size, channels)]
        sign = _signs(corr[np.ix_(atom_at, atom_at)])
        if (sign * mean[atom_at] * reference_mean).sum() < 0:  # global sign from the means
            sign = -sign
        atoms[position], signs[position] = atom_at, sign
    return HighMatch(atoms, signs)


def _place_block(strength: np.ndarray, block_size: int, channels: int) -> np.ndarray:
    """Lay out C*M^2 high nibbles as an M x M block of C channels from their correlations.

    Hand-written because no matcher fits: a general graph matcher (scipy's FAQ + 2-opt) missed
    the best layout on most CIFAR-10 blocks. *Partial* correlations (each pair given all the
    other nibbles) make the block's lattice visible: on public CIFAR-10 images the channels of
    one pixel score 0.32-0.38, the same channel of 4-neighbouring pixels 0.22-0.24, everything
    else about 0. So: (1) the strongest disjoint triangles are the pixels; (2) between
    neighbouring pixels the channel correspondence with the largest same-channel links labels
    the channels consistently (propagated along a maximum spanning tree); (3) the pixels are
    placed on the M x M grid by MDS of path lengths, then swap descent on the links (as for the
    proposed cipher's K2). Right up to a rotation/reflection of the block and a relabelling of
    the channels.

    Args:
        strength: ``(C*M^2, C*M^2)`` correlations (any signs) of the high nibbles.

    Returns:
        ``(C*M^2,)`` indices into ``strength``'s rows, in slot order (row, column, channel).
    """
    partial = np.abs(_partial_correlation(strength))
    pixels = _pixel_groups(partial, channels)  # (M^2, C)
    pixels = _label_channels(partial, pixels)
    links = np.zeros((len(pixels), len(pixels)))
    for channel in range(channels):
        links += partial[np.ix_(pixels[:, channel], pixels[:, channel])]
    np.fill_diagonal(links, 0.0)
    length = 1.0 / np.maximum(links, 1e-3)
    distance = shortest_path(length, directed=False)
    edges = {"same": _grid_edges(block_size)["same"]}
    start = _mds_placement({"same": distance}, edges, block_size, 1.0)
    placement = swap_descent(start, -links, *edges["same"])  # cell -> pixel
    return pixels[placement].reshape(-1)


def swap_descent(
    placement: np.ndarray, cost: np.ndarray, first: np.ndarray, second: np.ndarray
) -> np.ndarray:
    """Best-improvement descent over all swaps of two cells, for a symmetric pair ``cost``
    summed over the grid edges ``(first[k], second[k])``: the search of ``jigsaw._descend``,
    which prices every swap by recomputing the whole placement cost (O(n^2 * edges) per step:
    minutes per 16x16 block at 224/16). Here each step prices all swaps at once from
    per-cell neighbour sums, O(n^2): ``T[a, b]`` is the cost of cell a's item against the
    neighbours of cell b, and swapping u and v changes the total by
    ``T[v,u] + T[u,v] - T[u,u] - T[v,v]``, plus a correction for the shared edge if they are
    neighbours. Same swaps, same order of ties (``triu_indices``), same stopping rule."""
    count = len(placement)
    adjacency = np.zeros((count, count))
    adjacency[first, second] = adjacency[second, first] = 1.0
    upper = np.triu_indices(count, k=1)
    current = float(cost[placement[first], placement[second]].sum())
    placement = placement.copy()
    while True:
        pair = cost[np.ix_(placement, placement)]  # pair[a, b]: items of cells a and b
        sums = pair @ adjacency
        own, self_cost = np.diag(sums), np.diag(pair)
        delta = sums + sums.T - own[:, None] - own[None, :]
        delta += adjacency * (2 * pair - self_cost[:, None] - self_cost[None, :])
        candidates = delta[upper]
        best = int(np.argmin(candidates))
        if candidates[best] >= -1e-9 * max(abs(current), 1.0):
            return placement
        u, v = upper[0][best], upper[1][best]
        placement[u], placement[v] = placement[v], placement[u]
        current += float(candidates[best])


def _partial_correlation(corr: np.ndarray) -> np.ndarray:
    """Partial correlations from a correlation matrix (ridge 1e-3 against noise)."""
    precision = np.linalg.inv(corr + 1e-3 * np.eye(len(corr)))
    scale = np.sqrt(np.diag(precision))
    partial = -precision / np.outer(scale, scale)
    np.fill_diagonal(partial, 0.0)
    return partial


def _pixel_groups(partial: np.ndarray, channels: int) -> np.ndarray:
    """Disjoint groups of ``channels`` nibbles with the largest summed partial correlations
    (greedy over the groups each nibble forms with its strongest partners)."""
    if channels == 1:
        return np.arange(len(partial))[:, None]
    return np.array(_greedy_groups(partial, list(range(len(partial))), channels), dtype=np.int64)


#: leftover nibbles grouped by trying every combination (C(24, 3) = 2,024 per group); more
#: leftovers (correlations of pure noise, e.g. from one ciphertext at 224/16) are grouped by the
#: greedy step again among themselves, which an exhaustive search over hundreds would not finish
_EXHAUSTIVE_LEFTOVERS = 24


def _greedy_groups(partial: np.ndarray, members: list[int], channels: int) -> list[tuple]:
    """:func:`_pixel_groups` among ``members``: the greedy pass, then the leftovers."""
    sub = partial[np.ix_(members, members)].copy()
    np.fill_diagonal(sub, -np.inf)  # never its own partner (rows of zeros: one ciphertext)
    partners = np.argsort(-sub, axis=1)[:, : channels + 2]
    candidates = {
        tuple(sorted(members[i] for i in (a, *rest)))
        for a in range(len(members))
        for rest in itertools.combinations(partners[a], channels - 1)
    }
    free = dict.fromkeys(members, True)
    groups = []
    for group in sorted(candidates, key=lambda g: -_group_weight(partial, g)):
        if all(free[a] for a in group):
            groups.append(group)
            free.update(dict.fromkeys(group, False))
    left = [a for a in members if free[a]]
    if len(left) > _EXHAUSTIVE_LEFTOVERS:
        return groups + _greedy_groups(partial, left, channels)
    while left:  # few leftovers: best remaining groups among them
        group = max(itertools.combinations(left, channels), key=lambda g: _group_weight(partial, g))
        groups.append(tuple(group))
        left = [a for a in left if a not in group]
    return groups


def _group_weight(partial: np.ndarray, group: tuple[int, ...]) -> float:
    return float(sum(partial[a, b] for a, b in itertools.combinations(group, 2)))


def _label_channels(partial: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """Reorder every pixel's nibbles so that column c is one channel throughout: between two
    pixels, the correspondence with the largest same-channel links relates their labels; the
    labels follow a maximum spanning tree of those links from pixel 0."""
    count, channels = pixels.shape
    orders = channel_orders(channels)
    weight = np.zeros((count, count))
    best = np.zeros((count, count), dtype=np.int64)
    for p in range(count):
        block = partial[np.ix_(pixels[p], pixels.ravel())].reshape(channels, count, channels)
        # score[q, o] = sum_c block[c, q, orders[o][c]]
        score = np.stack(
            [block[np.arange(channels), :, order].sum(axis=0) for order in orders], axis=1
        )
        weight[p], best[p] = score.max(axis=1), score.argmax(axis=1)
    np.fill_diagonal(weight, 0.0)
    tree = minimum_spanning_tree(-np.maximum(weight, 1e-9)).toarray()
    tree = (tree != 0) | (tree.T != 0)
    labelled = pixels.copy()
    done = np.zeros(count, dtype=bool)
    done[0] = True
    queue = [0]
    while queue:
        p = queue.pop()
        for q in np.flatnonzero(tree[p] & ~done):
            # labelled[p] has channel c at column c; pixels[q][orders[best[p0, q]][c]] matches
            # pixels[p0][c] for the *original* order of p0, so compose through p's reordering
            order_pq = _best_order(partial, labelled[p], pixels[q], orders)
            labelled[q] = pixels[q][order_pq]
            done[q] = True
            queue.append(q)
    return labelled


def _best_order(
    partial: np.ndarray, anchor: np.ndarray, other: np.ndarray, orders: np.ndarray
) -> np.ndarray:
    """The order of ``other``'s nibbles whose same-position links to ``anchor`` are largest."""
    block = partial[np.ix_(anchor, other)]
    scores = [block[np.arange(len(anchor)), order].sum() for order in orders]
    return orders[int(np.argmax(scores))]


def _signs(corr: np.ndarray) -> np.ndarray:
    """+1/-1 per nibble such that ``corr ~ s s^T |corr|``: the leading eigenvector's signs
    (plain high nibbles of one block all correlate positively)."""
    values, vectors = np.linalg.eigh(corr)
    leading = vectors[:, -1]
    return np.where(leading >= 0, 1, -1).astype(np.int64)


# ------------------------------------------------------------------------------- nibble maps


@dataclass(frozen=True, repr=False, eq=False)
class NibbleMap:
    """A decryption over an image's nibble vector (:mod:`vitlearnenc.ciphers.nibbles`
    layout): plain nibble q = encrypted nibble ``index[q]``, reversed where ``flip[q]``. Key
    material when right: repr shows the shape only."""

    index: np.ndarray
    flip: np.ndarray
    shape: tuple[int, int, int]

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` uint8 -> decrypted, same device."""
        kernel = NibbleKernel.from_plan(GatherPlan(self.index, self.flip, False), images.device)
        return kernel(images, self.shape)

    def then_values(self, value_map: ValueMap) -> NibbleMap:
        """This map followed by a byte-level :class:`ValueMap` (moves both nibbles of a byte;
        NP reverses both)."""
        size = value_map.index.size
        lifted = np.concatenate([value_map.index, value_map.index + size])
        negate = np.concatenate([value_map.negate, value_map.negate])
        return NibbleMap(self.index[lifted], self.flip[lifted] ^ negate, self.shape)

    def __repr__(self) -> str:
        return f"NibbleMap(shape={self.shape})"


def _nibble_map(
    shape: tuple[int, int, int],
    block_size: int,
    atoms: np.ndarray,
    flips: np.ndarray,
    sources: np.ndarray,
) -> NibbleMap:
    """Plain block b, nibble a = encrypted block ``sources[b]``, nibble ``atoms[b, a]``."""
    channels, height, width = shape
    positions = block_nibble_positions((height, width), block_size, channels)  # (N, L)
    index = np.empty(positions.size, dtype=np.int64)
    flip = np.empty(positions.size, dtype=bool)
    index[positions] = np.take_along_axis(positions[sources], atoms, axis=1)
    flip[positions] = flips
    return NibbleMap(index, flip, shape)


# ------------------------------------------------------------------------------ the attack


@dataclass(frozen=True, repr=False, eq=False)
class CorrelationResult:
    """Estimate of :func:`correlation_attack` (key material: repr shows no values).

    Attributes:
        nibble_map: the estimated decryption.
        block_size: M; ``images``: corpus size; ``shared``: one key for all blocks (LE).
    """

    nibble_map: NibbleMap
    block_size: int
    images: int
    shared: bool

    def decrypt(self, encrypted: torch.Tensor) -> torch.Tensor:
        """Apply the estimated decryption to ``(B, C, H, W)`` uint8 ciphertexts."""
        return self.nibble_map.apply(encrypted)

    def __repr__(self) -> str:
        return (
            f"CorrelationResult(images={self.images}, shape={self.nibble_map.shape}, "
            f"block_size={self.block_size}, shared={self.shared})"
        )


def correlation_attack(
    corpus: Corpus | torch.Tensor,
    public: Corpus | torch.Tensor,
    block_size: int,
    shared: bool,
    seed: int = 0,
) -> CorrelationResult:
    """Ciphertext-only decryption of a nibble-permuting cipher from a corpus of one key.

    Args:
        corpus: ciphertexts of one key.
        public: public plain images of the domain, same size (never the victims).
        block_size: M.
        shared: True when one nibble permutation serves every block and blocks stay in place
            (LE); False for a permutation per block position plus block shuffling (ELE).
        seed: the matcher's random restarts.
    """
    corpus, public = as_corpus(corpus), as_corpus(public)
    shape = corpus.image_shape
    if public.image_shape != shape:
        raise InputError(
            f"public images {public.image_shape} must have the ciphertexts' shape {shape}"
        )
    channels, height, width = shape
    if block_size < 2 or height % block_size or width % block_size:
        raise InputError(f"block size {block_size} must divide the image size {height}x{width}")
    count = (height // block_size) * (width // block_size)
    plain = nibble_moments(public, block_size, shared=True)
    high = match_high_nibbles(nibble_moments(corpus, block_size, shared), plain, block_size)
    atoms, signs = high.atoms, high.signs
    if shared:
        atoms, signs = np.repeat(atoms, count, axis=0), np.repeat(signs, count, axis=0)
    slots = atoms.shape[1]
    # provisional decryption: high nibbles placed, low nibbles taken from a constant source
    # (the first low atom, reversed half the time: any fixed choice; seams barely see it)
    provisional = _provisional_map(shape, block_size, atoms, signs)
    stage = corpus.map(provisional.apply)
    stats = accumulate_edge_stats(stage, block_size)
    if shared:
        variant = _uniform_variant(stats)
        positions = np.arange(count)
        variants = np.full(count, variant)
        allowed = np.arange(2 * len(channel_orders(channels)))  # NP x colour only
    else:
        positions, variants = solve_variant_puzzle(stats)
        allowed = None
    placed = block_variant_map(shape, block_size, positions, variants)
    placed = placed.then(choose_global_variant(stage.map(placed.apply), public, allowed))
    high_map = provisional.then_values(placed)
    final = high_map
    for refine in range(_LOW_ROUNDS):  # round 0 predicts from bins, later rounds from values
        low_atoms, low_flips = _match_low_nibbles(
            corpus, final, block_size, slots, shared, use_lows=refine > 0
        )
        final = _with_lows(high_map, low_atoms, low_flips, block_size)
    return CorrelationResult(final, block_size, len(corpus), shared)


def _provisional_map(
    shape: tuple[int, int, int], block_size: int, atoms: np.ndarray, signs: np.ndarray
) -> NibbleMap:
    """High nibbles from the matched atoms, every low nibble from the block's first
    unmatched atom (a stand-in until step 4)."""
    count, slots = atoms.shape
    lows = np.empty((count, slots), dtype=np.int64)
    for position in range(count):
        spare = np.setdiff1d(np.arange(2 * slots), atoms[position])
        lows[position] = spare[0]
    full = np.concatenate([lows, atoms], axis=1)
    flips = np.concatenate([np.zeros((count, slots), bool), signs < 0], axis=1)
    return _nibble_map(shape, block_size, full, flips, np.arange(count))


def _uniform_variant(stats: object) -> int:
    """LE: the rotation/reflection that, applied to every block in place, gives the cheapest
    pooled seams (NP and colour order are invisible to seams between blocks treated alike)."""
    costs_of = _VariantCosts(stats)  # type: ignore[arg-type]
    grid_h, grid_w = costs_of.stats.grid
    per_code = costs_of.per_piece // DIHEDRAL
    blocks = np.arange(grid_h * grid_w).reshape(grid_h, grid_w)
    right = np.full(blocks.size, -1)
    right[blocks[:, :-1].ravel()] = blocks[:, 1:].ravel()
    below = np.full(blocks.size, -1)
    below[blocks[:-1, :].ravel()] = blocks[1:, :].ravel()
    totals = []
    for code in range(DIHEDRAL):
        variant = code * per_code
        total = 0.0
        for piece in range(blocks.size):
            around = costs_of.around(piece, variant)
            for direction, partner in ((RIGHT, right[piece]), (DOWN, below[piece])):
                if partner >= 0:
                    total += around[direction, partner * costs_of.per_piece + variant]
        totals.append(total)
    return int(np.argmin(totals)) * per_code


def _slot_features(restored: torch.Tensor, block_size: int, use_lows: bool) -> torch.Tensor:
    """Predicted low nibble of every value from its 4-neighbours in the whole image (step 4).

    Args:
        restored: ``(B, C, H, W)`` uint8, the current restoration (high nibbles right).
        use_lows: trust the restored low nibbles of the neighbours; else take every neighbour
            at the middle of its 16-level bin.

    Returns:
        ``(B, N, S)`` in LE's slot order: the neighbours' mean value minus the value's own bin
        start, clipped to 0..15, centred.
    """
    high = (restored >> 4).double() * 16.0
    value = restored.double() if use_lows else high + 7.5
    padded = torch.nn.functional.pad(value, (1, 1, 1, 1), value=float("nan"))
    around = torch.stack(
        [
            padded[..., :-2, 1:-1],
            padded[..., 2:, 1:-1],
            padded[..., 1:-1, :-2],
            padded[..., 1:-1, 2:],
        ]
    )
    predicted = (torch.nanmean(around, dim=0) - high).clamp(0, 15) - _CENTRE
    batch, channels, height, width = restored.shape
    grid = predicted.reshape(batch, channels, height // block_size, block_size, -1, block_size)
    return grid.permute(0, 2, 4, 3, 5, 1).reshape(batch, -1, block_size * block_size * channels)


def _match_low_nibbles(
    corpus: Corpus,
    high_map: NibbleMap,
    block_size: int,
    slots: int,
    shared: bool,
    use_lows: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Step 4: ``(N, S)`` encrypted low atom for every plain low slot and its flip, given a map
    whose high nibbles are right (``use_lows``: and whose low nibbles are a first guess)."""
    channels, height, width = high_map.shape
    count = (height // block_size) * (width // block_size)
    positions = block_nibble_positions((height, width), block_size, channels)
    # the encrypted block each plain block draws from, and the atoms not used by high slots
    nibble_block = np.empty(high_map.index.size, dtype=np.int64)
    nibble_block[positions] = np.arange(count)[:, None]
    atom_of = np.empty(high_map.index.size, dtype=np.int64)
    atom_of[positions] = np.arange(positions.shape[1])[None, :]
    high_sources = high_map.index[positions[:, slots:]]  # (N, S) encrypted nibble positions
    source_block = nibble_block[high_sources[:, 0]]
    used = atom_of[high_sources]
    lows = np.stack(
        [np.setdiff1d(np.arange(2 * slots), used[b], assume_unique=True) for b in range(count)]
    )  # (N, S) encrypted low atoms of the source block
    # accumulated in place (ELE at 224/16: 196 x 768^2 float64, 0.9 GB, and no per-chunk copy)
    cross_sums = torch.zeros((1 if shared else count, slots, slots), dtype=torch.float64)
    sums_a = np.zeros((1 if shared else count, slots))
    sums_f = np.zeros_like(sums_a)
    squares_a = np.zeros_like(sums_a)
    squares_f = np.zeros_like(sums_a)
    samples = 0
    for chunk in corpus:
        cipher_nib = block_nibbles(chunk.cpu(), block_size).double()  # (B, N, L) encrypted
        features = _slot_features(high_map.apply(chunk.cpu()), block_size, use_lows)
        candidates = torch.gather(
            cipher_nib[:, source_block],
            2,
            torch.as_tensor(lows)[None].expand(chunk.shape[0], -1, -1),
        )  # (B, N, S) low atoms of the block each plain block came from
        if shared:
            candidates = candidates.reshape(1, -1, slots)
            features = features.reshape(1, -1, slots)
        else:
            candidates, features = candidates.transpose(0, 1), features.transpose(0, 1)
        cross_sums.baddbmm_(candidates.transpose(1, 2), features)
        sums_a += candidates.sum(1).numpy()
        sums_f += features.sum(1).numpy()
        squares_a += (candidates**2).sum(1).numpy()
        squares_f += (features**2).sum(1).numpy()
        samples += candidates.shape[1]
    mean_a, mean_f = sums_a / samples, sums_f / samples
    std_a = np.sqrt(np.maximum(squares_a / samples - mean_a**2, 1e-12))
    std_f = np.sqrt(np.maximum(squares_f / samples - mean_f**2, 1e-12))
    cross = cross_sums.numpy()
    atoms = np.empty((count, slots), dtype=np.int64)
    flips = np.empty((count, slots), dtype=bool)
    for p in range(len(cross)):  # one position at a time: no second (P, S, S) array
        cov = cross[p] / samples - np.outer(mean_a[p], mean_f[p])
        table = cov / np.outer(std_a[p], std_f[p])  # (candidate, slot) correlations
        rows, cols = linear_sum_assignment(-np.abs(table))
        for block in range(count) if shared else (p,):  # LE: one assignment for every block
            atoms[block, cols] = lows[block, rows]
            flips[block, cols] = table[rows, cols] < 0
    return atoms, flips


def _with_lows(
    high_map: NibbleMap, atoms: np.ndarray, flips: np.ndarray, block_size: int
) -> NibbleMap:
    """``high_map`` with its low nibbles replaced: plain block b's low slot s = encrypted
    nibble ``atoms[b, s]`` of the block its high nibbles come from."""
    channels, height, width = high_map.shape
    positions = block_nibble_positions((height, width), block_size, channels)
    slots = atoms.shape[1]
    nibble_block = np.empty(high_map.index.size, dtype=np.int64)
    nibble_block[positions] = np.arange(len(positions))[:, None]
    source_block = nibble_block[high_map.index[positions[:, slots]]]
    index, flip = high_map.index.copy(), high_map.flip.copy()
    index[positions[:, :slots]] = np.take_along_axis(positions[source_block], atoms, axis=1)
    flip[positions[:, :slots]] = flips
    return NibbleMap(index, flip, high_map.shape)
