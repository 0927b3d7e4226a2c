"""Jigsaw-puzzle-solver attack on block scrambling + shared pixel shuffling (spec §2.4).

Ciphertext-only. Block scrambling keeps every block's content, so blocks are jigsaw pieces; the
proposed cipher's pixel shuffle K2 is shared by every sub-block of every image, so it can be
learnt from many ciphertexts first. The attack therefore runs in two stages:

1. :func:`estimate_pixel_perm`: correlate the (M/2)^2 shuffled positions over all sub-blocks of
   a batch (plain neighbours have the smallest mean squared difference) and place them on the
   (M/2)x(M/2) grid so that grid neighbours are similar. Inside one sub-block this is decided
   only up to the 8 symmetries of the square; the edges shared by the four sub-blocks of a
   block are directional and usually break the tie.
2. :func:`solve_block_puzzle`: a greedy solver in the manner of Paikin & Tal (CVPR 2015):
   Mahalanobis gradient compatibility (Gallagher, CVPR 2012), best-buddy-first placement,
   fixed piece orientation, the grid size known.

No puzzle-solver package fits (pieces here are tiny, orientation is fixed and the result must
be a permutation in the key's convention), so the solver is written here with NumPy over
``(4, N, N)`` compatibility arrays.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from vitlearnenc.attacks.registry import (
    AttackContext,
    AttackOutcome,
    Input,
    InputKind,
    register_attack,
)
from vitlearnenc.attacks.scoring import check_image_batch
from vitlearnenc.ciphers.base import Cipher, Structure
from vitlearnenc.ciphers.keys import CipherKey
from vitlearnenc.ciphers.proposed import ProposedCipher
from vitlearnenc.errors import InputError

#: directions of a neighbour relative to a piece: j is right of / below / left of / above i
_RIGHT, _DOWN, _LEFT, _UP = range(4)
_OPPOSITE = np.array([_LEFT, _UP, _RIGHT, _DOWN])
_STEP = np.array([(0, 1), (1, 0), (0, -1), (-1, 0)])
#: Gallagher's regulariser: variance (in 8-bit units squared) added to gradient covariances
_COV_RIDGE = 1.0
#: exhaustive search over pixel placements up to this many candidates ((M/2)^2 <= 9)
_EXHAUSTIVE_LIMIT = 400_000


# --------------------------------------------------------------------------- block puzzle


def solve_block_puzzle(encrypted: torch.Tensor, block_size: int) -> np.ndarray:
    """Reassemble one image's scrambled blocks (fixed orientation, known grid size).

    Args:
        encrypted: ``(C, H, W)`` uint8 image whose M x M blocks are scrambled (pixels inside
            the blocks already in plain order, e.g. after undoing K2).
        block_size: M, dividing H and W.

    Returns:
        ``(N,)`` int64 estimate of ``block_perm`` in the key's convention: encrypted block i
        is estimated to be plain block ``estimate[i]`` (blocks row-major).
    """
    if encrypted.ndim != 3:
        raise InputError(
            f"encrypted must be one (C, H, W) image, got shape {tuple(encrypted.shape)}"
        )
    check_image_batch(encrypted.unsqueeze(0), "encrypted")
    grid = _block_grid(tuple(encrypted.shape[-2:]), block_size)
    pieces = _pieces(encrypted.cpu().numpy().astype(np.float64), block_size)
    if len(pieces) == 1:
        return np.zeros(1, dtype=np.int64)
    compatibility, buddies = _compatibility(edge_dissimilarity(pieces))
    return _place(compatibility, buddies, grid)


def edge_dissimilarity(pieces: np.ndarray) -> np.ndarray:
    """Mahalanobis gradient compatibility (MGC) of every ordered pair of pieces.

    The gradient across a candidate seam should look like the gradients just inside each
    piece; MGC measures the seam gradient's Mahalanobis distance to each side's edge-gradient
    distribution (mean and colour covariance) and adds both directions (Gallagher 2012).

    Args:
        pieces: ``(N, C, M, M)`` float pieces (any value scale; 0..255 here).

    Returns:
        ``(4, N, N)``: entry ``[r, i, j]`` is the dissimilarity of piece j placed in direction
        r (right, down, left, up) of piece i; ``inf`` on the diagonal.
    """
    right = mgc_right(pieces, pieces)
    transposed = pieces.transpose(0, 1, 3, 2)  # a piece's bottom edge is its transpose's right
    down = mgc_right(transposed, transposed)
    dissimilarity = np.stack([right, down, right.T, down.T])
    diagonal = np.arange(len(pieces))
    dissimilarity[:, diagonal, diagonal] = np.inf
    return dissimilarity


def mgc_right(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """``(K, L)`` MGC of piece ``right[j]`` placed right of piece ``left[i]`` (both sides of the
    seam); pieces ``(K, C, M, M)`` and ``(L, C, M, M)``. Other directions: transpose or swap."""
    last, before_last = left[..., -1].transpose(0, 2, 1), left[..., -2].transpose(0, 2, 1)
    first, after_first = right[..., 0].transpose(0, 2, 1), right[..., 1].transpose(0, 2, 1)
    seam = first[None] - last[:, None]  # (N_i, N_j, M, C): gradient from i's edge into j
    from_left = _mahalanobis(seam, last - before_last)  # i's rightward gradients
    from_right = _mahalanobis(-seam.transpose(1, 0, 2, 3), first - after_first).T  # j's leftward
    return from_left + from_right


def _mahalanobis(seam: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """Sum over the seam of the Mahalanobis distances of ``seam[i, j]`` ``(M, C)`` to piece i's
    inside gradients ``inside[i]`` ``(M, C)``; returns ``(N, N)``."""
    mean = inside.mean(axis=1)  # (N, C)
    centred = inside - mean[:, None]
    channels = inside.shape[-1]
    covariance = np.einsum("nmc,nmd->ncd", centred, centred) / max(inside.shape[1] - 1, 1)
    precision = np.linalg.inv(covariance + _COV_RIDGE * np.eye(channels))
    offset = seam - mean[:, None, None]
    return np.einsum("ijmc,icd,ijmd->ij", offset, precision, offset)


def _compatibility(dissimilarity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Paikin–Tal compatibilities and best-buddy flags from ``(4, N, N)`` dissimilarities.

    ``C[r, i, j] = 1 - D[r, i, j] / second_best_r(i)`` is near 1 for a clearly best match; the
    returned compatibility averages the two pieces' views of the seam. Pieces i and j are best
    buddies in direction r when each is the other's best match across that seam.
    """
    ordered = np.sort(dissimilarity, axis=2)
    second = np.maximum(ordered[:, :, 1:2], 1e-9)
    single = 1.0 - dissimilarity / second
    single[~np.isfinite(single)] = -np.inf
    mutual = 0.5 * (single + single[_OPPOSITE].transpose(0, 2, 1))
    best = dissimilarity.argmin(axis=2)  # (4, N)
    pieces = np.arange(dissimilarity.shape[1])
    buddies = np.zeros(dissimilarity.shape, dtype=bool)
    for direction in range(4):
        partner = best[direction]
        mutual_best = best[_OPPOSITE[direction], partner] == pieces
        buddies[direction, pieces[mutual_best], partner[mutual_best]] = True
    return mutual, buddies


