"""The attack registry: a toy attack defined here (no other file) runs through the CLI path.

The toy attacks stand for the CONTRIBUTING.md example "add an attack": a run function,
``@register_attack`` with its applicability (by cipher capabilities) and inputs, and a config
(here Hydra overrides instead of a ``conf/attack/*.yaml`` file).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.helpers.hydra import composed
from vitlearnenc.attacks import registry
from vitlearnenc.attacks.registry import (
    AttackContext,
    AttackOutcome,
    Input,
    InputKind,
    NotApplicableError,
    UnknownAttackError,
    get_attack,
    list_attacks,
    register_attack,
)
from vitlearnenc.ciphers import Cipher, probe_cipher
from vitlearnenc.cli.attack import attack
from vitlearnenc.utils.paths import CONF_DIR

TINY = [
    "data=synthetic",
    "data.native_size=16",
    "data.num_train=64",
    "data.num_test=32",
    "image_size=16",
    "attack.num_victim_images=12",
    "attack.grid_images=2",
    "logger=none",
    "key=seed",
]
SEEN: dict[str, AttackContext] = {}


def fixed_key_only(cipher: Cipher) -> str | None:
    """Toy applicability by capability: one key for the whole corpus."""
    return "every image has its own key" if cipher.per_image_keys else None


def mean_of_public(context: AttackContext) -> AttackOutcome:
    """Toy training-free attack: every restoration is the mean public image."""
    SEEN["toy_mean"] = context
    mean = context.need("public_images").float().mean(0).round().to(torch.uint8)
    restored = mean.expand(len(context.victim_ciphertexts), *mean.shape).clone()
    return AttackOutcome(restored, estimate=int(mean.sum()), budget={"public": 1})


def corpus_mean(context: AttackContext) -> AttackOutcome:
    """Toy corpus-level ("population") attack: N ciphertexts of the victim key, no plain."""
    SEEN["toy_corpus"] = context
    corpus = context.need("corpus")
    restored = corpus.float().mean(0).round().to(torch.uint8)
    return AttackOutcome(restored.expand(len(context.victim_ciphertexts), *restored.shape))


@pytest.fixture
def toy_attacks() -> Iterator[None]:
    register_attack(
        "toy_mean",
        inputs=(Input(InputKind.PUBLIC_IMAGES, "num_public_images"),),
        score_key=lambda estimate, key: {"estimate_is_int": isinstance(estimate, int)},
    )(mean_of_public)
    register_attack(
        "toy_corpus",
        applies=fixed_key_only,
        inputs=(Input(InputKind.VICTIM_CORPUS, "corpus_size"),),
    )(corpus_mean)
    yield
    for name in ("toy_mean", "toy_corpus"):
        registry._REGISTRY.pop(name, None)
    SEEN.clear()


def run(tmp_path: Path, kind: str, cipher: str, *extra: str) -> dict:
    overrides = [f"cipher={cipher}", f"attack.kind={kind}", f"attack.name={kind}", *TINY, *extra]
    with composed("attack", overrides, tmp_path) as cfg:
        summary = attack(cfg)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text()) == summary
    return summary


def test_every_attack_config_names_a_registered_attack() -> None:
    kinds = {
        line.split(":", 1)[1].strip()
        for path in (CONF_DIR / "attack").glob("*.yaml")
        for line in path.read_text().splitlines()
        if line.startswith("kind:")
    }
    assert kinds == set(list_attacks())  # discovered without being listed anywhere


def test_a_toy_attack_runs_through_the_cli_path(toy_attacks: None, tmp_path: Path) -> None:
    summary = run(tmp_path, "toy_mean", "proposed", "+attack.num_public_images=20")
    context = SEEN["toy_mean"]
    assert summary["applicable"] and summary["n"] == 12 and summary["kind"] == "toy_mean"
    assert summary["budget"]["public"] == 1 and summary["budget"]["seconds"] >= 0
    assert summary["key_recovery"] == {"estimate_is_int": True}
    assert context.public_images is not None and len(context.public_images) == 20
    # only what the attack declared: no pairs, no labels, no plain victim images
    assert context.known_plain is None and context.labels is None and context.victim_plain is None
    assert (
        context.cipher.name == "proposed"
        and context.cipher.key.fingerprint != summary["key_fingerprint"]
    )  # a throw-away key, never the victim's


def test_a_corpus_attack_gets_n_ciphertexts_of_the_victim_key(
    toy_attacks: None, tmp_path: Path
) -> None:
    summary = run(tmp_path / "le", "toy_corpus", "le", "+attack.corpus_size=30")
    assert summary["applicable"] and len(SEEN["toy_corpus"].corpus) == 30
    assert SEEN["toy_corpus"].known_plain is None and SEEN["toy_corpus"].public_images is None
    skipped = run(tmp_path / "pe", "toy_corpus", "pe", "+attack.corpus_size=30")
    assert skipped == {
        "applicable": False,
        "reason": "every image has its own key",
        "attack": "toy_corpus",
        "cipher": "pe",
        "block_size": 1,
        "image_size": 16,
    }


def test_a_missing_count_option_is_a_config_error(toy_attacks: None, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"attack.corpus_size=<number of images>"):
        run(tmp_path, "toy_corpus", "le")


@pytest.mark.parametrize(
    ("kind", "cipher", "options", "applies"),
    [
        ("jigsaw", "proposed", {}, True),
        ("jigsaw", "proposed", {"channel_mix": True}, False),
        ("jigsaw", "etc", {}, True),
        ("jigsaw", "le", {}, False),
        ("kpa", "proposed", {}, True),
        ("kpa", "le", {}, True),
        ("kpa", "ele", {}, False),
        ("kpa", "pe", {}, False),
        ("kpa", "pe", {"per_image_keys": False}, False),
        ("fr", "etc_gray", {}, False),  # changes the layout
        ("fr", "pe", {}, True),
        ("reference_plain", "etc_gray", {}, True),
    ],
)
def test_applicability_follows_capabilities(
    kind: str, cipher: str, options: dict, applies: bool
) -> None:
    probe = probe_cipher(cipher, 16, 1 if cipher == "pe" else 4, **options)
    if applies:
        get_attack(kind).check_applicable(probe)
    else:
        with pytest.raises(NotApplicableError, match=r"\w"):
            get_attack(kind).check_applicable(probe)


def test_jigsaw_needs_public_images_only_for_the_etc_solver() -> None:
    jigsaw = get_attack("jigsaw")
    assert jigsaw.inputs_for(probe_cipher("proposed", 16, 4)) == ()
    assert [i.kind for i in jigsaw.inputs_for(probe_cipher("etc", 16, 4))] == [
        InputKind.PUBLIC_IMAGES
    ]


def test_unknown_attacks_list_the_known_ones() -> None:
    with pytest.raises(UnknownAttackError, match="choose one of .*jigsaw.*kpa"):
        get_attack("nope")
