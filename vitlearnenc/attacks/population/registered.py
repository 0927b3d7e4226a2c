"""The population attacks in the attack registry: ``attack=population``.

One registered attack for the whole family, because the attacker's choice between the pooled
block puzzle and the correlation attack is fixed by the public algorithm, not a knob: the
solver is picked from the cipher's capabilities (:attr:`~vitlearnenc.ciphers.Cipher.structure`,
:attr:`~vitlearnenc.ciphers.Cipher.per_image_keys`), never from the cipher's class or name.

PE with its default per-image keys *applies*, as the control: the run uses the per-block
correlation attack and must fail, because a fresh key per image leaves nothing to pool. A row
that shows the failure is a measured result; "not applicable" would only be a claim.

Inputs: ``attack.corpus_size`` further ciphertexts under the victim key (the victim corpus, N)
and, for every solver but the proposed cipher's (ciphertext-only), ``attack.num_public_images``
public plain images. The run passes the corpus as one tensor, which is fine for the CLI's N (up
to 10,000 at 32x32 is 30 MB); the solvers themselves read it chunk by chunk through
:class:`~vitlearnenc.attacks.population.corpus.Corpus` and keep only fixed-size statistics, so
a folder or shard corpus of any N (:func:`~vitlearnenc.attacks.population.population_attack`)
stays memory-bounded. The key estimate decrypts the victim's test ciphertexts, which are not in
the corpus.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from vitlearnenc.attacks.population.corpus import Corpus
from vitlearnenc.attacks.population.correlation import correlation_attack
from vitlearnenc.attacks.population.keyscore import key_scores
from vitlearnenc.attacks.population.pooled_jigsaw import pooled_etc_jigsaw, pooled_jigsaw
from vitlearnenc.attacks.registry import (
    AttackContext,
    AttackOutcome,
    Input,
    InputKind,
    NotApplicableError,
    register_attack,
)
from vitlearnenc.ciphers import Cipher, CipherKey, get_cipher_class
from vitlearnenc.ciphers.base import Structure

#: ``solver(corpus, public, block_size) -> result`` (public is None for ciphertext-only ones)
Solver = Callable[[Corpus, Corpus | None, int], Any]


def _proposed(corpus: Corpus, public: Corpus | None, block_size: int) -> Any:
    return pooled_jigsaw(corpus, block_size)


def _etc(corpus: Corpus, public: Corpus | None, block_size: int) -> Any:
    return pooled_etc_jigsaw(corpus, _required(public), block_size)


def _shared_nibbles(corpus: Corpus, public: Corpus | None, block_size: int) -> Any:
    return correlation_attack(corpus, _required(public), block_size, shared=True)


def _per_block(corpus: Corpus, public: Corpus | None, block_size: int) -> Any:
    return correlation_attack(corpus, _required(public), block_size, shared=False)


def _required(public: Corpus | None) -> Corpus:
    if public is None:
        raise NotApplicableError("this population solver needs attack.num_public_images")
    return public


_BY_STRUCTURE: dict[str, Solver] = {
    Structure.PIXEL_SHUFFLED_BLOCKS: _proposed,
    Structure.ETC_BLOCKS: _etc,
    Structure.SHARED_NIBBLE_PERMUTATION: _shared_nibbles,
    Structure.PER_BLOCK_NIBBLE_MAPS: _per_block,
    Structure.PER_PIXEL_VALUE_MAPS: _per_block,
}


def solver_for(cipher: Cipher) -> Solver | None:
    """The population solver for ``cipher`` (a probe with a throw-away key), or None."""
    if cipher.per_image_keys:
        return _per_block  # the control: nothing to pool, so it must fail
    return _BY_STRUCTURE.get(str(cipher.structure))


def _applies(cipher: Cipher) -> str | None:
    if solver_for(cipher) is not None:
        return None
    return cipher.structure_note or (
        "the population attacks solve one key shared by the corpus: the block puzzles of the "
        "proposed cipher (channel-tied) and EtC (permute), and the nibble/value maps of LE, ELE "
        f"and fixed-key PE; {cipher.name} has none of these structures"
    )


def _inputs(cipher: Cipher) -> tuple[Input, ...]:
    corpus = Input(InputKind.VICTIM_CORPUS, "corpus_size")
    if solver_for(cipher) is _proposed:  # ciphertext-only
        return (corpus,)
    return (corpus, Input(InputKind.PUBLIC_IMAGES, "num_public_images"))


def score_population(estimate: Any, key: CipherKey) -> dict[str, Any]:
    """Key recovery of the estimate against the victim key (researcher side): ``k1_accuracy``,
    ``map_accuracy`` and ``exact``; empty for per-image keys (no key to recover)."""
    return key_scores(get_cipher_class(key.method)(key), estimate)


@register_attack("population", applies=_applies, inputs=_inputs, score_key=score_population)
def run_population(context: AttackContext) -> AttackOutcome:
    """Solve the key once from the corpus statistics, then decrypt every victim ciphertext."""
    solver = solver_for(context.cipher)
    if solver is None:  # check_applicable ran first; this guards direct calls
        raise NotApplicableError(_applies(context.cipher) or "no population solver")
    corpus = context.need("corpus")
    public_images = context.public_images
    public = None if public_images is None else Corpus.from_tensor(public_images)
    block = context.cipher.block_size
    if block < 2:  # pixel-wise (PE): values stay in their pixel, so any block grid is exact
        block = int(context.settings.get("pixelwise_block_size", 4))
    result = solver(Corpus.from_tensor(corpus), public, block)
    victims = Corpus.from_tensor(context.victim_ciphertexts)
    restored = torch.cat([result.decrypt(chunk) for chunk in victims])
    budget = {
        "corpus_size": len(corpus),
        "public_images": 0 if public_images is None else len(public_images),
        "block_size": block,
    }
    return AttackOutcome(restored, estimate=result, budget=budget)