def _place(compatibility: np.ndarray, buddies: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Greedy placement on a canvas whose occupied bounding box may not exceed ``grid``.

    Start from the piece with the most (and most compatible) best buddies; then repeatedly
    place, among the (slot, piece) pairs where the piece is a best buddy of a placed neighbour
    of the slot (any pair when there is none), the one with the highest mean compatibility
    with the slot's placed neighbours. (Requiring buddies of *every* neighbour first, or
    ignoring buddies, each placed 2-5 % fewer CIFAR-10 blocks correctly.)

    Returns:
        ``(N,)`` row-major grid position of every piece.
    """
    grid_h, grid_w = grid
    count = compatibility.shape[1]
    canvas = np.full((2 * grid_h + 1, 2 * grid_w + 1), -1, dtype=np.int64)
    placed = np.zeros(count, dtype=bool)
    origin = (grid_h, grid_w)

    buddy_count = buddies.sum(axis=(0, 2))
    buddy_strength = np.where(buddies, compatibility, 0.0).sum(axis=(0, 2))
    first = int(np.lexsort((-buddy_strength, -buddy_count))[0])
    canvas[origin] = first
    placed[first] = True
    box = [origin[0], origin[0], origin[1], origin[1]]  # row min, row max, col min, col max

    for _ in range(count - 1):
        slots, neighbours = _open_slots(canvas, box, grid)
        valid = neighbours >= 0  # (S, 4): neighbour in direction d of the slot
        # the slot lies in direction OPPOSITE[d] of that neighbour
        relation = np.broadcast_to(_OPPOSITE, neighbours.shape)
        owner = np.where(valid, neighbours, 0)
        scores = np.where(valid[..., None], compatibility[relation, owner], 0.0)  # (S, 4, N)
        mates = np.where(valid[..., None], buddies[relation, owner], False)
        n_neighbours = valid.sum(axis=1)[:, None]
        mean_score = scores.sum(axis=1) / n_neighbours
        mate_count = mates.sum(axis=1)
        mean_score[:, placed] = -np.inf
        buddy_score = np.where(mate_count > 0, mean_score, -np.inf)
        tier = buddy_score if np.isfinite(buddy_score).any() else mean_score
        if np.isfinite(tier).any():
            slot_index, piece = (int(v) for v in np.unravel_index(int(np.argmax(tier)), tier.shape))
        else:  # every remaining score is -inf (degenerate pieces): take any
            slot_index, piece = 0, int(np.flatnonzero(~placed)[0])
        slot = slots[slot_index]
        canvas[slot] = piece
        placed[piece] = True
        box = [
            min(box[0], slot[0]),
            max(box[1], slot[0]),
            min(box[2], slot[1]),
            max(box[3], slot[1]),
        ]

    rows, cols = np.nonzero(canvas >= 0)
    positions = np.empty(count, dtype=np.int64)
    positions[canvas[rows, cols]] = (rows - box[0]) * grid_w + (cols - box[2])
    return positions


def _open_slots(
    canvas: np.ndarray, box: list[int], grid: tuple[int, int]
) -> tuple[list[tuple[int, int]], np.ndarray]:
    """Empty cells next to a placed piece that keep the bounding box within ``grid``, and
    their neighbours ``(S, 4)`` (piece index in direction right/down/left/up, or -1)."""
    occupied = canvas >= 0
    touching = np.zeros_like(occupied)
    touching[1:, :] |= occupied[:-1, :]
    touching[:-1, :] |= occupied[1:, :]
    touching[:, 1:] |= occupied[:, :-1]
    touching[:, :-1] |= occupied[:, 1:]
    rows, cols = np.nonzero(touching & ~occupied)
    height = np.maximum(box[1], rows) - np.minimum(box[0], rows) + 1
    width = np.maximum(box[3], cols) - np.minimum(box[2], cols) + 1
    keep = (height <= grid[0]) & (width <= grid[1])
    rows, cols = rows[keep], cols[keep]
    padded = np.pad(canvas, 1, constant_values=-1)
    neighbours = np.stack([padded[rows + 1 + dr, cols + 1 + dc] for dr, dc in _STEP], axis=1)
    return list(zip(rows.tolist(), cols.tolist(), strict=True)), neighbours


# ----------------------------------------------------------------------- pixel shuffle K2


def estimate_pixel_perm(encrypted_batch: torch.Tensor, block_size: int) -> np.ndarray:
    """Estimate the proposed cipher's shared sub-block pixel shuffle K2 from ciphertexts.

    For shuffled positions u, v the mean squared difference of their values over every
    sub-block (and channel) of the batch is small when u and v are plain neighbours. The
    placement of positions on the (M/2)x(M/2) grid minimises the summed difference over grid
    neighbours, including the seams between the four sub-blocks of a block (TL|TR, BL|BR,
    TL/BL, TR/BR), whose direction usually fixes the square's symmetry. Exhaustive for
    (M/2)^2 <= 9 positions, otherwise MDS layouts refined by swap descent.

    Args:
        encrypted_batch: ``(B, C, H, W)`` uint8 ciphertexts of one key, on any device (more
            images, better estimate; on CIFAR-10, 2 images sufficed for M = 4 at 32x32 and
            M = 16 at 224x224, about 100 for M = 16 at 32x32).
        block_size: M, even, dividing H and W.

    Returns:
        ``((M/2)^2,)`` int64 estimate of ``pixel_perm`` (encrypted pixel k of a sub-block =
        plain pixel ``estimate[k]``); compare with :func:`symmetry_between`.
    """
    check_image_batch(encrypted_batch, "encrypted_batch")
    _block_grid(tuple(encrypted_batch.shape[-2:]), block_size)
    if block_size % 2:
        raise InputError(f"the proposed cipher needs an even block size, got {block_size}")
    side = block_size // 2
    if side == 1:
        return np.zeros(1, dtype=np.int64)
    return pixel_perm_from_costs(_position_costs(encrypted_batch, block_size), side)


def pixel_perm_from_costs(costs: dict[str, np.ndarray], side: int) -> np.ndarray:
    """The K2 estimate (gather permutation of a side x side sub-block) that places the shuffled
    positions with the least seam cost: exhaustive where (side^2)! is small, else the better of
    two MDS starts refined by descent. Shared by the per-image and the pooled attacks."""
    edges = _grid_edges(side)
    if math.factorial(side * side) <= _EXHAUSTIVE_LIMIT:
        placement = _exhaustive_placement(costs, edges, side * side)
    else:
        finals = np.stack(
            [
                _descend(_mds_placement(costs, edges, side, power), costs, edges)
                for power in (1.0, 2.0)
            ]
        )
        placement = finals[int(np.argmin(_placement_cost(finals, costs, edges)))]
    return np.argsort(placement).astype(np.int64)


def _position_costs(
    encrypted_batch: torch.Tensor, block_size: int, chunk: int = 64
) -> dict[str, np.ndarray]:
    """Mean squared differences between shuffled positions: within a sub-block (``same``),
    left sub-block vs right sub-block (``across_h``) and top vs bottom (``across_v``).

    Accumulated as Gram matrices over chunks of ``chunk`` images, so a whole test set fits.
    """
    batch, channels, height, width = encrypted_batch.shape
    side = block_size // 2
    positions = side * side
    # per cost: sums of a_u^2, of b_v^2 and of a_u b_v over the samples, and their number
    zeros = encrypted_batch.new_zeros((positions, positions), dtype=torch.float64)
    names = ("same", "across_h", "across_v")
    stats = dict.fromkeys(names, (zeros[0], zeros[0], zeros))
    counts = dict.fromkeys(names, 0)
    for start in range(0, batch, chunk):
        part = encrypted_batch[start : start + chunk].double()
        # (b, C, gh, 2, s, gw, 2, s) -> (b*gh*gw*C, 2, 2, s*s): sub-block row, column, position
        view = part.reshape(
            -1, channels, height // block_size, 2, side, width // block_size, 2, side
        )
        subs = view.permute(0, 2, 5, 1, 3, 6, 4, 7).reshape(-1, 2, 2, positions)
        operands = {
            "same": (subs.reshape(-1, positions), subs.reshape(-1, positions)),
            "across_h": (
                subs[:, :, 0].reshape(-1, positions),
                subs[:, :, 1].reshape(-1, positions),
            ),
            "across_v": (subs[:, 0].reshape(-1, positions), subs[:, 1].reshape(-1, positions)),
        }
        for name, (a, b) in operands.items():
            square_a, square_b, cross = stats[name]
            stats[name] = (square_a + (a * a).sum(0), square_b + (b * b).sum(0), cross + a.T @ b)
            counts[name] += a.shape[0]
    costs = {}
    for name, (square_a, square_b, cross) in stats.items():
        # mean over samples of (a_u - b_v)^2 for every position pair (u, v)
        msd = (square_a[:, None] + square_b[None, :] - 2 * cross) / counts[name]
        costs[name] = msd.clamp_min(0).cpu().numpy()
    return costs


def _grid_edges(side: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Cell pairs (a, b) on the side x side grid whose costs add up: 4-neighbours inside a
    sub-block (``same``), right column to left column across the vertical seam
    (``across_h``) and bottom row to top row across the horizontal seam (``across_v``)."""
    cells = np.arange(side * side).reshape(side, side)
    same_a = np.concatenate([cells[:, :-1].ravel(), cells[:-1, :].ravel()])
    same_b = np.concatenate([cells[:, 1:].ravel(), cells[1:, :].ravel()])
    return {
        "same": (same_a, same_b),
        "across_h": (cells[:, -1], cells[:, 0]),
        "across_v": (cells[-1, :], cells[0, :]),
    }


