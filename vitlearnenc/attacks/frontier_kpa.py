"""Known-plaintext attack on the linear patch ciphers: K1 and A from k (plain, cipher) pairs.

Orthogonal A keeps inner products, so within one image the Gram matrix of the centred patch
vectors is the same before and after encryption, up to the block order K1. Each plain block
position therefore gets a K1- and A-invariant signature, the sorted row of its image's Gram
matrix (its inner products with every patch of the image), concatenated over the k images;
matching encrypted to plain positions by these signatures (Hungarian assignment,
:func:`scipy.optimize.linear_sum_assignment`) gives K1. With the blocks aligned,
``Y = A X`` is a least-squares problem over orthogonal A (Kerckhoffs: the family is known), the
orthogonal Procrustes problem, solved by one SVD; k*N >= L - 1 patch pairs in general position
determine A. The attack then decrypts every other ciphertext of the key.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from vitlearnenc.attacks.frontier_common import (
    LinearKeyEstimate,
    centred_patches,
    nearest_orthogonal,
    restore,
)
from vitlearnenc.attacks.kpa import KnownPlaintextError


def _signatures(patches: np.ndarray) -> np.ndarray:
    """``(k, N, L)`` -> ``(N, k * N)``: per block position, its sorted Gram rows over images."""
    gram = np.einsum("knl,kml->knm", patches, patches)
    return np.sort(gram, axis=2).transpose(1, 0, 2).reshape(patches.shape[1], -1)


def recover_linear_key(
    plain: torch.Tensor, encrypted: torch.Tensor, block_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """K1 and A from known pairs.

    Args:
        plain: ``(k, C, H, W)`` uint8 plain images.
        encrypted: their ``(k, C, H, W)`` real-valued ciphertexts under one key.
        block_size: M.

    Returns:
        ``(matrix, block_perm)``: A as ``(L, L)`` float64 and K1.

    Raises:
        KnownPlaintextError: the pairs do not fit together (shapes, dtypes).
    """
    if plain.shape != encrypted.shape or plain.dtype != torch.uint8:
        raise KnownPlaintextError(
            f"need uint8 plain images and ciphertexts of the same shape, got {plain.dtype} "
            f"{tuple(plain.shape)} and {encrypted.dtype} {tuple(encrypted.shape)}"
        )
    x, y = centred_patches(plain, block_size), centred_patches(encrypted, block_size)
    signature_x, signature_y = _signatures(x), _signatures(y)
    cost = ((signature_y[:, None, :] - signature_x[None, :, :]) ** 2).sum(axis=2)
    rows, block_perm = linear_sum_assignment(cost)
    block_perm = block_perm[np.argsort(rows)].astype(np.int64)
    sources = x[:, block_perm].reshape(-1, x.shape[2])  # plain patch behind each cipher patch
    targets = y.reshape(-1, y.shape[2])
    matrix = nearest_orthogonal(targets.T @ sources)  # Procrustes: argmin ||Y - A X||, A^T A = I
    return matrix, block_perm


def linear_kpa_attack(
    plain: torch.Tensor, encrypted: torch.Tensor, victims: torch.Tensor, block_size: int
) -> LinearKeyEstimate:
    """Recover the key from the pairs and decrypt ``victims`` (ciphertexts of the same key)."""
    start = time.perf_counter()
    matrix, block_perm = recover_linear_key(plain, encrypted, block_size)
    restored = restore(victims, matrix, block_perm, block_size)
    budget = {"pairs": float(plain.shape[0]), "seconds": time.perf_counter() - start}
    return LinearKeyEstimate(matrix, block_perm, restored, budget)
