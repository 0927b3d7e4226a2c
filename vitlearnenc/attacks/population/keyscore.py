"""Researcher side: how much of the victim key a population attack's estimate got right.

Used by the registered ``population`` attack (its ``score_key``) and by the population curves.
Every estimate is compared with the victim cipher's decryption map, so one score reads the same
for block puzzles (K1, K2) and for nibble maps (LE, ELE).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vitlearnenc.attacks.population.correlation import CorrelationResult
from vitlearnenc.attacks.population.linear import LinearPopulationResult
from vitlearnenc.attacks.population.plans import block_sources
from vitlearnenc.attacks.population.pooled_jigsaw import PooledJigsawResult, PooledVariantResult
from vitlearnenc.ciphers import Cipher, CipherKey, LinearPatchCipher, ProposedCipher
from vitlearnenc.ciphers.base import NotInvertibleError
from vitlearnenc.ciphers.nibbles import block_nibble_positions


def key_scores(cipher: Cipher, result: Any) -> dict[str, Any]:
    """How much of ``cipher``'s key (the victim's) the estimate ``result`` got right.

    ``k1_accuracy``: fraction of ``block_perm`` entries right (LE: of the nibble permutation
    ``perm``); ``map_accuracy``: fraction of the decryption map's entries (value or nibble
    sources with their negation) right; ``exact``: the whole decryption map is right. Empty for
    PE with per-image keys (there is no key to recover). Linear patch ciphers: see
    :func:`linear_key_scores`.
    """
    if isinstance(result, LinearPopulationResult) and isinstance(cipher, LinearPatchCipher):
        return linear_key_scores(cipher, result)
    try:
        truth = cipher.build_plan(3).inverse()  # type: ignore[attr-defined]
    except NotInvertibleError:
        return {}
    key = cipher.key
    if isinstance(result, PooledJigsawResult):
        material = {"block_perm": result.block_perm, "pixel_perm": result.pixel_perm}
        estimate_key = CipherKey(
            key.method, key.image_size, key.block_size, material, {"channel_mix": False}
        )
        estimate = ProposedCipher(estimate_key).build_plan(3).inverse()
        map_accuracy = float(np.mean(estimate.index == truth.index))
        k1 = float(np.mean(result.block_perm == key["block_perm"]))
    elif isinstance(result, PooledVariantResult):
        value_map = result.value_map
        right = (value_map.index == truth.index) & (value_map.negate == truth.negate)
        map_accuracy = float(np.mean(right))
        sources = block_sources(value_map, key.block_size)
        k1 = float(np.mean(np.argsort(sources) == key["block_perm"]))
    elif isinstance(result, CorrelationResult):
        nibble_map = result.nibble_map
        index, negate = _value_plan(truth)
        if index.size != nibble_map.index.size:  # a byte-level cipher (fixed-key PE): lift it
            index = np.concatenate([index, index + index.size])
            negate = np.concatenate([negate, negate])
        right = (nibble_map.index == index) & (nibble_map.flip == negate)
        map_accuracy = float(np.mean(right))
        nibble_k1 = index is truth.index or "block_perm" in key.material  # not fixed-key PE
        k1 = _nibble_k1(nibble_map.index, key) if nibble_k1 else map_accuracy
    else:
        raise TypeError(f"no key score for {type(result).__name__}")
    return {"k1_accuracy": k1, "map_accuracy": map_accuracy, "exact": map_accuracy == 1.0}


def _exact_bound(length: int) -> float:
    """Largest spectral-norm error of an estimate of A that still decrypts *every* image
    exactly: a centred patch has norm <= 0.5 * sqrt(L), and each value may move by less than
    half an 8-bit step."""
    return 0.5 / 255 / (0.5 * np.sqrt(length))


def linear_key_scores(cipher: LinearPatchCipher, result: LinearPopulationResult) -> dict[str, Any]:
    """``k1_accuracy`` (fraction of K1 right); ``map_accuracy``: fraction of A's columns (the
    images of the plain basis vectors) estimated to a cosine of at least 0.99;
    ``matrix_error``: ``||A_est - A||_F / ||A||_F``; ``exact``: K1 right and A close enough
    that every image decrypts exactly (spectral-norm error below :func:`_exact_bound`)."""
    truth = cipher.patch_matrix(3)
    estimate = result.matrix
    cosine = np.sum(truth * estimate, axis=0) / (
        np.linalg.norm(truth, axis=0) * np.maximum(np.linalg.norm(estimate, axis=0), 1e-12)
    )
    k1 = float(np.mean(result.block_perm == cipher.block_perm))
    spectral = float(np.linalg.norm(estimate - truth, 2))
    return {
        "k1_accuracy": k1,
        "map_accuracy": float(np.mean(cosine >= 0.99)),
        "matrix_error": float(np.linalg.norm(estimate - truth) / np.linalg.norm(truth)),
        "exact": bool(k1 == 1.0 and spectral < _exact_bound(truth.shape[0])),
    }


def _value_plan(plan: Any, channels: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """``(index, negate)`` over the C*H*W values of a plan (a spatial plan, e.g. the proposed
    cipher's, moves every channel alike and negates nothing)."""
    if not plan.spatial:
        negate = np.zeros(plan.index.size, bool) if plan.negate is None else plan.negate
        return plan.index, negate
    plane = plan.index.size
    index = np.concatenate([plan.index + c * plane for c in range(channels)])
    return index, np.zeros(index.size, dtype=bool)


def within_block_accuracy(cipher: Cipher, result: CorrelationResult) -> float:
    """Fraction of plain nibbles that the estimate draws from the right nibble *within* its
    source block, with the right reversal, whatever the block order: for the proposed cipher
    under the nibble attack this is how much of K2 it read (researcher side)."""
    truth = cipher.build_plan(3).inverse()  # type: ignore[attr-defined]
    index, negate = _value_plan(truth)
    nibble_map = result.nibble_map
    if index.size != nibble_map.index.size:  # byte-level plan: both nibbles move together
        index = np.concatenate([index, index + index.size])
        negate = np.concatenate([negate, negate])
    channels, height, width = nibble_map.shape
    positions = block_nibble_positions((height, width), result.block_size, channels)
    atom_of = np.empty(index.size, dtype=np.int64)
    atom_of[positions] = np.arange(positions.shape[1])[None, :]
    right = (atom_of[nibble_map.index] == atom_of[index]) & (nibble_map.flip == negate)
    return float(np.mean(right))


def _nibble_k1(index: np.ndarray, key: CipherKey) -> float:
    """LE: fraction of ``perm`` read off block 0 right; ELE: of ``block_perm``."""
    channels = 3
    positions = block_nibble_positions(key.image_size, key.block_size, channels)
    block_of = np.empty(index.size, dtype=np.int64)
    atom_of = np.empty(index.size, dtype=np.int64)
    block_of[positions] = np.arange(len(positions))[:, None]
    atom_of[positions] = np.arange(positions.shape[1])[None, :]
    if "block_perm" in key.material:
        sources = block_of[index[positions[:, 0]]]  # encrypted block of every plain block
        estimate = np.full(len(positions), -1)
        estimate[sources] = np.arange(len(positions))
        return float(np.mean(estimate == key["block_perm"]))
    atoms = atom_of[index[positions[0]]]  # plain nibble a of block 0 = encrypted atom atoms[a]
    estimate = np.full(positions.shape[1], -1)
    estimate[atoms] = np.arange(positions.shape[1])
    return float(np.mean(estimate == key["perm"]))
