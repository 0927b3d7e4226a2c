"""Jigsaw-puzzle-solver attack on EtC: block scrambling plus, per block, rotation/flip,
negative-positive transform and colour shuffling (spec §2.4, step 2: "allow rotated / flipped /
NP / colour-shuffled pieces"; Chuman, Kurihara, Kiya 2017).

Ciphertext-only. Every encrypted block is a plain block seen through one of 8 dihedral maps x
2 (negated or not) x C! colour orders: 96 *variants* for RGB. The solver grows the image the
way :mod:`vitlearnenc.attacks.jigsaw` does for fixed pieces, but a candidate is a (piece,
variant) pair: at every step it fills the open slot whose best candidate fits the placed
neighbours most clearly better than the runner-up piece (Paikin–Tal's confidence), with the
variant that fits best (Mahalanobis gradient compatibility, Gallagher 2012). Seam costs of a
piece are computed once, when it is placed, against every variant of every other piece.

The result is right only up to one global variant, which the first piece fixes arbitrarily
(rotating, negating or recolouring the whole image changes no seam). The attacker picks it
with a prior from public plain images of the domain: the global variant under which the image
is most likely given the per-pixel mean and spread of those images.

Written here because no puzzle-solver package handles EtC's pieces.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch

from vitlearnenc.attacks.jigsaw import (
    _OPPOSITE,
    _block_grid,
    _open_slots,
    _pieces,
    direct_accuracy,
    largest_component,
    mgc_right,
    neighbour_accuracy,
    square_symmetries,
)
from vitlearnenc.attacks.scoring import check_image_batch
from vitlearnenc.errors import InputError

_DIHEDRAL = 8
_MAX_VALUE = 255.0


def piece_variants(pieces: np.ndarray) -> np.ndarray:
    """Every rotation/flip x negation x colour order of every piece.

    Args:
        pieces: ``(N, C, M, M)`` float pieces on the 0..255 scale (square in the last two axes).

    Returns:
        ``(N, 8 * 2 * C!, C, M, M)``; variant 0 is the piece itself.
    """
    orders = list(itertools.permutations(range(pieces.shape[1])))
    dihedral = []
    for code in range(_DIHEDRAL):
        rotated = np.rot90(pieces, code % 4, axes=(2, 3))
        dihedral.append(rotated[..., ::-1] if code >= 4 else rotated)
    variants = [
        (_MAX_VALUE - turned if negated else turned)[:, list(order)]
        for turned in dihedral
        for negated in (False, True)
        for order in orders
    ]
    return np.ascontiguousarray(np.stack(variants, axis=1))


def seam_costs(placed: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """``(4, K)`` MGC of every candidate ``(K, C, M, M)`` put right of / below / left of /
    above the placed piece ``(C, M, M)``."""
    piece = placed[None]
    flip = (0, 1, 3, 2)  # transposing a piece turns its bottom edge into its right edge
    return np.stack(
        [
            mgc_right(piece, candidates)[0],
            mgc_right(piece.transpose(flip), candidates.transpose(flip))[0],
            mgc_right(candidates, piece)[:, 0],
            mgc_right(candidates.transpose(flip), piece.transpose(flip))[:, 0],
        ]
    )


def solve_etc_puzzle(image: torch.Tensor, block_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Reassemble one EtC-encrypted image up to a global variant.

    Args:
        image: ``(C, H, W)`` uint8 ciphertext.
        block_size: M, dividing H and W.

    Returns:
        ``(C, H, W)`` float64 reassembly (0..255), its orientation, polarity and colour order
        fixed by the first piece placed; and ``(N,)`` the row-major position of every
        encrypted block in it.
    """
    grid = _block_grid(tuple(image.shape[-2:]), block_size)
    pieces = _pieces(image.cpu().numpy().astype(np.float64), block_size)
    count = len(pieces)
    variants = piece_variants(pieces)
    per_piece = variants.shape[1]
    candidates = variants.reshape(count * per_piece, *pieces.shape[1:])
    owner = np.repeat(np.arange(count), per_piece)

    canvas = np.full((2 * grid[0] + 1, 2 * grid[1] + 1), -1, dtype=np.int64)
    chosen = np.full(count, -1, dtype=np.int64)  # variant of every placed piece
    costs = np.zeros((count, 4, len(candidates)))  # seam costs around every placed piece
    first = int(pieces.reshape(count, -1).std(axis=1).argmax())  # most texture, fewest ties
    origin = (grid[0], grid[1])
    box = [origin[0], origin[0], origin[1], origin[1]]

    def place(piece: int, variant: int, slot: tuple[int, int]) -> None:
        canvas[slot] = piece
        chosen[piece] = variant
        costs[piece] = seam_costs(variants[piece, variant], candidates)
        costs[piece][:, owner == piece] = np.inf

    place(first, 0, origin)
    for _ in range(count - 1):
        slots, neighbours = _open_slots(canvas, box, grid)
        valid = neighbours >= 0  # (S, 4): neighbour in direction d of the slot
        owners = np.where(valid, neighbours, 0)
        # the slot lies in direction OPPOSITE[d] of its neighbour in direction d
        around = costs[owners, np.broadcast_to(_OPPOSITE, owners.shape)]  # (S, 4, K)
        total = np.where(valid[..., None], around, 0.0).sum(axis=1) / valid.sum(axis=1)[:, None]
        total[:, chosen[owner] >= 0] = np.inf
        best_per_piece = total.reshape(len(slots), count, per_piece).min(axis=2)
        ranked = np.sort(best_per_piece, axis=1)  # placed pieces sort last (inf)
        confidence = 1.0 - ranked[:, 0] / np.maximum(ranked[:, 1], 1e-9)
        slot_index = int(np.argmax(np.where(np.isfinite(ranked[:, 0]), confidence, -np.inf)))
        candidate = int(np.argmin(total[slot_index]))
        slot = slots[slot_index]
        place(int(owner[candidate]), candidate % per_piece, slot)
        box = [
            min(box[0], slot[0]),
            max(box[1], slot[0]),
            min(box[2], slot[1]),
            max(box[3], slot[1]),
        ]

    restored = np.empty(pieces.shape[1:2] + tuple(image.shape[-2:]), dtype=np.float64)
    positions = np.empty(count, dtype=np.int64)
    for row, col in zip(*np.nonzero(canvas >= 0), strict=True):
        piece = canvas[row, col]
        positions[piece] = (row - box[0]) * grid[1] + (col - box[2])
        top, left = (row - box[0]) * block_size, (col - box[2]) * block_size
        block = variants[piece, chosen[piece]]
        restored[:, top : top + block_size, left : left + block_size] = block
    return restored, positions