def _placement_cost(
    placements: np.ndarray,
    costs: dict[str, np.ndarray],
    edges: dict[str, tuple[np.ndarray, np.ndarray]],
) -> np.ndarray:
    """Total cost of ``(K, n)`` placements (cell c holds shuffled position ``placement[c]``)."""
    total = np.zeros(len(placements))
    for name, (a, b) in edges.items():
        total += costs[name][placements[:, a], placements[:, b]].sum(axis=1)
    return total


def _exhaustive_placement(
    costs: dict[str, np.ndarray], edges: dict[str, tuple[np.ndarray, np.ndarray]], count: int
) -> np.ndarray:
    placements = np.array(list(itertools.permutations(range(count))), dtype=np.int64)
    return placements[int(np.argmin(_placement_cost(placements, costs, edges)))]


def _mds_placement(
    costs: dict[str, np.ndarray],
    edges: dict[str, tuple[np.ndarray, np.ndarray]],
    side: int,
    power: float,
) -> np.ndarray:
    """Initial placement from classical MDS of the position differences.

    For smooth images the mean squared difference of two positions grows like the squared
    distance between them, so MDS of ``same ** power`` (power 1 for smooth, 2 for rougher
    natural images) lays the positions out as an affine image of the grid. Whitening removes
    the affine part but a rotation, so every angle (1-degree steps) and symmetry is snapped to
    the grid by rank (columns by x, then rows by y) and the cheapest placement is kept.
    """
    count = side * side
    centring = np.eye(count) - 1.0 / count
    gram = -0.5 * centring @ costs["same"] ** power @ centring
    values, vectors = np.linalg.eigh(gram)
    embedding = vectors[:, -2:] * np.sqrt(np.maximum(values[-2:], 0.0))
    embedding -= embedding.mean(axis=0)
    spread, axes = np.linalg.eigh(embedding.T @ embedding / count)
    embedding = embedding @ axes / np.sqrt(np.maximum(spread, 1e-12))
    candidates: list[np.ndarray] = []
    for angle in np.deg2rad(np.arange(90)):
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        coords = embedding @ rotation
        by_column = np.argsort(coords[:, 0], kind="stable").reshape(side, side)
        rows_in_column = np.take_along_axis(
            by_column, np.argsort(coords[by_column, 1], axis=1), axis=1
        )
        grid = rows_in_column.T  # grid[r, c] = shuffled position at cell (r, c)
        candidates.extend(symmetric.ravel() for symmetric in _symmetric_grids(grid))
    stacked = np.stack(candidates)
    return stacked[int(np.argmin(_placement_cost(stacked, costs, edges)))]


