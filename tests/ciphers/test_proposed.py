"""The proposed cipher against an independent, literal implementation of the paper's steps."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vitlearnenc.ciphers import (
    CipherInputError,
    KeyMismatchError,
    ProposedCipher,
    build_cipher,
    generate_key,
)


def reference_encrypt(
    image: np.ndarray, block_perm: np.ndarray, pixel_perm: np.ndarray, m: int
) -> np.ndarray:
    """The paper's steps with explicit loops: (H, W, C) uint8 -> (H, W, C).

    1-2: cut into M x M blocks, encrypted block i = plain block block_perm[i];
    3-4: cut each block into four sub-blocks; in each, pixel k = pixel pixel_perm[k];
    5: reassemble.
    """
    height, width, _ = image.shape
    grid_w = width // m
    blocks = [
        image[r : r + m, c : c + m].copy() for r in range(0, height, m) for c in range(0, width, m)
    ]
    scrambled = [blocks[block_perm[i]] for i in range(len(blocks))]
    s = m // 2
    shuffled = []
    for block in scrambled:
        out = np.empty_like(block)
        for sub_r in (0, s):
            for sub_c in (0, s):
                sub = block[sub_r : sub_r + s, sub_c : sub_c + s]
                pixels = [sub[k // s, k % s] for k in range(s * s)]
                for k in range(s * s):
                    out[sub_r + k // s, sub_c + k % s] = pixels[pixel_perm[k]]
        shuffled.append(out)
    result = np.empty_like(image)
    for i, block in enumerate(shuffled):
        r, c = (i // grid_w) * m, (i % grid_w) * m
        result[r : r + m, c : c + m] = block
    return result


def reference_encrypt_channel_mix(image: np.ndarray, block_perm, pixel_perm, m: int) -> np.ndarray:
    """Channel-mixing variant: the C*(M/2)^2 values of a sub-block, channel-major, permuted."""
    height, width, channels = image.shape
    grid_w = width // m
    s = m // 2
    result = np.empty_like(image)
    for i in range(len(block_perm)):
        src = block_perm[i]
        sr, sc = (src // grid_w) * m, (src % grid_w) * m
        dr, dc = (i // grid_w) * m, (i % grid_w) * m
        for off_r in (0, s):
            for off_c in (0, s):
                values = [
                    image[sr + off_r + k // s, sc + off_c + k % s, ch]
                    for ch in range(channels)
                    for k in range(s * s)
                ]
                for j in range(channels * s * s):
                    ch, k = divmod(j, s * s)
                    result[dr + off_r + k // s, dc + off_c + k % s, ch] = values[pixel_perm[j]]
    return result


@pytest.mark.parametrize(
    ("size", "block"), [((8, 8), 4), ((16, 24), 4), ((32, 32), 8), ((12, 18), 6), ((32, 32), 2)]
)
def test_matches_reference(size: tuple[int, int], block: int) -> None:
    cipher = build_cipher("proposed", image_size=size, block_size=block, seed=3)
    images = torch.randint(0, 256, (3, 3, *size), dtype=torch.uint8)
    encrypted = cipher.encrypt(images)
    for image, got in zip(images, encrypted, strict=True):
        expected = reference_encrypt(
            image.permute(1, 2, 0).numpy(),
            cipher.key["block_perm"],
            cipher.key["pixel_perm"],
            block,
        )
        np.testing.assert_array_equal(got.permute(1, 2, 0).numpy(), expected)


def test_channel_mix_matches_reference() -> None:
    cipher = build_cipher("proposed", image_size=16, block_size=4, seed=5, channel_mix=True)
    assert cipher.key["pixel_perm"].size == 3 * 4
    image = torch.randint(0, 256, (1, 3, 16, 16), dtype=torch.uint8)
    expected = reference_encrypt_channel_mix(
        image[0].permute(1, 2, 0).numpy(), cipher.key["block_perm"], cipher.key["pixel_perm"], 4
    )
    np.testing.assert_array_equal(cipher.encrypt(image)[0].permute(1, 2, 0).numpy(), expected)


@pytest.mark.parametrize("channel_mix", [False, True])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64])
@pytest.mark.parametrize(("size", "block"), [(8, 4), ((16, 32), 8), (32, 4)])
def test_round_trip(channel_mix: bool, dtype: torch.dtype, size, block: int) -> None:
    cipher = build_cipher(
        "proposed", image_size=size, block_size=block, seed=1, channel_mix=channel_mix
    )
    shape = (4, 3, *((size, size) if isinstance(size, int) else size))
    images = torch.randint(0, 256, shape, dtype=torch.uint8)
    if dtype.is_floating_point:
        images = images.to(dtype) / 255
    encrypted = cipher.encrypt(images)
    assert encrypted.dtype == dtype and encrypted.shape == images.shape
    assert not torch.equal(encrypted, images)
    torch.testing.assert_close(cipher.decrypt(encrypted), images, rtol=0, atol=0)


def test_steps_commute_and_keep_block_content() -> None:
    """Block scrambling moves whole blocks: the multiset of pixel values of every encrypted
    block equals that of its source plain block (pixel shuffling stays inside blocks)."""
    cipher = build_cipher("proposed", image_size=16, block_size=4, seed=2)
    image = torch.randint(0, 256, (1, 3, 16, 16), dtype=torch.uint8)
    enc = cipher.encrypt(image)[0]
    blocks = lambda t: t.unfold(1, 4, 4).unfold(2, 4, 4).reshape(3, 16, 16).permute(1, 0, 2)  # noqa: E731
    plain_blocks, enc_blocks = blocks(image[0]), blocks(enc)
    for i, src in enumerate(cipher.key["block_perm"]):
        assert sorted(enc_blocks[i].flatten().tolist()) == sorted(
            plain_blocks[src].flatten().tolist()
        )


def test_any_channel_count_when_channel_tied() -> None:
    cipher = build_cipher("proposed", image_size=8, block_size=4, seed=0)
    gray = torch.randint(0, 256, (2, 1, 8, 8), dtype=torch.uint8)
    rgb = gray.expand(2, 3, 8, 8).contiguous()
    assert torch.equal(cipher.encrypt(gray).expand(2, 3, 8, 8), cipher.encrypt(rgb))


def test_key_space_bits_for_vit_b16() -> None:
    cipher = build_cipher("proposed", image_size=224, block_size=16, seed=0)
    exact = math.log2(math.factorial(196) * math.factorial(64))
    assert cipher.key_space_bits() == pytest.approx(exact, rel=1e-12)
    # ~10^455 as stated in the spec
    assert cipher.key_space_bits() * math.log10(2) == pytest.approx(455, abs=1)


def test_patch_alignment() -> None:
    cipher = build_cipher("proposed", image_size=32, block_size=4, seed=0)
    assert cipher.is_patch_aligned(4)
    assert not cipher.is_patch_aligned(8)
    assert not cipher.is_patch_aligned(2)


def test_seeds_give_reproducible_distinct_keys_and_csprng_differs() -> None:
    a = generate_key("proposed", 32, 4, seed=7)
    assert a == generate_key("proposed", 32, 4, seed=7)
    assert a != generate_key("proposed", 32, 4, seed=8)
    assert generate_key("proposed", 32, 4) != generate_key("proposed", 32, 4)


def test_seeded_key_ignores_global_rng() -> None:
    torch.manual_seed(0)
    np.random.seed(0)
    a = generate_key("proposed", 32, 4, seed=11)
    torch.manual_seed(1)
    np.random.seed(1)
    assert a == generate_key("proposed", 32, 4, seed=11)


def test_bad_inputs_have_clear_errors() -> None:
    with pytest.raises(CipherInputError, match="not a multiple of the block size 4"):
        build_cipher("proposed", image_size=30, block_size=4)
    with pytest.raises(ValueError, match="must be even"):
        build_cipher("proposed", image_size=30, block_size=5)
    cipher = build_cipher("proposed", image_size=32, block_size=4, seed=0)
    with pytest.raises(KeyMismatchError, match="made for 32x32 images but got 64x64"):
        cipher.encrypt(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))
    with pytest.raises(CipherInputError, match=r"\(B, C, H, W\)"):
        cipher.encrypt(torch.zeros(3, 32, 32, dtype=torch.uint8))
    with pytest.raises(CipherInputError, match="uint8"):
        cipher.encrypt(torch.zeros(1, 3, 32, 32, dtype=torch.int32))


def test_repr_never_shows_key_material() -> None:
    cipher = build_cipher("proposed", image_size=8, block_size=4, seed=0)
    text = repr(cipher) + str(cipher.key)
    assert "block_perm" not in text and str(cipher.key["pixel_perm"].tolist()) not in text
    assert cipher.key.fingerprint in text


def test_is_an_index_cipher_with_one_gather() -> None:
    cipher = build_cipher("proposed", image_size=8, block_size=4, seed=0)
    assert isinstance(cipher, ProposedCipher)
    plan = cipher.build_plan(3)
    assert plan.spatial and plan.negate is None
    assert sorted(plan.index.tolist()) == list(range(64))


@pytest.mark.gpu
def test_cuda_matches_cpu() -> None:
    cipher = build_cipher("proposed", image_size=32, block_size=4, seed=0)
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    on_gpu = cipher.encrypt(images.cuda())
    assert on_gpu.device.type == "cuda"
    assert torch.equal(on_gpu.cpu(), cipher.encrypt(images))
    assert torch.equal(cipher.decrypt(on_gpu).cpu(), images)
