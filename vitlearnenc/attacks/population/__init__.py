"""Population attacks: the attacker holds N ciphertexts of one key plus public plain images of
the domain (spec §2.0) and pools statistics over the whole corpus.

Every attack is a function ``(corpus, public, block_size) -> result`` whose result carries the
key estimate (key material: reprs show none of it) and ``decrypt(ciphertexts)``;
:func:`population_attack` picks the attack that fits a cipher class.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol

import torch

from vitlearnenc.attacks.population.corpus import Corpus, CorpusError, as_corpus
from vitlearnenc.attacks.population.correlation import CorrelationResult, correlation_attack
from vitlearnenc.attacks.population.pooled_jigsaw import (
    PooledJigsawResult,
    PooledVariantResult,
    pooled_etc_jigsaw,
    pooled_jigsaw,
)
from vitlearnenc.ciphers import Cipher, ELECipher, EtCCipher, LECipher, PECipher, ProposedCipher
from vitlearnenc.errors import InputError


class PopulationResult(Protocol):
    """What every population attack returns."""

    images: int

    def decrypt(self, encrypted: torch.Tensor) -> torch.Tensor: ...


PopulationAttack = Callable[[Corpus, Corpus, int], PopulationResult]


def _proposed(corpus: Corpus, public: Corpus, block_size: int) -> PopulationResult:
    return pooled_jigsaw(corpus, block_size)  # ciphertext-only: public images unused


def _le(corpus: Corpus, public: Corpus, block_size: int) -> PopulationResult:
    return correlation_attack(corpus, public, block_size, shared=True)


def _per_block(corpus: Corpus, public: Corpus, block_size: int) -> PopulationResult:
    return correlation_attack(corpus, public, block_size, shared=False)


#: the population attack for each cipher class. PE gets the per-block correlation attack as
#: the control: its fresh key per image leaves nothing to pool, so it must fail there.
ATTACKS: dict[type[Cipher], PopulationAttack] = {
    ProposedCipher: _proposed,
    EtCCipher: pooled_etc_jigsaw,
    LECipher: _le,
    ELECipher: _per_block,
    PECipher: _per_block,
}


def population_attack(
    cipher_class: type[Cipher],
    corpus: Corpus | torch.Tensor,
    public: Corpus | torch.Tensor,
    block_size: int,
) -> PopulationResult:
    """Run the population attack that fits ``cipher_class`` (the attacker knows the algorithm
    and its public geometry, never the key).

    Raises:
        InputError: no population attack applies to this cipher class.
    """
    for known, attack in ATTACKS.items():
        if issubclass(cipher_class, known):
            return attack(as_corpus(corpus), as_corpus(public), block_size)
    raise InputError(
        f"no population attack for {cipher_class.__name__}; "
        f"one exists for {', '.join(c.__name__ for c in ATTACKS)}"
    )


def restore(result: PopulationResult, corpus: Corpus | torch.Tensor) -> Iterator[torch.Tensor]:
    """The restored corpus, chunk by chunk (memory bounded in N)."""
    for chunk in as_corpus(corpus):
        yield result.decrypt(chunk)


# registers attack=population (the registry imports this package on lookup)
from vitlearnenc.attacks.population import registered as registered  # noqa: E402

__all__ = [
    "ATTACKS",
    "CorrelationResult",
    "Corpus",
    "CorpusError",
    "PooledJigsawResult",
    "PooledVariantResult",
    "PopulationResult",
    "as_corpus",
    "correlation_attack",
    "pooled_etc_jigsaw",
    "pooled_jigsaw",
    "population_attack",
    "restore",
]
