"""Weight-matching key recovery: exact on an untrained transformed ViT, scoring, input checks."""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer

from vitlearnenc.attacks import WeightMatchResult, key_recovery_rate, recover_key_from_weights
from vitlearnenc.ciphers import build_cipher, generate_key
from vitlearnenc.models.key_transform import transform_vit


def public_vit(
    img_size: int = 32, patch_size: int = 4, embed_dim: int = 32, **kwargs
) -> VisionTransformer:
    """Random timm init standing in for public pretrained weights (0.02-std pos_embed rows)."""
    torch.manual_seed(0)
    return VisionTransformer(
        img_size=img_size,
        patch_size=patch_size,
        embed_dim=embed_dim,
        depth=1,
        num_heads=2,
        num_classes=10,
        **kwargs,
    )


def is_permutation(perm: np.ndarray) -> bool:
    return bool(np.array_equal(np.sort(perm), np.arange(perm.size)))


@pytest.mark.parametrize(
    ("img_size", "patch_size", "options", "channel_mix"),
    [
        pytest.param(32, 4, {}, False, id="32px-p4-cls"),
        pytest.param(32, 4, {}, True, id="32px-p4-cls-mix"),
        pytest.param(32, 8, {"class_token": False, "global_pool": "avg"}, False, id="32px-p8-avg"),
        pytest.param(32, 8, {"reg_tokens": 2, "no_embed_class": True}, True, id="32px-p8-reg-mix"),
        pytest.param(224, 16, {"embed_dim": 24}, False, id="224px-p16"),
    ],
)
@pytest.mark.parametrize("told_channel_mix", [False, True], ids=["inferred", "told"])
def test_recovers_the_key_exactly_from_an_untrained_transformed_model(
    img_size: int, patch_size: int, options: dict, channel_mix: bool, told_channel_mix: bool
) -> None:
    public = public_vit(img_size, patch_size, **options)
    key = generate_key("proposed", img_size, patch_size, seed=13, channel_mix=channel_mix)
    transformed = transform_vit(public, key)
    result = recover_key_from_weights(
        public, transformed, channel_mix=channel_mix if told_channel_mix else None
    )
    assert result.channel_mix == channel_mix
    assert np.array_equal(result.block_perm, key["block_perm"])
    assert np.array_equal(result.pixel_perm, key["pixel_perm"])
    scores = key_recovery_rate(result, key)
    assert all(scores[f"{name}_exact"] for name in ("block_perm", "pixel_perm", "patch_perm"))
    assert (result.block_margin > 0).all() and (result.pixel_margin > 0).all()


def test_still_returns_permutations_after_fine_tuning_with_smaller_margins() -> None:
    """A handful of SGD steps on encrypted data: the matches blur (margins shrink) but remain
    permutations; the recovery rate at this point is reported, not asserted."""
    public = public_vit(32, 4)
    cipher = build_cipher("proposed", 32, 4, seed=1)
    transformed = transform_vit(public, cipher).train()
    before = recover_key_from_weights(public, transformed)
    optimizer = torch.optim.SGD(transformed.parameters(), lr=0.3, momentum=0.9, weight_decay=5e-4)
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        images = torch.randint(0, 256, (16, 3, 32, 32), generator=generator, dtype=torch.uint8)
        labels = torch.randint(0, 10, (16,), generator=generator)
        logits = transformed((cipher.encrypt(images).float() / 255 - 0.5) / 0.5)
        optimizer.zero_grad()
        F.cross_entropy(logits, labels).backward()
        optimizer.step()
    after = recover_key_from_weights(public, transformed)
    assert is_permutation(after.block_perm) and is_permutation(after.pixel_perm)
    assert is_permutation(after.patch_perm)
    assert after.block_margin.mean() < before.block_margin.mean()
    assert after.patch_margin.mean() < before.patch_margin.mean()


def test_scores_partial_and_wrong_mode_recoveries() -> None:
    public = public_vit(32, 4)
    key = generate_key("proposed", 32, 4, seed=2)
    exact = recover_key_from_weights(public, transform_vit(public, key))
    block_perm = exact.block_perm.copy()
    block_perm[[0, 1]] = block_perm[[1, 0]]
    mixed_guess = np.arange(3 * key["pixel_perm"].size)
    partial = dataclasses.replace(
        exact, block_perm=block_perm, pixel_perm=mixed_guess, channel_mix=True
    )
    scores = key_recovery_rate(partial, key)
    assert scores["block_perm_rate"] == pytest.approx(1 - 2 / block_perm.size)
    assert scores["block_perm_exact"] is False
    assert scores["pixel_perm_rate"] == 0.0 and scores["pixel_perm_exact"] is False
    assert scores["patch_perm_exact"] is True


def test_attack_takes_weights_only_and_keeps_key_material_out_of_its_repr() -> None:
    assert set(inspect.signature(recover_key_from_weights).parameters) == {
        "public",
        "transformed",
        "block_size",
        "channel_mix",
    }
    public = public_vit(32, 8)
    key = generate_key("proposed", 32, 8, seed=3)
    result = recover_key_from_weights(public, transform_vit(public, key))
    assert isinstance(result, WeightMatchResult)
    assert "array" not in repr(result) and "[" not in repr(result)
    assert "pixel_perm=16" in repr(result)


def test_rejects_mismatched_models_and_block_size() -> None:
    public = public_vit(32, 4)
    with pytest.raises(ValueError, match="do not match"):
        recover_key_from_weights(public, public_vit(32, 8))
    with pytest.raises(ValueError, match="block size 8"):
        recover_key_from_weights(public, public, block_size=8)
