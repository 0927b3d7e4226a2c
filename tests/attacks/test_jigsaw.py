"""Jigsaw-solver attack: block puzzle, shared pixel shuffle, symmetries and scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.helpers.images import smooth_images as _smooth_images
from vitlearnenc.attacks.jigsaw import (
    _position_costs,
    direct_accuracy,
    estimate_pixel_perm,
    jigsaw_attack,
    largest_component,
    neighbour_accuracy,
    solve_block_puzzle,
    solve_jigsaw,
    square_symmetries,
    symmetry_between,
)
from vitlearnenc.ciphers import CipherKey, ProposedCipher, build_cipher


def smooth_images(count: int, size: int, seed: int) -> torch.Tensor:
    """Smooth test images with four blobs (more texture for the solver)."""
    return _smooth_images(count, size, seed, blobs=4)


def scramble_blocks(images: torch.Tensor, block: int, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """Block scrambling only (K2 = identity): the input of the block-puzzle stage."""
    reference = build_cipher("proposed", image_size=images.shape[-1], block_size=block, seed=seed)
    block_perm = reference.key["block_perm"]
    material = {"block_perm": block_perm, "pixel_perm": np.arange((block // 2) ** 2)}
    key = CipherKey("proposed", images.shape[-2:], block, material, {"channel_mix": False})
    return ProposedCipher(key).encrypt(images), block_perm


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_block_puzzle_reassembles_smooth_image(seed: int) -> None:
    image = smooth_images(1, 32, seed=seed)
    scrambled, block_perm = scramble_blocks(image, 8, seed=seed)  # 4x4 grid of 8x8 blocks
    estimate = solve_block_puzzle(scrambled[0], 8)
    assert direct_accuracy(estimate, block_perm) == 1.0
    assert neighbour_accuracy(estimate, block_perm) == 1.0


def test_block_puzzle_with_small_blocks_is_mostly_right() -> None:
    image = smooth_images(1, 32, seed=4)
    scrambled, block_perm = scramble_blocks(image, 4, seed=4)  # 8x8 grid of 4x4 blocks
    estimate = solve_block_puzzle(scrambled[0], 4)
    assert sorted(estimate.tolist()) == list(range(64))
    assert neighbour_accuracy(estimate, block_perm) > 0.8


@pytest.mark.parametrize(("size", "block", "count"), [(32, 4, 8), (32, 8, 8), (64, 16, 4)])
def test_pixel_perm_recovered_up_to_symmetry(size: int, block: int, count: int) -> None:
    images = smooth_images(count, size, seed=block)
    cipher = build_cipher("proposed", image_size=size, block_size=block, seed=block + 1)
    estimate = estimate_pixel_perm(cipher.encrypt(images), block)
    symmetry = symmetry_between(estimate, cipher.key["pixel_perm"])
    assert symmetry is not None
    # the seams between the four sub-blocks are directional and fix the symmetry here
    assert symmetry == "identity"


def test_position_statistics_do_not_depend_on_chunking() -> None:
    encrypted = build_cipher("proposed", image_size=32, block_size=8, seed=0).encrypt(
        smooth_images(5, 32, seed=0)
    )
    whole, chunked = _position_costs(encrypted, 8), _position_costs(encrypted, 8, chunk=2)
    for name, costs in whole.items():
        np.testing.assert_allclose(chunked[name], costs, rtol=1e-9, atol=1e-6)


@pytest.mark.gpu
def test_pixel_perm_estimate_on_cuda_matches_cpu() -> None:
    encrypted = build_cipher("proposed", image_size=64, block_size=16, seed=0).encrypt(
        smooth_images(4, 64, seed=0)
    )
    np.testing.assert_array_equal(
        estimate_pixel_perm(encrypted.cuda(), 16), estimate_pixel_perm(encrypted, 16)
    )
    result = solve_jigsaw(encrypted.cuda(), 16)
    assert result.restored.is_cuda


def test_symmetry_between_names_each_symmetry() -> None:
    pixel_perm = np.random.default_rng(0).permutation(16)
    maps = square_symmetries(4)
    assert len({tuple(m) for m in maps.values()}) == 8
    for name, mapping in maps.items():
        assert symmetry_between(mapping[pixel_perm], pixel_perm) == name
    assert symmetry_between(np.roll(pixel_perm, 1), pixel_perm) is None
    rot90 = maps["rot90"].reshape(4, 4)
    np.testing.assert_array_equal(
        rot90[0], [12, 8, 4, 0]
    )  # counter-clockwise: top row -> left column


def test_full_attack_restores_smooth_images() -> None:
    images = smooth_images(6, 32, seed=5)
    cipher = build_cipher("proposed", image_size=32, block_size=8, seed=9)
    result = solve_jigsaw(cipher.encrypt(images), 8)
    np.testing.assert_array_equal(result.pixel_perm, cipher.key["pixel_perm"])
    accuracies = [direct_accuracy(perm, cipher.key["block_perm"]) for perm in result.block_perms]
    assert min(accuracies) == 1.0
    torch.testing.assert_close(result.restored, images)
    torch.testing.assert_close(jigsaw_attack(cipher.encrypt(images), 8), images)
    assert "block_perm" not in repr(result) and "[" not in repr(result)


def test_accuracy_scores() -> None:
    truth = np.arange(16)
    assert direct_accuracy(truth, truth) == 1.0 and neighbour_accuracy(truth, truth) == 1.0
    # the whole 4x4 image shifted one column right (wrapping): no block in place, but all 12
    # vertical pairs and the 8 horizontal pairs that do not straddle the wrap survive
    shifted = (truth // 4) * 4 + (truth % 4 + 1) % 4
    assert direct_accuracy(shifted, truth) == 0.0
    assert neighbour_accuracy(shifted, truth) == pytest.approx((8 + 12) / 24)
    with pytest.raises(ValueError, match="square grid"):
        neighbour_accuracy(np.arange(8), np.arange(8))
    assert neighbour_accuracy(np.arange(8), np.arange(8), grid=(2, 4)) == 1.0


def test_largest_component_credits_a_correct_region_that_is_shifted() -> None:
    truth = np.arange(16)
    assert largest_component(truth, truth) == 1.0
    # shifted one column right with wrap: true columns 0-2 stay one correct 12-block region
    shifted = (truth // 4) * 4 + (truth % 4 + 1) % 4
    assert largest_component(shifted, truth) == pytest.approx(12 / 16)
    # blocks 1 and 2 are consecutive in row-major order but not neighbours (row end, row start):
    # placing them side by side joins nothing
    assert largest_component(np.array([2, 0, 1, 3]), np.arange(4)) == pytest.approx(1 / 4)
    with pytest.raises(ValueError, match="differ in length"):
        largest_component(np.arange(4), np.arange(9))


def test_bad_input_is_reported() -> None:
    with pytest.raises(ValueError, match="divide"):
        solve_block_puzzle(torch.zeros(3, 30, 30, dtype=torch.uint8), 8)
    with pytest.raises(ValueError, match="one \\(C, H, W\\) image"):
        solve_block_puzzle(torch.zeros(1, 3, 32, 32, dtype=torch.uint8), 8)
    with pytest.raises(ValueError, match="even"):
        estimate_pixel_perm(torch.zeros(1, 3, 30, 30, dtype=torch.uint8), 5)