def _descend(
    placement: np.ndarray,
    costs: dict[str, np.ndarray],
    edges: dict[str, tuple[np.ndarray, np.ndarray]],
) -> np.ndarray:
    """Best-improvement descent over all swaps of two cells (evaluated at once)."""
    first, second = np.triu_indices(len(placement), k=1)
    current = _placement_cost(placement[None], costs, edges)[0]
    while True:
        swapped = np.repeat(placement[None], len(first), axis=0)
        rows = np.arange(len(first))
        swapped[rows, first], swapped[rows, second] = placement[second], placement[first]
        candidate_costs = _placement_cost(swapped, costs, edges)
        best = int(np.argmin(candidate_costs))
        if candidate_costs[best] >= current - 1e-9 * max(abs(current), 1.0):
            return placement
        placement, current = swapped[best], candidate_costs[best]


# ------------------------------------------------------------------------------ symmetries

_SYMMETRY_NAMES = (
    "identity",
    "rot90",
    "rot180",
    "rot270",
    "flip_lr",
    "flip_ud",
    "transpose",
    "anti_transpose",
)


def _symmetric_grids(grid: np.ndarray) -> list[np.ndarray]:
    """The 8 images of a square array under the dihedral group, in ``_SYMMETRY_NAMES`` order."""
    return [
        grid,
        np.rot90(grid, 1),
        np.rot90(grid, 2),
        np.rot90(grid, 3),
        np.fliplr(grid),
        np.flipud(grid),
        grid.T,
        np.rot90(grid, 2).T,
    ]


