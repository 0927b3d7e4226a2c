"""The attacks on the linear patch ciphers in the attack registry.

* ``attack=frontier_covariance`` and ``attack=frontier_ica``: the ciphertext-only population
  attacks (:mod:`vitlearnenc.attacks.population.linear`): A and K1 solved once from statistics
  pooled over ``attack.corpus_size`` ciphertexts of the victim key, with
  ``attack.num_public_images`` public plain images, then every victim ciphertext decrypted.
* ``attack=frontier_kpa``: A and K1 from ``attack.num_known_pairs`` known pairs
  (:mod:`vitlearnenc.attacks.frontier_kpa`).

They apply to every cipher that is a linear patch cipher: one shared linear map of every patch
vector plus block scrambling (:class:`~vitlearnenc.ciphers.LinearPatchCipher`, recognised by
class, never by name; its public ``mixing_unit_divisor`` says which variant). ``score_key``
reports K1 accuracy, the matrix error and whether the estimate decrypts every image exactly
(:func:`~vitlearnenc.attacks.population.keyscore.linear_key_scores`).
"""

from __future__ import annotations

from typing import Any

from vitlearnenc.attacks.frontier_kpa import recover_linear_key
from vitlearnenc.attacks.population.keyscore import linear_key_scores
from vitlearnenc.attacks.population.linear import (
    LinearPopulationResult,
    Method,
    linear_population_attack,
)
from vitlearnenc.attacks.registry import (
    AttackContext,
    AttackOutcome,
    Input,
    InputKind,
    register_attack,
)
from vitlearnenc.ciphers import Cipher, CipherKey, LinearPatchCipher, get_cipher_class

_POPULATION_INPUTS = (
    Input(InputKind.VICTIM_CORPUS, "corpus_size"),
    Input(InputKind.PUBLIC_IMAGES, "num_public_images"),
)


def _applies(cipher: Cipher) -> str | None:
    if isinstance(cipher, LinearPatchCipher):
        return None
    return (
        "the frontier attacks solve linear patch ciphers (one shared linear map of every patch "
        f"vector plus block scrambling); {cipher.name} is not one"
    )


def score_linear(estimate: LinearPopulationResult, key: CipherKey) -> dict[str, Any]:
    """Key recovery against the victim key (researcher side)."""
    cipher = get_cipher_class(key.method)(key)
    if not isinstance(cipher, LinearPatchCipher):
        return {}
    return linear_key_scores(cipher, estimate)


def _population(context: AttackContext, method: Method) -> AttackOutcome:
    corpus = context.need("corpus")
    public = context.need("public_images")
    cipher = context.cipher
    divisor = int(getattr(cipher, "mixing_unit_divisor", 1))
    result = linear_population_attack(
        corpus, public, cipher.block_size, divisor, method, seed=int(context.settings["seed"])
    )
    restored = result.decrypt(context.victim_ciphertexts)
    budget = {
        "corpus_size": len(corpus),
        "public_images": len(public),
        "block_size": cipher.block_size,
    }
    return AttackOutcome(restored, estimate=result, budget=budget)


@register_attack(
    "frontier_covariance", applies=_applies, inputs=_POPULATION_INPUTS, score_key=score_linear
)
def run_frontier_covariance(context: AttackContext) -> AttackOutcome:
    """Second-order population attack on a linear patch cipher."""
    return _population(context, "covariance")


@register_attack(
    "frontier_ica", applies=_applies, inputs=_POPULATION_INPUTS, score_key=score_linear
)
def run_frontier_ica(context: AttackContext) -> AttackOutcome:
    """Second-order estimate refined by FastICA bases matched across the domains."""
    return _population(context, "ica")


@register_attack(
    "frontier_kpa",
    applies=_applies,
    inputs=(Input(InputKind.KNOWN_PAIRS, "num_known_pairs"),),
    score_key=score_linear,
)
def run_frontier_kpa(context: AttackContext) -> AttackOutcome:
    """Known-plaintext recovery of A and K1 (orthogonal Procrustes), then decryption."""
    plain, encrypted = context.need("known_plain"), context.need("known_ciphertexts")
    block = context.cipher.block_size
    matrix, block_perm = recover_linear_key(plain, encrypted, block)
    result = LinearPopulationResult(matrix, block_perm, block, len(plain), "kpa")
    restored = result.decrypt(context.victim_ciphertexts)
    return AttackOutcome(restored, estimate=result, budget={"known_pairs": len(plain)})
