"""Population attacks on the linear patch ciphers (orthomix, orthomix_sub) and their place in
the attack registry: pooled over a corpus of one key, on synthetic smooth random fields; the key
is used here to encrypt and to score, never passed to an attack."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.attacks.test_population import natural_fields
from tests.helpers.hydra import composed
from vitlearnenc.attacks import frontier_covariance, ssim
from vitlearnenc.attacks.frontier_common import centred_patches
from vitlearnenc.attacks.frontier_covariance import (
    pooled_cube_moments,
    pooled_second_moment,
    second_moment,
    sorted_eigh,
)
from vitlearnenc.attacks.frontier_ica import ica_sample
from vitlearnenc.attacks.population import Corpus
from vitlearnenc.attacks.population.keyscore import key_scores
from vitlearnenc.attacks.population.linear import (
    LinearPopulationResult,
    linear_population_attack,
    turned,
)
from vitlearnenc.attacks.registry import NotApplicableError, get_attack
from vitlearnenc.ciphers import LinearPatchCipher, build_cipher, probe_cipher
from vitlearnenc.cli.attack import attack
from vitlearnenc.errors import InputError

#: the config key of the image size (renamed repo-wide to image_size by another issue: one place)
IMAGE_SIZE_KEY = "image_size"
TINY = [
    "data=synthetic",
    "data.native_size=16",
    "data.num_train=160",
    "data.num_test=32",
    f"{IMAGE_SIZE_KEY}=16",
    "attack.num_victim_images=16",
    "attack.grid_images=4",
    "logger=none",
]


@pytest.fixture(scope="module")
def fields() -> tuple[torch.Tensor, torch.Tensor]:
    """(victims, public): disjoint draws of the same synthetic domain."""
    return natural_fields(300, 32, seed=0), natural_fields(300, 32, seed=1)


def linear_cipher(name: str) -> LinearPatchCipher:
    cipher = build_cipher(name, 32, 4, seed=1)
    assert isinstance(cipher, LinearPatchCipher)
    return cipher


def test_second_order_attack_breaks_orthomix_sub_on_pooled_fields(
    fields: tuple[torch.Tensor, torch.Tensor],
) -> None:
    victims, public = fields
    cipher = linear_cipher("orthomix_sub")
    encrypted = cipher.encrypt(victims)
    result = linear_population_attack(encrypted, public, 4, cipher.mixing_unit_divisor)
    scores = key_scores(cipher, result)
    assert scores["k1_accuracy"] == 1.0
    # not the negative image: the smoothness prior cannot see a global sign, the skew vote can
    assert ssim(result.decrypt(encrypted[:50]), victims[:50]).mean() > 0.95
    assert scores["matrix_error"] < 1.0


@pytest.mark.parametrize("method", ["covariance", "ica"])
def test_chunks_and_one_tensor_are_the_same_corpus(
    method: str, fields: tuple[torch.Tensor, torch.Tensor]
) -> None:
    victims, public = fields
    cipher = linear_cipher("orthomix_sub")
    encrypted = cipher.encrypt(victims[:100])
    whole = linear_population_attack(encrypted, public[:100], 4, 2, method)  # type: ignore[arg-type]
    parts = linear_population_attack(
        list(encrypted.split(30)),
        Corpus.from_tensor(public[:100], chunk_size=7),
        4,
        2,
        method,  # type: ignore[arg-type]
    )
    assert np.array_equal(whole.block_perm, parts.block_perm)
    assert np.allclose(whole.matrix, parts.matrix)
    assert whole.images == parts.images == 100


def test_pooled_statistics_equal_the_one_array_statistics(
    fields: tuple[torch.Tensor, torch.Tensor], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Accumulated in pieces of 5 images (so 100 images take 20 pieces), the second moment,
    the third-moment statistics and the ICA subset equal those of the whole array at once."""
    monkeypatch.setattr(frontier_covariance, "_PIECE_VALUES", 5 * 3 * 32 * 32)
    encrypted = linear_cipher("orthomix").encrypt(fields[0][:100])
    chunks = list(encrypted.split(33))
    units = centred_patches(encrypted, 4).reshape(-1, 48)
    moment, count = pooled_second_moment(chunks, 4)
    assert count == 6400
    np.testing.assert_allclose(moment, second_moment(units), rtol=1e-10, atol=1e-14)
    vectors = sorted_eigh(moment)[1]
    cubes = pooled_cube_moments(chunks, 4, vectors)
    coeffs = (units @ vectors) ** 3
    np.testing.assert_allclose(cubes.mean, coeffs.mean(axis=0), rtol=1e-8, atol=1e-16)
    np.testing.assert_allclose(
        cubes.error, coeffs.std(axis=0) / np.sqrt(len(coeffs)), rtol=1e-8, atol=1e-16
    )
    sample = ica_sample(chunks, 4, count, 500, np.random.default_rng(3))
    expected = units[np.random.default_rng(3).permutation(count)[:500]]
    np.testing.assert_array_equal(sample, expected)


def test_a_one_shot_corpus_is_refused(fields: tuple[torch.Tensor, torch.Tensor]) -> None:
    victims, public = fields
    encrypted = linear_cipher("orthomix").encrypt(victims[:8])
    with pytest.raises(InputError, match="one-shot"):
        linear_population_attack(iter(encrypted.split(4)), public, 4, 1)