def square_symmetries(side: int) -> dict[str, np.ndarray]:
    """The 8 symmetries of a side x side grid as cell maps: ``maps[name][c]`` is the
    row-major cell that cell c moves to (rotations counter-clockwise, as ``np.rot90``)."""
    cells = np.arange(side * side).reshape(side, side)
    maps = {}
    for name, moved in zip(_SYMMETRY_NAMES, _symmetric_grids(cells), strict=True):
        mapping = np.empty(side * side, dtype=np.int64)
        mapping[moved.ravel()] = np.arange(side * side)
        maps[name] = mapping
    return maps


def symmetry_between(estimate: np.ndarray, pixel_perm: np.ndarray) -> str | None:
    """Name of the square symmetry g with ``estimate == g(pixel_perm)``, or None.

    ``"identity"`` means K2 was recovered exactly; another name means every sub-block of the
    restored image is that rotation/reflection of the plain one.
    """
    estimate, pixel_perm = np.asarray(estimate), np.asarray(pixel_perm)
    side = math.isqrt(pixel_perm.size)
    if side * side != pixel_perm.size or estimate.shape != pixel_perm.shape:
        raise InputError("estimate and pixel_perm must be permutations of the same square size")
    for name, mapping in square_symmetries(side).items():
        if np.array_equal(mapping[pixel_perm], estimate):
            return name
    return None


