"""Ciphertext-only, higher-order attack on the linear patch ciphers: ICA matched across domains.

Second-order statistics leave A undetermined inside subspaces of near-equal eigenvalues. ICA
does not: natural-image patches are sparse mixtures of edge-like components, identifiable up to
order and sign from their non-Gaussian statistics. Since the ciphertext patches are ``A x``,
their independent components are A times those of the plain patches. The attack

1. runs FastICA (scikit-learn) on the ciphertext mixing units and, separately, on mixing units of
   public plain images, giving basis vectors (mixing-matrix columns) ``m_c`` and ``m_p``;
2. matches them: each ciphertext basis vector to the public one whose image under the current
   estimate of A is most parallel (Hungarian assignment on ``1 - |cos|``, the sign from the
   cosine), starting from the second-order estimate
   (:func:`~vitlearnenc.attacks.frontier_covariance.estimate_mixing`);
3. re-estimates A as the orthogonal Procrustes solution over the matched ICA pairs together
   with the energy-weighted eigenvector pairs, and repeats 2-3 a few times;
4. solves the shared block puzzle K1 as the second-order attack does.

Memory stays bounded in the corpus size N: the second-order start pools float64 moments chunk
by chunk (:func:`~vitlearnenc.attacks.frontier_covariance.estimate_mixing`), and FastICA runs
on a bounded, seeded random subset of at most ``max_samples`` mixing units per domain, drawn
uniformly from every unit of the corpus and gathered in one pass (:func:`ica_sample`). FastICA
whitens that subset itself (its own covariance, not the pooled one): 60,000 units estimate the
whitening far better than the matching needs, and it keeps the restorations identical to the
one-tensor implementation the committed curves were measured with. Mini-batch ICA was not
needed: the subset is the memory bound (60,000 x L float64: 23 MB at 32/4, 369 MB for dense
orthomix at 224/16).
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.decomposition import FastICA

from vitlearnenc.attacks.frontier_common import (
    LinearKeyEstimate,
    nearest_orthogonal,
)
from vitlearnenc.attacks.frontier_covariance import (
    Images,
    estimate_mixing,
    expand_mixing,
    unit_pieces,
    unmix_and_solve,
)
from vitlearnenc.ciphers import get_cipher_class
from vitlearnenc.errors import InputError


def ica_basis(patches: np.ndarray, components: int, seed: int) -> np.ndarray:
    """``(L, K)`` FastICA basis vectors (mixing-matrix columns, scaled by their sources' standard
    deviation) of ``(n, L)`` centred patch vectors."""
    ica = FastICA(
        n_components=components,
        whiten="unit-variance",
        random_state=seed,
        max_iter=300,
        tol=1e-3,
    )
    with warnings.catch_warnings():  # a loose tolerance is enough to match bases
        warnings.simplefilter("ignore")
        ica.fit(patches)
    return ica.mixing_


def ica_sample(
    images: Images, unit_size: int, total: int, max_samples: int, rng: np.random.Generator
) -> np.ndarray:
    """``(min(total, max_samples), L)`` mixing units drawn without replacement, uniformly from
    all ``total`` units of ``images`` (one pass; the draw is ``rng.permutation(total)``'s head,
    so a tensor and its chunks give the same rows in the same order)."""
    chosen = rng.permutation(total)[:max_samples]
    sample: np.ndarray | None = None
    for start, units in unit_pieces(images, unit_size):
        if sample is None:
            sample = np.empty((len(chosen), units.shape[1]))
        inside = (chosen >= start) & (chosen < start + len(units))
        sample[inside] = units[chosen[inside] - start]
    if sample is None:
        raise InputError("the corpus yielded no images for the ICA sample; pass a non-empty one")
    return sample


def pooled_ica_bases(
    encrypted: Images,
    public: Images,
    estimate: dict[str, np.ndarray],
    mix_size: int,
    components: int,
    max_samples: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """FastICA bases of the ciphertext and the public mixing units (:func:`ica_sample`
    subsets, seeded), for :func:`refine_with_ica`."""
    rng = np.random.default_rng(seed)
    bases = []
    for images, total in zip((encrypted, public), estimate["units"], strict=True):
        units = ica_sample(images, mix_size, int(total), max_samples, rng)
        bases.append(ica_basis(units, min(components, units.shape[1]), seed))
    return bases[0], bases[1]


def match_bases(
    cipher_basis: np.ndarray, plain_basis: np.ndarray, matrix: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hungarian matching of ciphertext to public basis vectors under the estimate ``matrix``.

    Returns:
        ``(cipher_index, plain_index, signs)`` of the matched pairs.
    """
    mapped = matrix @ plain_basis
    cos = (cipher_basis / np.linalg.norm(cipher_basis, axis=0)).T @ (
        mapped / np.linalg.norm(mapped, axis=0)
    )
    rows, cols = linear_sum_assignment(1 - np.abs(cos))
    return rows, cols, np.sign(cos[rows, cols])


def refine_with_ica(
    estimate: dict[str, np.ndarray],
    cipher_basis: np.ndarray,
    plain_basis: np.ndarray,
    rounds: int = 3,
) -> np.ndarray:
    """Steps 2-3 of the module docstring, from a second-order ``estimate``."""
    signs = estimate["signs"]
    scale_c = np.sqrt(np.maximum(estimate["cipher_values"], 0))
    scale_p = np.sqrt(np.maximum(estimate["plain_values"], 0))
    eigen_cross = (estimate["cipher_vectors"] * signs * scale_c) @ (
        estimate["plain_vectors"] * scale_p
    ).T
    matrix = estimate["matrix"]
    for _ in range(rounds):
        rows, cols, pair_signs = match_bases(cipher_basis, plain_basis, matrix)
        ica_cross = (cipher_basis[:, rows] * pair_signs) @ plain_basis[:, cols].T
        matrix = nearest_orthogonal(eigen_cross + ica_cross)
    return matrix


def ica_attack(
    encrypted: torch.Tensor,
    public: torch.Tensor,
    block_size: int,
    variant: str = "orthomix",
    components: int = 64,
    max_samples: int = 60_000,
    seed: int = 0,
) -> LinearKeyEstimate:
    """The whole higher-order attack (module docstring).

    Args:
        encrypted: ``(B, C, H, W)`` real-valued ciphertexts of one key.
        public: ``(P, C, H, W)`` uint8 public plain images of the same domain and size.
        block_size: M.
        variant: ``"orthomix"`` or ``"orthomix_sub"``.
        components: ICA components per domain (at most the mixing-unit length).
        max_samples: mixing units per domain given to FastICA (a seeded random subset).
        seed: seed of the subsets and of FastICA.
    """
    start = time.perf_counter()
    mix_size = block_size // get_cipher_class(variant).mixing_unit_divisor
    estimate = estimate_mixing(encrypted, public, mix_size, block_size)
    bases = pooled_ica_bases(encrypted, public, estimate, mix_size, components, max_samples, seed)
    matrix = refine_with_ica(estimate, *bases)
    block_perm, restored = unmix_and_solve(encrypted, matrix, mix_size, block_size)
    budget = {
        "ciphertexts": float(encrypted.shape[0]),
        "public_images": float(public.shape[0]),
        "seconds": time.perf_counter() - start,
    }
    full = expand_mixing(matrix, mix_size, block_size, encrypted.shape[1])
    return LinearKeyEstimate(full, block_perm, restored, budget)
