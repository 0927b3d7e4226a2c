"""Population attacks on the linear patch ciphers (``orthomix``, ``orthomix_sub``).

These ciphers encrypt every patch as ``A (x - 0.5) + 0.5`` with one keyed orthogonal A and
scramble the blocks with K1, both shared by the whole corpus. The ciphertext-only attacks of
:mod:`~vitlearnenc.attacks.frontier_covariance` (second order: eigenvectors of the pooled patch
second moments, signs from third moments and a smoothness prior) and
:mod:`~vitlearnenc.attacks.frontier_ica` (the same, refined by FastICA bases matched across the
domains) pool every mixing unit of every ciphertext of the corpus; K1 is then one block puzzle
whose seam costs are summed over the first :data:`PUZZLE_IMAGES` ciphertexts. This module runs
them on a corpus and returns a :class:`LinearPopulationResult` with ``decrypt``, like the other
population attacks.

Ciphertexts are real-valued (float32 by default), so the corpus is a float tensor, or a
re-iterable of float chunks (a list, or an object that encrypts on every pass), not a uint8
:class:`~vitlearnenc.attacks.population.Corpus`. Memory is bounded in N: the statistics are
second and third moments accumulated in float64 piece by piece over a few passes (second
moments, then the third moments on the eigenvectors, then for ICA a seeded subset of at most
:data:`ICA_SAMPLES` units per domain, see :mod:`~vitlearnenc.attacks.frontier_ica`); only the
first :data:`PUZZLE_IMAGES` ciphertexts are held whole. The public images are read the same way.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from vitlearnenc.attacks.frontier_common import restore
from vitlearnenc.attacks.frontier_covariance import (
    estimate_mixing,
    expand_mixing,
    head,
    unmix_and_solve,
)
from vitlearnenc.attacks.frontier_ica import pooled_ica_bases, refine_with_ica
from vitlearnenc.attacks.population.corpus import Corpus
from vitlearnenc.errors import InputError

#: ciphertexts whose seams the shared block puzzle sums (as in the frontier study)
PUZZLE_IMAGES = 64
#: mixing units per domain given to FastICA (a seeded random subset; as the frontier study)
ICA_SAMPLES = 60_000
#: ICA components per domain (at most the mixing-unit length)
ICA_COMPONENTS = 64

Method = Literal["covariance", "ica"]


@dataclass(frozen=True, repr=False, eq=False)
class LinearPopulationResult:
    """The key estimate of a population attack on a linear patch cipher (key material).

    Attributes:
        matrix: ``(L, L)`` float64 estimate of A on the whole C*M*M patch vector.
        block_perm: ``(N,)`` estimate of K1 (encrypted block i = plain block ``block_perm[i]``).
        block_size: M.
        images: ciphertexts pooled.
        method: ``"covariance"`` or ``"ica"``.
    """

    matrix: np.ndarray
    block_perm: np.ndarray
    block_size: int
    images: int
    method: str

    def decrypt(self, encrypted: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` real-valued ciphertexts -> uint8 restorations."""
        return restore(encrypted, self.matrix, self.block_perm, self.block_size)

    def __repr__(self) -> str:  # the estimates are the key when they are right
        return (
            f"LinearPopulationResult(method={self.method!r}, images={self.images}, "
            f"L={self.matrix.shape[0]}, blocks={self.block_perm.size})"
        )


def as_ciphertexts(corpus: torch.Tensor | Iterable[torch.Tensor]) -> Iterable[torch.Tensor]:
    """Check a corpus of real-valued ciphertexts; return it as a re-iterable of chunks
    (nothing is copied: the attack reads it pass by pass)."""
    if isinstance(corpus, torch.Tensor):
        chunks: Iterable[torch.Tensor] = [corpus]
    elif iter(corpus) is corpus:
        raise InputError(
            "the corpus is a one-shot iterator, but the attack reads it several times; "
            "pass a tensor, a list of chunks, or an object that yields them on every pass"
        )
    else:
        chunks = corpus
    first = next(iter(chunks), None)
    if first is None or first.ndim != 4 or len(first) == 0:
        raise InputError(
            "the corpus must be (N, C, H, W) ciphertexts (a tensor or chunks), N >= 1; "
            "pass the victim ciphertexts as the cipher wrote them"
        )
    if first.dtype == torch.uint8:
        raise InputError(
            "linear patch ciphertexts are real-valued, got uint8; pass them as the cipher "
            "wrote them (float32 or float16), not rounded to images"
        )
    return chunks