# --------------------------------------------------------------------------------- scoring


def direct_accuracy(estimate: np.ndarray, true_block_perm: np.ndarray) -> float:
    """Fraction of blocks put in their right place (direct comparison, Cho et al. 2010)."""
    estimate, truth = np.asarray(estimate), np.asarray(true_block_perm)
    if estimate.shape != truth.shape:
        raise InputError(f"estimate {estimate.shape} and truth {truth.shape} differ in length")
    return float(np.mean(estimate == truth))


def _placement_inputs(
    estimate: np.ndarray, true_block_perm: np.ndarray, grid: tuple[int, int] | None
) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """The arrays and the grid of a placement score, checked against each other."""
    estimate, truth = np.asarray(estimate), np.asarray(true_block_perm)
    if estimate.shape != truth.shape:
        raise InputError(f"estimate {estimate.shape} and truth {truth.shape} differ in length")
    grid_h, grid_w = grid or _square_grid(truth.size)
    if grid_h * grid_w != truth.size:
        raise InputError(f"a {grid_h}x{grid_w} grid does not hold {truth.size} blocks")
    return estimate, truth, (grid_h, grid_w)


def neighbour_accuracy(
    estimate: np.ndarray, true_block_perm: np.ndarray, grid: tuple[int, int] | None = None
) -> float:
    """Fraction of plain neighbour pairs (left-right and top-bottom) that are neighbours in
    the same relation in the reassembled image (neighbour comparison; blind to translation).

    Args:
        estimate: estimated ``block_perm`` (encrypted block i placed at plain position
            ``estimate[i]``).
        true_block_perm: the key's ``block_perm``.
        grid: (rows, cols) of the block grid; default square.
    """
    estimate, truth, (grid_h, grid_w) = _placement_inputs(estimate, true_block_perm, grid)
    piece_at = np.argsort(truth)  # encrypted block sitting at each true position
    positions = np.arange(truth.size).reshape(grid_h, grid_w)
    correct, total = 0, 0
    for a, b, step in (
        (positions[:, :-1], positions[:, 1:], (0, 1)),
        (positions[:-1, :], positions[1:, :], (1, 0)),
    ):
        placed_a, placed_b = estimate[piece_at[a.ravel()]], estimate[piece_at[b.ravel()]]
        row_a, col_a = np.divmod(placed_a, grid_w)
        row_b, col_b = np.divmod(placed_b, grid_w)
        correct += int(np.sum((row_b - row_a == step[0]) & (col_b - col_a == step[1])))
        total += a.size
    return correct / total if total else 1.0


