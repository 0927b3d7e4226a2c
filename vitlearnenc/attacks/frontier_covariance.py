"""Ciphertext-only, second-order attack on the linear patch ciphers.

The ciphertext patches are ``A x`` (centred at 0.5) for plain patches x of the victim's domain,
so their second-moment matrix is ``A M_p Aᵀ``, with M_p the plain one, which public images of the
same domain estimate. Eigenvectors then map onto each other: ``A u_k ≈ ±v_k`` for every
eigenvalue that stands apart (natural-image patch spectra fall off like a power law, so the
leading ones do; near-equal ones, e.g. horizontal and vertical detail of equal energy, are only
determined up to a rotation inside their subspace). So

1. eigendecompose both second moments: ``A ≈ V S Uᵀ`` with unknown signs S;
2. signs: first from the third moments of each coefficient (``E[(v_k·y)^3] = s_k E[(u_k·x)^3]``;
   used where the public skew is clear), then by a smoothness prior on a sample of restored
   images: greedily flip the sign of each leading component when that lowers the L1 gradient
   between neighbouring pixels of the same block (for orthomix_sub this includes the seams
   between its four sub-blocks, which share A_s) plus the mass outside [0, 1] (quadratic priors
   cannot see signs: the components are uncorrelated); that prior cannot tell an image from its
   negative, so the third moments' vote then picks the global sign (:func:`global_sign`);
3. solve the block puzzle K1 once for the whole corpus (:func:`shared_block_perm`).

For ``orthomix_sub`` (the attacker knows the variant) the mixing unit is the (M/2)-sub-block, which
is itself a patch of the image, so the same steps run on (M/2)-patches with four times as many
samples of a quarter of the dimension.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from vitlearnenc.attacks.frontier_common import (
    LinearKeyEstimate,
    centred_patches,
    patches_to_images,
    shared_block_perm,
)
from vitlearnenc.ciphers import get_cipher_class
from vitlearnenc.errors import InputError

#: a third moment counts as a sign witness when it exceeds this many standard errors
_SKEW_Z = 4.0
#: values per piece when statistics are accumulated: a piece's float64 copies are ~16 MB, so
#: the memory of every pass is bounded whatever the corpus size N and its chunk size
_PIECE_VALUES = 2**21

#: images as the attacks take them: one ``(B, C, H, W)`` tensor or a re-iterable of such chunks
#: (a list, a :class:`~vitlearnenc.attacks.population.Corpus`), read once per pass
Images = torch.Tensor | Iterable[torch.Tensor]


def pieces(images: Images) -> Iterator[torch.Tensor]:
    """The images in bounded pieces (:data:`_PIECE_VALUES` values or one image each)."""
    for chunk in [images] if isinstance(images, torch.Tensor) else images:
        size = max(1, _PIECE_VALUES // max(math.prod(chunk.shape[1:]), 1))
        yield from chunk.split(size)


def unit_pieces(images: Images, unit_size: int) -> Iterator[tuple[int, np.ndarray]]:
    """``(index of the first unit, (n, L) centred unit vectors)`` of every piece, in corpus
    order (image by image, row-major units within an image, as :func:`centred_patches`)."""
    start = 0
    for piece in pieces(images):
        units = centred_patches(piece, unit_size).reshape(-1, piece.shape[1] * unit_size**2)
        yield start, units
        start += len(units)


def head(images: Images, count: int) -> torch.Tensor:
    """The first ``count`` images (fewer if there are fewer) as one tensor."""
    taken: list[torch.Tensor] = []
    left = count
    for chunk in [images] if isinstance(images, torch.Tensor) else images:
        if left <= 0:
            break
        taken.append(chunk[:left])
        left -= len(taken[-1])
    return torch.cat(taken)


def second_moment(patches: np.ndarray) -> np.ndarray:
    """``(n, L)`` centred patch vectors -> ``(L, L)`` second-moment matrix (float64)."""
    return patches.T @ patches / len(patches)


def pooled_second_moment(images: Images, unit_size: int) -> tuple[np.ndarray, int]:
    """:func:`second_moment` of every unit of ``images``, accumulated piece by piece in
    float64 (one pass, memory independent of N); also the number of units."""
    total: np.ndarray | None = None
    count = 0
    for _, units in unit_pieces(images, unit_size):
        product = units.T @ units
        total = product if total is None else total + product
        count += len(units)
    if total is None:
        raise InputError("no images to pool; pass at least one image")
    return total / count, count


@dataclass
class CubeMoments:
    """Mean and standard error of the cubed coefficients ``c_k^3`` per component, accumulated
    chunk by chunk (Chan et al.'s pairwise merge of means and squared deviations, as stable as
    NumPy's two-pass ``std`` on the whole array)."""

    count: int = 0
    mean: np.ndarray | float = 0.0
    squares: np.ndarray | float = 0.0  # sum of squared deviations from the mean

    def add(self, coeffs: np.ndarray) -> None:
        """Fold in ``(n, L)`` coefficients."""
        cubes = coeffs**3
        count, mean = len(cubes), cubes.mean(axis=0)
        squares = ((cubes - mean) ** 2).sum(axis=0)
        total = self.count + count
        delta = mean - self.mean
        self.squares = self.squares + squares + delta**2 * self.count * count / total
        self.mean = self.mean + delta * count / total
        self.count = total

    @classmethod
    def of(cls, coeffs: np.ndarray) -> CubeMoments:
        """The moments of one ``(n, L)`` array."""
        moments = cls()
        moments.add(coeffs)
        return moments

    @property
    def error(self) -> np.ndarray:
        """Standard error of the mean (population standard deviation / sqrt(n))."""
        return np.sqrt(np.asarray(self.squares) / self.count) / np.sqrt(self.count)


def pooled_cube_moments(images: Images, unit_size: int, vectors: np.ndarray) -> CubeMoments:
    """:class:`CubeMoments` of the units' coefficients on ``vectors`` (one pass)."""
    moments = CubeMoments()
    for _, units in unit_pieces(images, unit_size):
        moments.add(units @ vectors)
    return moments


def sorted_eigh(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (descending) and eigenvectors (columns) of a symmetric matrix."""
    values, vectors = np.linalg.eigh(matrix)
    order = np.argsort(values)[::-1]
    return values[order], vectors[:, order]


def skew_signs(cipher: CubeMoments, plain: CubeMoments) -> np.ndarray:
    """Per component: +1/-1 where the third moments agree/disagree clearly, 0 where unclear."""
    signs = np.zeros(np.size(cipher.mean))
    third_c, third_p = np.asarray(cipher.mean), np.asarray(plain.mean)
    clear = (np.abs(third_c) > _SKEW_Z * cipher.error) & (np.abs(third_p) > _SKEW_Z * plain.error)
    signs[clear] = np.sign(third_c[clear] * third_p[clear])
    return signs


def global_sign(signs: np.ndarray, cipher: CubeMoments, plain: CubeMoments) -> np.ndarray:
    """``signs`` or ``-signs``, whichever the third moments favour.

    The smoothness and range prior of :func:`resolve_signs` is symmetric under negating the
    whole image, so its greedy flips may end in the negative of the right signs (measured: on
    CIFAR-10 at 32/4 orthomix_sub came back as the exact negative, SSIM -0.65, while every
    clear skew witness had been right). The global sign is therefore the third moments' vote,
    each clear witness weighted by its smaller z-score (:data:`_SKEW_Z`).
    """
    witness = skew_signs(cipher, plain)
    z_c = np.abs(cipher.mean) / (cipher.error + 1e-300)
    z_p = np.abs(plain.mean) / (plain.error + 1e-300)
    vote = float(np.sum(signs * witness * np.minimum(z_c, z_p)))
    return -signs if vote < 0 else signs


def _prior_cost(restored: np.ndarray, layout: tuple[int, int, int, int, int]) -> float:
    """Smoothness prior on restored mixing units, judged inside whole M-blocks.

    ``restored`` ``(B, Nm, C*m*m)`` centred unit vectors of B images are put back into images;
    the cost is the mean L1 difference of horizontally and vertically adjacent pixels that lie in
    the same M-block (the seams *between* blocks are scrambled by K1, those between the
    sub-blocks of one block are not), plus the mass outside the [-0.5, 0.5] (centred) range.
    """
    channels, height, width, unit, block = layout
    batch = restored.shape[0]
    grid = restored.reshape(batch, height // unit, width // unit, channels, unit, unit)
    image = grid.transpose(0, 3, 1, 4, 2, 5).reshape(batch, channels, height, width)
    horizontal = np.abs(np.diff(image, axis=3))
    vertical = np.abs(np.diff(image, axis=2))
    inside_h = (np.arange(1, width) % block) != 0
    inside_v = (np.arange(1, height) % block) != 0
    gradient = horizontal[..., inside_h].mean() + vertical[:, :, inside_v, :].mean()
    outside = np.maximum(np.abs(restored) - 0.5, 0).mean()
    return float(gradient + 4.0 * outside)


def resolve_signs(
    coeffs: np.ndarray,
    plain_vectors: np.ndarray,
    initial: np.ndarray,
    layout: tuple[int, int, int, int, int],
    components: int,
    passes: int = 2,
) -> np.ndarray:
    """Greedy sign flips of the leading ``components`` against :func:`_prior_cost`.

    Args:
        coeffs: ``(B, Nm, L)`` ciphertext coefficients on the ciphertext eigenvectors for B
            images (their mixing units in row-major order).
        plain_vectors: ``(L, L)`` public eigenvectors (columns).
        initial: starting signs (+-1).
        layout: ``(C, H, W, unit size, block size)``.
    """
    signs = initial.copy()
    restored = (coeffs * signs) @ plain_vectors.T
    cost = _prior_cost(restored, layout)
    for _ in range(passes):
        changed = False
        for k in range(min(components, len(signs))):
            step = 2 * signs[k] * coeffs[..., k, None] * plain_vectors[:, k]
            candidate = restored - step
            new_cost = _prior_cost(candidate, layout)
            if new_cost < cost:
                signs[k], restored, cost, changed = -signs[k], candidate, new_cost, True
        if not changed:
            break
    return signs


def unmix_and_solve(
    encrypted: torch.Tensor, mix_matrix: np.ndarray, mix_size: int, block_size: int
) -> tuple[np.ndarray, torch.Tensor]:
    """Undo an estimated mixing (``mix_matrix`` on ``mix_size`` patches), solve the shared
    block puzzle and return ``(block_perm, restored uint8 images)``."""
    channels, size = encrypted.shape[1], tuple(encrypted.shape[-2:])
    unmixed = centred_patches(encrypted, mix_size) @ mix_matrix
    images = patches_to_images(unmixed, channels, size, mix_size)
    blocks = centred_patches(images, block_size)  # encrypted block order, mixing undone
    block_perm = shared_block_perm(blocks, channels, size, block_size)
    plain = np.empty_like(blocks)
    plain[:, block_perm] = blocks
    return block_perm, patches_to_images(plain, channels, size, block_size)


def expand_mixing(
    mix_matrix: np.ndarray, mix_size: int, block_size: int, channels: int
) -> np.ndarray:
    """The ``(L, L)`` patch matrix of a mixing that acts on every ``mix_size`` sub-patch of an
    M-block (the identity layout for ``mix_size == block_size``)."""
    if mix_size == block_size:
        return mix_matrix
    per_side = block_size // mix_size
    flat = np.arange(channels * block_size**2).reshape(
        channels, per_side, mix_size, per_side, mix_size
    )
    units = flat.transpose(1, 3, 0, 2, 4).reshape(per_side**2, -1)
    full = np.zeros((channels * block_size**2,) * 2)
    for rows in units:
        full[np.ix_(rows, rows)] = mix_matrix
    return full


def estimate_mixing(
    encrypted: Images,
    public: Images,
    mix_size: int,
    block_size: int,
    sign_images: int = 32,
    sign_components: int = 64,
) -> dict[str, np.ndarray]:
    """Second-order estimate of the mixing matrix (steps 1-2 of the module docstring).

    Bounded memory: two passes over each of ``encrypted`` and ``public`` (tensors or chunks),
    the first accumulating the float64 second moments, the second the third moments of the
    coefficients on their eigenvectors (:class:`CubeMoments`); only the first ``sign_images``
    ciphertexts are held whole (for the sign prior).

    Returns:
        ``matrix`` (the estimate of A on ``mix_size`` patches), the eigen-decompositions
        (``cipher_vectors``, ``plain_vectors``, ``cipher_values``, ``plain_values``),
        ``signs`` and ``units`` (the numbers of ciphertext and public mixing units pooled).
    """
    first = head(encrypted, sign_images)
    channels = first.shape[1]
    cipher_moment, cipher_units = pooled_second_moment(encrypted, mix_size)
    plain_moment, plain_units = pooled_second_moment(public, mix_size)
    cipher_values, cipher_vectors = sorted_eigh(cipher_moment)
    plain_values, plain_vectors = sorted_eigh(plain_moment)
    cipher_cubes = pooled_cube_moments(encrypted, mix_size, cipher_vectors)
    plain_cubes = pooled_cube_moments(public, mix_size, plain_vectors)
    initial = skew_signs(cipher_cubes, plain_cubes)
    initial[initial == 0] = 1.0
    sample = centred_patches(first, mix_size) @ cipher_vectors
    layout = (channels, *first.shape[-2:], mix_size, block_size)
    signs = resolve_signs(sample, plain_vectors, initial, layout, components=sign_components)
    signs = global_sign(signs, cipher_cubes, plain_cubes)
    return {
        "matrix": (cipher_vectors * signs) @ plain_vectors.T,
        "cipher_vectors": cipher_vectors,
        "plain_vectors": plain_vectors,
        "cipher_values": cipher_values,
        "plain_values": plain_values,
        "signs": signs,
        "units": np.array([cipher_units, plain_units]),
    }


def covariance_attack(
    encrypted: torch.Tensor,
    public: torch.Tensor,
    block_size: int,
    variant: str = "orthomix",
    sign_images: int = 32,
    sign_components: int = 64,
) -> LinearKeyEstimate:
    """The whole second-order attack (module docstring).

    Args:
        encrypted: ``(B, C, H, W)`` real-valued ciphertexts of one key (the victim corpus).
        public: ``(P, C, H, W)`` uint8 public plain images of the same domain and size.
        block_size: M.
        variant: ``"orthomix"`` (A on M-blocks) or ``"orthomix_sub"`` (on M/2-sub-blocks).
        sign_images: ciphertexts the sign prior looks at.
        sign_components: leading components whose signs the prior may flip.
    """
    start = time.perf_counter()
    mix_size = block_size // get_cipher_class(variant).mixing_unit_divisor
    estimate = estimate_mixing(
        encrypted, public, mix_size, block_size, sign_images, sign_components
    )
    block_perm, restored = unmix_and_solve(encrypted, estimate["matrix"], mix_size, block_size)
    matrix = expand_mixing(estimate["matrix"], mix_size, block_size, encrypted.shape[1])
    budget = {
        "ciphertexts": float(encrypted.shape[0]),
        "public_images": float(public.shape[0]),
        "seconds": time.perf_counter() - start,
    }
    return LinearKeyEstimate(matrix, block_perm, restored, budget)