def linear_population_attack(
    corpus: torch.Tensor | Iterable[torch.Tensor],
    public: Corpus | torch.Tensor,
    block_size: int,
    mixing_unit_divisor: int,
    method: Method = "covariance",
    seed: int = 0,
) -> LinearPopulationResult:
    """Solve A and K1 once from the pooled corpus statistics (module docstring).

    Args:
        corpus: N real-valued ciphertexts of one key (a tensor or a re-iterable of chunks).
        public: uint8 public plain images of the same domain and size (never the victims),
            a tensor or a :class:`Corpus` (read chunk by chunk).
        block_size: M.
        mixing_unit_divisor: the cipher's public variant: A acts on (M / divisor)-blocks.
        method: ``"covariance"`` (second order) or ``"ica"`` (second order refined by ICA).
        seed: seed of the ICA subsets and of FastICA.
    """
    encrypted = as_ciphertexts(corpus)
    first = head(encrypted, PUZZLE_IMAGES)
    shape = public.image_shape if isinstance(public, Corpus) else tuple(public.shape[1:])
    dtype = torch.uint8 if isinstance(public, Corpus) else public.dtype
    if dtype != torch.uint8 or tuple(shape) != tuple(first.shape[1:]):
        raise InputError(
            f"public images must be uint8 of the ciphertexts' shape {tuple(first.shape[1:])}"
            f", got {dtype} {tuple(shape)}"
        )
    if method not in ("covariance", "ica"):
        raise InputError(f"method must be 'covariance' or 'ica', got {method!r}")
    mix_size = block_size // mixing_unit_divisor
    estimate = estimate_mixing(encrypted, public, mix_size, block_size)
    matrix = estimate["matrix"]
    if method == "ica":
        bases = pooled_ica_bases(
            encrypted, public, estimate, mix_size, ICA_COMPONENTS, ICA_SAMPLES, seed
        )
        matrix = refine_with_ica(estimate, *bases)
    block_perm, _ = unmix_and_solve(first, matrix, mix_size, block_size)
    full = expand_mixing(matrix, mix_size, block_size, first.shape[1])
    images = int(estimate["units"][0]) * mix_size**2 // math.prod(first.shape[-2:])
    return LinearPopulationResult(full, block_perm, block_size, images, method)


def dihedral_indices(channels: int, size: int, variant: int) -> np.ndarray:
    """Flat indices of a ``(channels, size, size)`` array after one of the 8 rotations and
    reflections (``variant`` = 4 * flip + quarter turns), so ``turned.flat = flat[indices]``."""
    grid = torch.arange(channels * size * size).reshape(channels, size, size)
    if variant >= 4:
        grid = grid.flip(-1)
    return torch.rot90(grid, variant % 4, dims=(-2, -1)).reshape(-1).numpy()


def turned(
    result: LinearPopulationResult, channels: int, grid: int, variant: int
) -> LinearPopulationResult:
    """``result`` whose restorations come out turned by ``variant`` (:func:`dihedral_indices`),
    for a square ``grid x grid`` of blocks: each block's content is turned (A's columns
    re-indexed) and the blocks move to their turned positions (K1 re-indexed). Researcher side:
    the orientation oracle of the curves."""
    inner = dihedral_indices(channels, result.block_size, variant)
    # plain' = G plain with G[i, inner[i]] = 1, so A' = A G^T: column i of A' = column inner[i]
    matrix = result.matrix[:, inner]
    where = dihedral_indices(1, grid, variant)  # turned block position j holds old where[j]
    moved = np.empty_like(where)
    moved[where] = np.arange(where.size)  # old position p -> turned position moved[p]
    block_perm = moved[result.block_perm]
    return LinearPopulationResult(
        matrix, block_perm, result.block_size, result.images, result.method
    )