def largest_component(
    estimate: np.ndarray, true_block_perm: np.ndarray, grid: tuple[int, int] | None = None
) -> float:
    """Fraction of the blocks in the largest group reassembled correctly relative to each
    other (largest component, Gallagher 2012): blocks joined wherever two blocks adjacent in
    the reassembly are adjacent in the same relation in the plain image. Unlike the direct
    comparison it credits a correct region that sits shifted on the canvas.

    Args: as :func:`neighbour_accuracy`.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    estimate, truth, (grid_h, grid_w) = _placement_inputs(estimate, true_block_perm, grid)
    piece_at_placed = np.argsort(estimate)  # encrypted block placed at each canvas position
    canvas = np.arange(truth.size).reshape(grid_h, grid_w)
    first, second = [], []
    for a, b in ((canvas[:, :-1], canvas[:, 1:]), (canvas[:-1, :], canvas[1:, :])):
        pieces_a, pieces_b = piece_at_placed[a.ravel()], piece_at_placed[b.ravel()]
        step = b.ravel() - a.ravel()  # 1 (right) or grid_w (down) on the canvas
        true_a, true_b = truth[pieces_a], truth[pieces_b]
        same_row_or_col = np.where(step == 1, true_a // grid_w == true_b // grid_w, True)
        joined = (true_b - true_a == step) & same_row_or_col
        first.append(pieces_a[joined])
        second.append(pieces_b[joined])
    rows, cols = np.concatenate(first), np.concatenate(second)
    graph = coo_matrix((np.ones(rows.size), (rows, cols)), shape=(truth.size, truth.size))
    _, labels = connected_components(graph, directed=False)
    return float(np.bincount(labels).max() / truth.size)


# ------------------------------------------------------------------------------ full attack


@dataclass(frozen=True, repr=False, eq=False)
class JigsawResult:
    """Output of :func:`solve_jigsaw`.

    Attributes:
        restored: ``(B, C, H, W)`` uint8 reassembled images, on the input's device.
        pixel_perm: estimated K2 (shared by the batch).
        block_perms: ``(B, N)`` estimated K1 per image (each image is solved on its own).
    """

    restored: torch.Tensor
    pixel_perm: np.ndarray
    block_perms: np.ndarray

    def __repr__(self) -> str:  # estimates are key material when they are right
        return f"JigsawResult(images={self.restored.shape[0]}, blocks={self.block_perms.shape[1]})"


def solve_jigsaw(encrypted_batch: torch.Tensor, block_size: int) -> JigsawResult:
    """Ciphertext-only attack on the proposed cipher: estimate K2 from the whole batch, undo
    it, then solve every image's block puzzle (see the module docstring).

    Args:
        encrypted_batch: ``(B, C, H, W)`` uint8 ciphertexts of one key.
        block_size: M.
    """
    check_image_batch(encrypted_batch, "encrypted_batch")
    size = tuple(encrypted_batch.shape[-2:])
    grid = _block_grid(size, block_size)
    identity_blocks = np.arange(grid[0] * grid[1])
    pixel_perm = estimate_pixel_perm(encrypted_batch, block_size)
    unshuffled = _decrypt(encrypted_batch, identity_blocks, pixel_perm, block_size)
    block_perms = np.stack([solve_block_puzzle(image, block_size) for image in unshuffled])
    identity_pixels = np.arange((block_size // 2) ** 2)
    restored = torch.stack(
        [
            _decrypt(image[None], perm, identity_pixels, block_size)[0]
            for image, perm in zip(unshuffled, block_perms, strict=True)
        ]
    )
    return JigsawResult(restored=restored, pixel_perm=pixel_perm, block_perms=block_perms)


def jigsaw_attack(encrypted_batch: torch.Tensor, block_size: int) -> torch.Tensor:
    """The restored images of :func:`solve_jigsaw`: ``(B, C, H, W)`` uint8."""
    return solve_jigsaw(encrypted_batch, block_size).restored


# -------------------------------------------------------------------------------- helpers


def _decrypt(
    images: torch.Tensor, block_perm: np.ndarray, pixel_perm: np.ndarray, block_size: int
) -> torch.Tensor:
    """Undo a (possibly estimated) proposed-cipher key with the cipher itself."""
    height, width = images.shape[-2:]
    key = CipherKey(
        "proposed",
        (height, width),
        block_size,
        {"block_perm": block_perm, "pixel_perm": pixel_perm},
        {"channel_mix": False},
    )
    return ProposedCipher(key).decrypt(images)


def _pieces(image: np.ndarray, block_size: int) -> np.ndarray:
    """``(C, H, W)`` -> ``(N, C, M, M)`` blocks in row-major order."""
    channels, height, width = image.shape
    grid_h, grid_w = height // block_size, width // block_size
    view = image.reshape(channels, grid_h, block_size, grid_w, block_size)
    return view.transpose(1, 3, 0, 2, 4).reshape(grid_h * grid_w, channels, block_size, block_size)


def _block_grid(size: tuple[int, ...], block_size: int) -> tuple[int, int]:
    height, width = size
    if block_size <= 1 or height % block_size or width % block_size:
        raise InputError(
            f"block size {block_size} must be at least 2 and divide the image size {height}x{width}"
        )
    return height // block_size, width // block_size


def _square_grid(count: int) -> tuple[int, int]:
    side = math.isqrt(count)
    if side * side != count:
        raise InputError(f"{count} blocks do not form a square grid; pass grid=(rows, cols)")
    return side, side


def _jigsaw_inputs(cipher: Cipher) -> tuple[Input, ...]:
    """The EtC solver orients its reassemblies with a prior from public plain images."""
    if cipher.structure == Structure.ETC_BLOCKS:
        return (Input(InputKind.PUBLIC_IMAGES, "num_public_images"),)
    return ()


def score_jigsaw(estimate: Any, key: CipherKey) -> dict[str, Any]:
    """How much of the victim key a jigsaw reassembly got right (researcher side)."""
    from vitlearnenc.attacks.jigsaw_etc import EtCJigsawResult, placement_scores

    if isinstance(estimate, EtCJigsawResult):
        scores = [placement_scores(p, key["block_perm"]) for p in estimate.block_positions]
        return {
            f"block_{name}_mean_best_orientation": float(np.mean([s[name] for s in scores]))
            for name in ("direct", "neighbour", "largest_component")
        }
    truth_blocks, truth_pixels = key["block_perm"], key["pixel_perm"]
    direct = [direct_accuracy(perm, truth_blocks) for perm in estimate.block_perms]
    neighbour = [neighbour_accuracy(perm, truth_blocks) for perm in estimate.block_perms]
    component = [largest_component(perm, truth_blocks) for perm in estimate.block_perms]
    return {
        "pixel_perm_exact": bool(np.array_equal(estimate.pixel_perm, truth_pixels)),
        "pixel_perm_fraction": float(np.mean(estimate.pixel_perm == truth_pixels)),
        "pixel_perm_symmetry": symmetry_between(estimate.pixel_perm, truth_pixels),
        "block_direct_mean": float(np.mean(direct)),
        "block_neighbour_mean": float(np.mean(neighbour)),
        "block_largest_component_mean": float(np.mean(component)),
        "images_all_blocks_right": float(np.mean(np.asarray(direct) == 1.0)),
    }


def _jigsaw_applies(cipher: Cipher) -> str | None:
    if cipher.structure in (Structure.PIXEL_SHUFFLED_BLOCKS, Structure.ETC_BLOCKS):
        return None
    if cipher.structure_note:
        return cipher.structure_note
    return (
        "the solvers reassemble scrambled blocks whose content is intact up to one shared, "
        "channel-tied pixel shuffle (the proposed cipher) or up to a rotation/flip, "
        f"negation and colour order per block (EtC); {cipher.name} has no such blocks"
    )


@register_attack("jigsaw", applies=_jigsaw_applies, inputs=_jigsaw_inputs, score_key=score_jigsaw)
def run_jigsaw(context: AttackContext) -> AttackOutcome:
    """The jigsaw solver of the cipher's structure on the victim ciphertexts."""
    block = context.cipher.block_size
    if context.cipher.structure == Structure.ETC_BLOCKS:
        from vitlearnenc.attacks.jigsaw_etc import ImagePrior, solve_etc_jigsaw

        public = context.public_images
        prior = ImagePrior.fit(public) if public is not None else None
        etc_result = solve_etc_jigsaw(context.victim_ciphertexts, block, prior)
        budget = {"prior_images": 0 if public is None else len(public)}
        return AttackOutcome(etc_result.restored, estimate=etc_result, budget=budget)
    result = solve_jigsaw(context.victim_ciphertexts, block)
    return AttackOutcome(result.restored, estimate=result)
