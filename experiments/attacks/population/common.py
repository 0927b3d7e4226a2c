"""Shared by the population curves and benchmark: the victim and public CIFAR-10 sets, the
victim ciphers, and the researcher-side orientation oracle (the key-recovery scores are
:func:`vitlearnenc.attacks.population.keyscore.key_scores`).

Victims: the CIFAR-10 *test* split in a fixed random order (seed 0), encrypted with one key
(seed 1, as the attack table). Public images: 5,000 *train* images (another fixed draw), never
the victims. At 224x224 both are upsampled on the fly (bilinear, the training pipeline's
``resize_uint8``), chunk by chunk.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from vitlearnenc.attacks.population import Corpus
from vitlearnenc.attacks.population.correlation import CorrelationResult
from vitlearnenc.attacks.population.linear import LinearPopulationResult, turned
from vitlearnenc.attacks.population.plans import global_variant_map
from vitlearnenc.attacks.population.pooled_jigsaw import PooledJigsawResult, PooledVariantResult
from vitlearnenc.ciphers import Cipher, build_cipher
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


class RealCiphertexts:
    """The real-valued ciphertexts of a linear patch cipher (orthomix...), encrypted chunk by
    chunk on every pass, so the corpus never sits in memory whole (1,000 at 224x224 are 600 MB
    as float32; the attack reads it a few times, re-encrypting is cheaper than holding it)."""

    def __init__(self, cipher: Cipher, plain: Corpus) -> None:
        self.cipher, self.plain = cipher, plain

    def __iter__(self) -> Iterator[torch.Tensor]:
        for chunk in self.plain:
            yield self.cipher.encrypt(chunk)

    def __len__(self) -> int:
        return len(self.plain)


def oriented(result: Any, variant: int) -> Any:
    """``result`` with its restorations turned by one global variant (researcher side: the
    orientation oracle). The proposed cipher's puzzle has a fixed orientation: unchanged.
    Linear patch ciphers: ``variant`` is one of :func:`orientations`' 0..7."""
    if isinstance(result, LinearPopulationResult):
        grid = round(result.block_perm.size**0.5)
        return turned(result, result.matrix.shape[0] // result.block_size**2, grid, variant)
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
    if isinstance(result, LinearPopulationResult):
        return list(range(8))
    return [code * 12 for code in range(8)]