@dataclass(frozen=True)
class ImagePrior:
    """Per-pixel mean and spread of public plain images, ``(C, H, W)`` each: what the attacker
    knows of the domain, used to choose the global variant of a reassembly."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, public_images: torch.Tensor) -> ImagePrior:
        """Fit to ``(N, C, H, W)`` uint8 public images (the spread is floored at 1 level)."""
        check_image_batch(public_images, "public_images")
        values = public_images.cpu().numpy().astype(np.float64)
        return cls(values.mean(axis=0), np.maximum(values.std(axis=0), 1.0))

    def orient(self, restored: np.ndarray) -> np.ndarray:
        """The global variant of a square ``(C, H, W)`` reassembly that is most likely under
        the prior (smallest sum of squared standardised differences)."""
        candidates = piece_variants(restored[None])[0]
        distance = (((candidates - self.mean) / self.std) ** 2).reshape(len(candidates), -1)
        return candidates[int(distance.sum(axis=1).argmin())]


@dataclass(frozen=True, repr=False, eq=False)
class EtCJigsawResult:
    """Output of :func:`solve_etc_jigsaw`.

    Attributes:
        restored: ``(B, C, H, W)`` uint8 reassembled images, globally oriented by the prior.
        block_positions: ``(B, N)`` row-major position of every encrypted block in the
            reassembly *before* the global orientation (compare up to the 8 symmetries of the
            grid, e.g. with :func:`placement_scores`).
    """

    restored: torch.Tensor
    block_positions: np.ndarray

    def __repr__(self) -> str:
        return f"EtCJigsawResult(images={self.restored.shape[0]})"


def solve_etc_jigsaw(
    encrypted_batch: torch.Tensor, block_size: int, prior: ImagePrior | None = None
) -> EtCJigsawResult:
    """Ciphertext-only attack on EtC: solve every image's puzzle of variant pieces, then choose
    its global variant with ``prior`` (square images; without a prior the first piece's
    variant stands).

    Args:
        encrypted_batch: ``(B, C, H, W)`` uint8 EtC ciphertexts (each image's key may differ).
        block_size: M.
        prior: :class:`ImagePrior` fitted to public plain images of the same size.
    """
    check_image_batch(encrypted_batch, "encrypted_batch")
    height, width = encrypted_batch.shape[-2:]
    if prior is not None and (height != width or prior.mean.shape != encrypted_batch.shape[1:]):
        raise InputError(
            f"the prior ({prior.mean.shape}) must match square ciphertexts "
            f"({tuple(encrypted_batch.shape[1:])}); fit it to public images of the same size"
        )
    restored, positions = [], []
    for image in encrypted_batch:
        solved, placed = solve_etc_puzzle(image, block_size)
        restored.append(prior.orient(solved) if prior is not None else solved)
        positions.append(placed)
    stacked = torch.as_tensor(np.stack(restored).round().clip(0, 255).astype(np.uint8))
    return EtCJigsawResult(stacked.to(encrypted_batch.device), np.stack(positions))


def placement_scores(positions: np.ndarray, true_block_perm: np.ndarray) -> dict[str, float]:
    """Direct, neighbour and largest-component scores of one reassembly's block placement
    (:mod:`vitlearnenc.attacks.jigsaw`), each the best over the 8 symmetries of the square
    grid: the solver cannot know the global orientation, the prior chooses it afterwards."""
    side = math.isqrt(len(true_block_perm))
    if side * side != len(true_block_perm):
        raise InputError(f"{len(true_block_perm)} blocks do not form a square grid")
    scores = {"direct": 0.0, "neighbour": 0.0, "largest_component": 0.0}
    for mapping in square_symmetries(side).values():
        moved = mapping[positions]
        scores["direct"] = max(scores["direct"], direct_accuracy(moved, true_block_perm))
        scores["neighbour"] = max(scores["neighbour"], neighbour_accuracy(moved, true_block_perm))
        scores["largest_component"] = max(
            scores["largest_component"], largest_component(moved, true_block_perm)
        )
    return scores