def test_one_ciphertext_does_not_give_the_key(fields: tuple[torch.Tensor, torch.Tensor]) -> None:
    victims, public = fields
    cipher = linear_cipher("orthomix_sub")
    result = linear_population_attack(cipher.encrypt(victims[:1]), public, 4, 2)
    assert key_scores(cipher, result)["exact"] is False


def test_known_pairs_score_exact_and_a_wrong_matrix_does_not() -> None:
    cipher = linear_cipher("orthomix")
    truth = LinearPopulationResult(cipher.patch_matrix(3), cipher.block_perm.copy(), 4, 1, "kpa")
    assert key_scores(cipher, truth) == pytest.approx(
        {"k1_accuracy": 1.0, "map_accuracy": 1.0, "matrix_error": 0.0, "exact": True}
    )
    noisy = LinearPopulationResult(truth.matrix + 1e-3, truth.block_perm, 4, 1, "kpa")
    assert key_scores(cipher, noisy)["exact"] is False


@pytest.mark.parametrize("variant", range(8))
def test_turned_estimate_restores_the_turned_image(
    variant: int, fields: tuple[torch.Tensor, torch.Tensor]
) -> None:
    victims = fields[0][:4]
    cipher = linear_cipher("orthomix")
    truth = LinearPopulationResult(cipher.patch_matrix(3), cipher.block_perm.copy(), 4, 1, "x")
    expected = victims.flip(-1) if variant >= 4 else victims
    expected = torch.rot90(expected, variant % 4, dims=(-2, -1))
    assert torch.equal(turned(truth, 3, 8, variant).decrypt(cipher.encrypt(victims)), expected)


def test_bad_corpora_are_reported(fields: tuple[torch.Tensor, torch.Tensor]) -> None:
    victims, public = fields
    cipher = linear_cipher("orthomix")
    with pytest.raises(InputError, match="real-valued"):
        linear_population_attack(victims, public, 4, 1)  # uint8: rounded, not ciphertexts
    with pytest.raises(InputError, match="public images"):
        linear_population_attack(cipher.encrypt(victims[:4]), public[:, :, :16], 4, 1)
    with pytest.raises(InputError, match="N >= 1"):
        linear_population_attack([], public, 4, 1)


def test_estimates_never_show_in_reprs_or_logs(
    fields: tuple[torch.Tensor, torch.Tensor], caplog: pytest.LogCaptureFixture
) -> None:
    victims, public = fields
    cipher = linear_cipher("orthomix_sub")
    with caplog.at_level(logging.DEBUG):
        result = linear_population_attack(cipher.encrypt(victims[:64]), public[:64], 4, 2)
    shown = repr(result) + caplog.text
    assert str(result.block_perm[:6].tolist())[1:-1] not in shown
    assert f"{result.matrix[0, 0]:.4f}" not in shown


def test_frontier_attacks_apply_to_linear_ciphers_only() -> None:
    for name in ("frontier_covariance", "frontier_ica", "frontier_kpa"):
        registered = get_attack(name)
        for cipher in ("orthomix", "orthomix_sub"):
            registered.check_applicable(probe_cipher(cipher, 32, 4))
        for cipher in ("proposed", "pe", "le"):
            with pytest.raises(NotApplicableError, match="linear patch ciphers"):
                registered.check_applicable(probe_cipher(cipher, 32, 4))


def run(name: str, cipher: str, tmp_path: Path, extra: list[str]) -> dict:
    overrides = [f"attack={name}", f"cipher={cipher}", "key=seed", *TINY, *extra]
    with composed("attack", overrides, tmp_path) as cfg:
        attack(cfg)
    return json.loads((tmp_path / "run" / "metrics.json").read_text())


def test_frontier_kpa_runs_from_the_cli_and_recovers_the_key(tmp_path: Path) -> None:
    # 16/4: 16 patches of L = 48 values per pair, so 4 pairs give the k*N >= L - 1 equations
    summary = run("frontier_kpa", "orthomix", tmp_path, ["attack.num_known_pairs=4"])
    assert summary["applicable"] and summary["budget"]["known_pairs"] == 4
    assert summary["key_recovery"]["exact"] is True
    assert summary["ssim"]["mean"] == pytest.approx(1.0)
    assert (tmp_path / "run" / "grid.png").stat().st_size > 0  # real-valued ciphertexts shown


def test_frontier_covariance_runs_from_the_cli_and_scores_the_key(tmp_path: Path) -> None:
    extra = ["attack.corpus_size=120", "attack.num_public_images=32"]
    summary = run("frontier_covariance", "orthomix_sub", tmp_path, extra)
    assert summary["applicable"] and summary["budget"]["corpus_size"] == 120
    assert summary["budget"]["public_images"] == 32
    assert {"k1_accuracy", "map_accuracy", "matrix_error", "exact"} <= set(summary["key_recovery"])
    assert -1 <= summary["ssim"]["mean"] <= 1


def test_frontier_attack_on_pe_says_why(tmp_path: Path) -> None:
    summary = run("frontier_ica", "pe", tmp_path, [])
    assert summary["applicable"] is False and "linear patch ciphers" in summary["reason"]
