"""Jigsaw solver for EtC's rotated / flipped / negated / colour-shuffled pieces."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.helpers.images import smooth_images
from vitlearnenc.attacks.jigsaw import _pieces, square_symmetries
from vitlearnenc.attacks.jigsaw_etc import (
    ImagePrior,
    piece_variants,
    placement_scores,
    solve_etc_jigsaw,
    solve_etc_puzzle,
)
from vitlearnenc.attacks.scoring import ssim
from vitlearnenc.ciphers import build_cipher


def test_variants_are_the_96_distinct_views_and_include_every_etc_block_undone() -> None:
    image = smooth_images(1, 16, seed=0, blobs=4)
    cipher = build_cipher("etc", image_size=16, block_size=4, seed=3)
    encrypted = _pieces(cipher.encrypt(image)[0].numpy().astype(np.float64), 4)
    plain = _pieces(image[0].numpy().astype(np.float64), 4)
    variants = piece_variants(encrypted)
    assert variants.shape == (16, 96, 3, 4, 4)
    np.testing.assert_array_equal(variants[:, 0], encrypted)
    assert len(np.unique(variants[0].reshape(96, -1), axis=0)) == 96
    # each encrypted block i shows plain block block_perm[i] through one of its variants
    block_perm = cipher.key["block_perm"]
    for i in range(16):
        matches = (variants[i] == plain[block_perm[i]]).all(axis=(1, 2, 3))
        assert matches.any(), f"no variant of encrypted block {i} is its plain block"


@pytest.mark.parametrize("seed", [0, 1])
def test_smooth_image_is_reassembled_exactly_given_the_prior(seed: int) -> None:
    image = smooth_images(1, 32, seed=seed, blobs=4)
    cipher = build_cipher("etc", image_size=32, block_size=8, seed=seed + 10)  # 16 pieces
    encrypted = cipher.encrypt(image)
    # the reassembly alone is right up to one global variant ...
    unoriented, positions = solve_etc_puzzle(encrypted[0], 8)
    views = piece_variants(unoriented[None])[0]
    assert (views == image[0].numpy()).all(axis=(1, 2, 3)).any()
    scores = placement_scores(positions, cipher.key["block_perm"])
    assert scores == {"direct": 1.0, "neighbour": 1.0, "largest_component": 1.0}
    # ... which the prior picks (here a prior centred on the image itself)
    plain = image[0].numpy().astype(np.float64)
    prior = ImagePrior(mean=plain, std=np.full_like(plain, 50.0))
    restored = solve_etc_jigsaw(encrypted, 8, prior).restored
    assert restored.dtype == torch.uint8
    torch.testing.assert_close(restored, image)
    assert ssim(encrypted, image).mean() < 0.5


def test_prior_picks_the_global_variant_closest_to_the_domain() -> None:
    image = smooth_images(1, 16, seed=5, blobs=4)[0].numpy().astype(np.float64)
    turned = 255.0 - np.rot90(image, 1, axes=(1, 2))[[2, 0, 1]]
    prior = ImagePrior(mean=image, std=np.ones_like(image))
    np.testing.assert_array_equal(prior.orient(np.ascontiguousarray(turned)), image)


def test_placement_scores_are_blind_to_the_global_orientation() -> None:
    truth = np.random.default_rng(0).permutation(16)
    rotated = square_symmetries(4)["rot90"][truth]
    assert placement_scores(rotated, truth)["direct"] == 1.0
    shuffled = np.random.default_rng(1).permutation(16)
    assert placement_scores(shuffled, truth)["largest_component"] < 0.5


def test_mismatched_prior_is_reported() -> None:
    prior = ImagePrior.fit(smooth_images(4, 16, seed=0))
    encrypted = build_cipher("etc", image_size=32, block_size=8, seed=0).encrypt(
        smooth_images(1, 32, seed=0)
    )
    with pytest.raises(ValueError, match="fit it to public images of the same size"):
        solve_etc_jigsaw(encrypted, 8, prior)
