"""Shared by the population curves and benchmark: the victim and public CIFAR-10 sets, the
victim ciphers, and the researcher-side key-recovery scores.

Victims: the CIFAR-10 *test* split in a fixed random order (seed 0), encrypted with one key
(seed 1, as the attack table). Public images: 5,000 *train* images (another fixed draw), never
the victims. At 224x224 both are upsampled on the fly (bilinear, the training pipeline's
``resize_uint8``), chunk by chunk.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vitlearnenc.attacks.population import Corpus
from vitlearnenc.attacks.population.correlation import CorrelationResult
from vitlearnenc.attacks.population.plans import block_sources, global_variant_map
from vitlearnenc.attacks.population.pooled_jigsaw import PooledJigsawResult, PooledVariantResult
from vitlearnenc.ciphers import Cipher, CipherKey, ProposedCipher, build_cipher
from vitlearnenc.ciphers.base import NotInvertibleError
from vitlearnenc.ciphers.nibbles import block_nibble_positions
from vitlearnenc.data.imagestore import decode_tree
from vitlearnenc.utils.image_ops import resize_uint8

REPO = Path(__file__).resolve().parents[3]
ARCHIVE = REPO.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
KEY_SEED = 1
VICTIM_ORDER_SEED = 0
PUBLIC_SEED = 1
PUBLIC_IMAGES = 5000


def load_cifar(archive: Path = ARCHIVE) -> tuple[torch.Tensor, torch.Tensor]:
    """``(victims, public)``: the shuffled test split (10,000) and 5,000 train images, uint8."""
    trees = decode_tree(archive, ["train", "test"])
    test = torch.stack(trees["test"].images)
    train = torch.stack(trees["train"].images)
    order = torch.randperm(len(test), generator=torch.Generator().manual_seed(VICTIM_ORDER_SEED))
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(PUBLIC_SEED))
    return test[order], train[pick[:PUBLIC_IMAGES]]


def sized(images: torch.Tensor, size: int, chunk_size: int = 128) -> Corpus:
    """A lazy corpus of ``images`` resized to ``size`` (chunk by chunk)."""
    return Corpus.from_tensor(images, chunk_size).map(lambda chunk: resize_uint8(chunk, size))


def victim_cipher(name: str, size: int, block_size: int) -> Cipher:
    """The victim's cipher with the reproducible key (seed 1; PE: fresh keys per image)."""
    return build_cipher(name, image_size=size, block_size=block_size, seed=KEY_SEED)


def encrypt(cipher: Cipher, plain: Corpus) -> Corpus:
    """A lazy corpus of ciphertexts. PE's per-image keys come from a seeded generator, so
    every pass over the corpus sees the same ciphertexts."""
    if getattr(cipher, "per_image_keys", False):
        generator = torch.Generator().manual_seed(KEY_SEED)
        cached: list[torch.Tensor] = []

        def chunks() -> Any:
            if not cached:
                for chunk in plain:
                    cached.append(cipher.encrypt(chunk, generator=generator))  # type: ignore[call-arg]
            return cached

        return Corpus(chunks)
    return plain.map(cipher.encrypt)


def oriented(result: Any, variant: int) -> Any:
    """``result`` with its restorations turned by one global variant (researcher side: the
    orientation oracle). The proposed cipher's puzzle has a fixed orientation: unchanged."""
    if isinstance(result, PooledVariantResult):
        shape = result.value_map.shape
        return replace(result, value_map=result.value_map.then(global_variant_map(shape, variant)))
    if isinstance(result, CorrelationResult):
        shape = result.nibble_map.shape
        mapped = result.nibble_map.then_values(global_variant_map(shape, variant))
        return replace(result, nibble_map=mapped)
    return result


def orientations(result: Any) -> list[int]:
    """The variant numbers of the 8 rotations/reflections of the image (no NP, no recolouring)
    that :func:`oriented` can apply to ``result``."""
    if isinstance(result, PooledJigsawResult):
        return [0]
    return [code * 12 for code in range(8)]


def key_scores(cipher: Cipher, result: Any) -> dict[str, Any]:
    """Researcher side: how much of the key the estimate got right.

    ``k1_accuracy``: fraction of ``block_perm`` entries right (LE: of the nibble permutation
    ``perm``); ``map_accuracy``: fraction of the decryption map's entries (value or nibble
    sources with their negation) right; ``exact``: the whole decryption map is right. Empty for
    PE with per-image keys (there is no key to recover).
    """
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
        index, negate = truth.index, truth.negate
        if index.size != nibble_map.index.size:  # a byte-level cipher (fixed-key PE): lift it
            index = np.concatenate([index, index + index.size])
            negate = np.concatenate([negate, negate])
        right = (nibble_map.index == index) & (nibble_map.flip == negate)
        map_accuracy = float(np.mean(right))
        k1 = _nibble_k1(nibble_map.index, key) if index is truth.index else map_accuracy
    else:
        raise TypeError(f"no key score for {type(result).__name__}")
    return {"k1_accuracy": k1, "map_accuracy": map_accuracy, "exact": map_accuracy == 1.0}


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
