"""Known-plaintext attacks: one pair (or two) gives the proposed cipher's or LE's key."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.helpers.images import smooth_images
from vitlearnenc.attacks.kpa import (
    KnownPlaintextError,
    decrypt_with_recovered,
    recover_le_key,
    recover_proposed_key,
    recovery_rates,
)
from vitlearnenc.ciphers import build_cipher


@pytest.mark.parametrize(("size", "block"), [(32, 4), (32, 8), (64, 16)])
def test_one_pair_recovers_the_key(size: int, block: int) -> None:
    images = smooth_images(6, size, seed=block)
    cipher = build_cipher("proposed", image_size=size, block_size=block, seed=size + block)
    encrypted = cipher.encrypt(images)
    result = recover_proposed_key(images[0], encrypted[0], block)
    assert result.exact
    np.testing.assert_array_equal(result.block_perm, cipher.key["block_perm"])
    np.testing.assert_array_equal(result.pixel_perm, cipher.key["pixel_perm"])
    assert recovery_rates(result, cipher.key["block_perm"], cipher.key["pixel_perm"]) == {
        "block": 1.0,
        "pixel": 1.0,
    }
    assert result.key == cipher.key
    # every other ciphertext of the key now decrypts exactly
    torch.testing.assert_close(decrypt_with_recovered(result, encrypted[1:]), images[1:])


def test_uniform_blocks_are_ambiguous_and_a_second_pair_resolves_them() -> None:
    images = smooth_images(2, 32, seed=7)
    images[0, :, :8, :] = 200  # the top two block rows (16 blocks of 4x4) are one colour
    cipher = build_cipher("proposed", image_size=32, block_size=4, seed=11)
    encrypted = cipher.encrypt(images)

    one = recover_proposed_key(images[0], encrypted[0], 4)
    uniform_slots = np.flatnonzero(cipher.key["block_perm"] < 16)
    np.testing.assert_array_equal(one.ambiguous_blocks, uniform_slots)
    assert one.ambiguous_pixels.size == 0
    np.testing.assert_array_equal(one.pixel_perm, cipher.key["pixel_perm"])
    torch.testing.assert_close(decrypt_with_recovered(one, encrypted[:1]), images[:1])  # harmless

    both = recover_proposed_key(images, encrypted, 4)
    assert both.exact
    np.testing.assert_array_equal(both.block_perm, cipher.key["block_perm"])


def test_flat_image_leaves_pixels_ambiguous() -> None:
    flat = torch.full((3, 16, 16), 90, dtype=torch.uint8)
    encrypted = build_cipher("proposed", image_size=16, block_size=4, seed=0).encrypt(flat[None])
    result = recover_proposed_key(flat, encrypted[0], 4)
    assert result.ambiguous_blocks.size == 16 and result.ambiguous_pixels.size == 4
    assert not result.exact


def test_signature_collisions_are_resolved_by_exact_content() -> None:
    """Two blocks with the same sub-block value sets but different arrangements share a
    signature; once K2 is known their exact contents tell them apart."""
    image = smooth_images(1, 16, seed=3)[0]
    block = image[:, :4, :4].clone()
    image[:, 4:8, 4:8] = block[:, [1, 0, 3, 2]]  # rows swapped inside each 2x2 sub-block
    cipher = build_cipher("proposed", image_size=16, block_size=4, seed=5)
    result = recover_proposed_key(image, cipher.encrypt(image[None])[0], 4)
    assert result.exact
    np.testing.assert_array_equal(result.block_perm, cipher.key["block_perm"])


def test_wrong_block_size_or_pair_is_reported() -> None:
    images = smooth_images(2, 32, seed=0)
    encrypted = build_cipher("proposed", image_size=32, block_size=8, seed=0).encrypt(images)
    with pytest.raises(KnownPlaintextError, match="block size"):
        recover_proposed_key(images[0], encrypted[0], 4)
    with pytest.raises(KnownPlaintextError):
        recover_proposed_key(images[1], encrypted[0], 8)
    with pytest.raises(ValueError, match="even"):
        recover_proposed_key(images[0], encrypted[0], 5)
    with pytest.raises(ValueError, match="differ in shape"):
        recover_proposed_key(images[0], encrypted[0, :, :16], 8)


def test_result_repr_hides_the_key() -> None:
    images = smooth_images(1, 32, seed=1)
    cipher = build_cipher("proposed", image_size=32, block_size=4, seed=3)
    result = recover_proposed_key(images[0], cipher.encrypt(images)[0], 4)
    text = repr(result)
    assert "ambiguous_blocks=0" in text
    assert str(result.block_perm.tolist()[:4])[1:-1] not in text and "[" not in text


@pytest.mark.parametrize(("block", "pairs"), [(4, 1), (8, 4)])
def test_le_key_recovered_from_pairs(block: int, pairs: int) -> None:
    """64 blocks give long enough nibble sequences from one smooth pair; 16 blocks need more."""
    images = smooth_images(6, 32, seed=20 + block)
    cipher = build_cipher("le", image_size=32, block_size=block, seed=block)
    encrypted = cipher.encrypt(images)
    if pairs > 1:
        assert not recover_le_key(images[0], encrypted[0], block).exact
    result = recover_le_key(images[:pairs], encrypted[:pairs], block)
    assert result.exact
    np.testing.assert_array_equal(result.perm, cipher.key["perm"])
    assert result.key == cipher.key
    torch.testing.assert_close(decrypt_with_recovered(result, encrypted[4:]), images[4:])
    assert "perm" not in repr(result)


def test_le_flat_image_is_ambiguous_and_wrong_cipher_is_reported() -> None:
    flat = torch.full((1, 3, 16, 16), 0x37, dtype=torch.uint8)
    le = build_cipher("le", image_size=16, block_size=4, seed=0)
    result = recover_le_key(flat, le.encrypt(flat), 4)
    assert result.ambiguous.size == 96 and sorted(result.perm.tolist()) == list(range(96))
    images = smooth_images(1, 32, seed=0)
    proposed = build_cipher("proposed", image_size=32, block_size=4, seed=0)
    with pytest.raises(KnownPlaintextError, match="not an LE encryption"):
        recover_le_key(images, proposed.encrypt(images), 4)
