"""Shared pieces of the attacks on the linear patch ciphers (orthomix, orthomix_sub).

Threat model (Kerckhoffs): the attacker knows the family ``y_i = A (x_{pi(i)} - 0.5) + 0.5``
(block size, image size, which variant), holds every ciphertext of one key and public plain
images of the same domain, never the key. An attack returns a :class:`LinearKeyEstimate`:
an estimate of A (``L x L`` over the C*M*M patch vector, channel-major, timm order) and of K1,
and the images restored with them. Scoring against the truth happens elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vitlearnenc.attacks.jigsaw import _compatibility, _place, edge_dissimilarity


@dataclass(frozen=True, repr=False, eq=False)
class LinearKeyEstimate:
    """An attack's estimate of a linear patch cipher's key, and what it restores.

    Attributes:
        matrix: ``(L, L)`` float64 estimate of A (ciphertext patch = A @ plain patch, centred).
        block_perm: ``(N,)`` estimate of K1 (encrypted block i = plain block ``block_perm[i]``).
        restored: ``(B, C, H, W)`` uint8 victim images decrypted with the estimates.
        budget: what the attack used (pairs, public images, ciphertexts, seconds).
    """

    matrix: np.ndarray
    block_perm: np.ndarray
    restored: torch.Tensor
    budget: dict[str, float]

    def __repr__(self) -> str:  # estimates are key material when they are right
        return f"LinearKeyEstimate(L={self.matrix.shape[0]}, blocks={self.block_perm.size})"


def centred_patches(images: torch.Tensor, block_size: int) -> np.ndarray:
    """``(B, C, H, W)`` images (uint8 0..255 or real-valued 0..1 ciphertexts) -> ``(B, N, L)``
    float64 patch vectors minus 0.5, in row-major block order, channel-major within a block."""
    values = images.double() / 255 if images.dtype == torch.uint8 else images.double()
    batch, channels, height, width = values.shape
    grid = values.reshape(batch, channels, height // block_size, block_size, -1, block_size)
    patches = grid.permute(0, 2, 4, 1, 3, 5).reshape(batch, -1, channels * block_size**2)
    return patches.numpy() - 0.5


def patches_to_images(
    patches: np.ndarray, channels: int, image_size: tuple[int, int], block_size: int
) -> torch.Tensor:
    """``(B, N, L)`` centred patch vectors -> ``(B, C, H, W)`` uint8 images (rounded, clamped)."""
    batch = patches.shape[0]
    height, width = image_size
    grid = patches.reshape(
        batch, height // block_size, width // block_size, channels, block_size, block_size
    )
    values = grid.transpose(0, 3, 1, 4, 2, 5).reshape(batch, channels, height, width) + 0.5
    return torch.from_numpy(np.clip(np.round(values * 255), 0, 255).astype(np.uint8))


def restore(
    encrypted: torch.Tensor, matrix: np.ndarray, block_perm: np.ndarray, block_size: int
) -> torch.Tensor:
    """Decrypt ``encrypted`` with estimates of A (applied as its transpose: A is orthogonal
    for the real key; estimates are snapped to orthogonal by the attacks) and K1."""
    patches = centred_patches(encrypted, block_size) @ matrix  # rows: A^T y
    plain = np.empty_like(patches)
    plain[:, block_perm] = patches
    channels = encrypted.shape[1]
    return patches_to_images(plain, channels, tuple(encrypted.shape[-2:]), block_size)


def nearest_orthogonal(matrix: np.ndarray) -> np.ndarray:
    """The orthogonal matrix closest to ``matrix`` in Frobenius norm (polar factor, via SVD)."""
    left, _, right = np.linalg.svd(matrix)
    return left @ right


def shared_block_perm(
    unscrambled: np.ndarray,
    channels: int,
    image_size: tuple[int, int],
    block_size: int,
    max_images: int = 64,
) -> np.ndarray:
    """Solve the one block puzzle that K1 poses for every image of the corpus at once.

    K1 is shared by all images, so the seam dissimilarities of the candidate placements are
    summed over ``max_images`` images (each normalised by its median, so no image dominates)
    before the greedy Paikin-Tal placement of :mod:`vitlearnenc.attacks.jigsaw` runs once.

    Args:
        unscrambled: ``(B, N, L)`` centred patch vectors in the *encrypted* block order, the
            mixing already undone (as well as the attack could).
    """
    grid = (image_size[0] // block_size, image_size[1] // block_size)
    total = np.zeros((4, grid[0] * grid[1], grid[0] * grid[1]))
    for vectors in unscrambled[:max_images]:
        pieces = (vectors + 0.5).reshape(-1, channels, block_size, block_size) * 255
        dissimilarity = edge_dissimilarity(pieces)
        finite = dissimilarity[np.isfinite(dissimilarity)]
        total += dissimilarity / max(float(np.median(finite)), 1e-9)
    compatibility, buddies = _compatibility(total)
    return _place(compatibility, buddies, grid)
