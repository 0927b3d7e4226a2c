"""Key-based model transformation for the linear patch ciphers (orthomix, orthomix_sub): a ViT
transformed with the key reads encrypted images exactly as the plain ViT reads plain ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer
from torch.testing import assert_close

from tests.models.test_key_transform import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    normalise,
    random_images,
    tiny_vit,
)
from vitlearnenc.ciphers import LinearPatchCipher, build_cipher, generate_key
from vitlearnenc.models.key_transform import (
    ModelTransformError,
    absorbable_cipher_names,
    absorbable_permutations,
    check_transformable,
    transform_vit,
)

NAMES = ["orthomix", "orthomix_sub"]
CASES = [
    pytest.param(16, 4, {}, id="16px-p4-cls"),
    pytest.param(32, 8, {"class_token": False, "global_pool": "avg"}, id="32px-p8-avg"),
    pytest.param(32, 4, {"reg_tokens": 2}, id="32px-p4-registers"),
    pytest.param(32, 4, {"no_embed_class": True}, id="32px-p4-no-embed-class"),
]


def test_linear_ciphers_are_listed_as_absorbable() -> None:
    assert {"proposed", *NAMES} <= set(absorbable_cipher_names())


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("img_size", "patch_size", "options"), CASES)
def test_transformed_model_on_encrypted_images_equals_plain_model(
    name: str, img_size: int, patch_size: int, options: dict
) -> None:
    model = tiny_vit(img_size, patch_size, **options)
    cipher = build_cipher(name, img_size, patch_size, seed=7)
    transformed = transform_vit(model, cipher.key)
    images = random_images(4, img_size)
    encrypted = cipher.encrypt(images)
    assert encrypted.dtype == torch.float32
    with torch.no_grad():
        logits = model(normalise(images))
        logits_t = transformed((encrypted - 0.5) / 0.5)  # what the DataModule feeds the model
        logits_untransformed = model((encrypted - 0.5) / 0.5)
    assert_close(logits_t, logits, atol=1e-5, rtol=1e-5)
    assert (logits_untransformed - logits).abs().max() > 1e-2  # the transformation did the work


@pytest.mark.parametrize("name", NAMES)
def test_other_normalisations_are_absorbed_through_the_bias(name: str) -> None:
    model = tiny_vit(32, 4)
    cipher = build_cipher(name, 32, 4, seed=3)
    transformed = transform_vit(model, cipher, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    assert not torch.equal(transformed.patch_embed.proj.bias, model.patch_embed.proj.bias)
    images = random_images(3, 32)
    encrypted = cipher.encrypt(images)
    mean = torch.tensor(IMAGENET_MEAN).view(1, -1, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, -1, 1, 1)
    with torch.no_grad():
        expected = model(normalise(images, IMAGENET_MEAN, IMAGENET_STD))
        actual = transformed((encrypted - mean) / std)
        default = transform_vit(model, cipher)((encrypted - mean) / std)
    assert_close(actual, expected, atol=1e-5, rtol=1e-5)
    assert (default - expected).abs().max() > 1e-3  # the statistics matter


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("stats", [None, (IMAGENET_MEAN, IMAGENET_STD)], ids=["half", "imagenet"])
def test_inverse_restores_the_weights(name: str, stats) -> None:
    model = tiny_vit(32, 4, reg_tokens=1)
    mean, std = stats or (None, None)
    key = generate_key(name, 32, 4, seed=11)
    transformed = transform_vit(model, key, mean=mean, std=std)
    restored = transform_vit(transformed, key, inverse=True, mean=mean, std=std)
    changed = {"pos_embed", "patch_embed.proj.weight"} | (
        {"patch_embed.proj.bias"} if stats else set()
    )
    original, after = model.state_dict(), transformed.state_dict()
    for name_, tensor in restored.state_dict().items():
        assert_close(tensor, original[name_], atol=1e-6, rtol=1e-6, msg=name_)
        assert torch.equal(after[name_], original[name_]) != (name_ in changed), name_
    assert torch.equal(transformed.pos_embed[:, :2], model.pos_embed[:, :2])  # prefix rows kept


def test_resized_224_patch16_orthomix_is_exact() -> None:
    """The paper's geometry: 32x32 images resized to 224, L = 768 values per patch."""
    from vitlearnenc.utils.image_ops import resize_uint8

    torch.manual_seed(0)
    model = VisionTransformer(
        img_size=224, patch_size=16, embed_dim=24, depth=1, num_heads=2, num_classes=10
    ).eval()
    with torch.no_grad():
        model.head.weight.normal_()
    cipher = build_cipher("orthomix_sub", 224, 16, seed=1)
    resized = resize_uint8(random_images(2, 32), 224)
    transformed = transform_vit(model, cipher.key)
    with torch.no_grad():
        expected = model(normalise(resized))
        actual = transformed(2 * cipher.encrypt(resized) - 1)
    assert_close(actual, expected, atol=1e-5, rtol=1e-5)


def _sgd(params):
    return torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=5e-4)


def _adamw(params):
    return torch.optim.AdamW(params, lr=1e-3, weight_decay=0.05)


def _train_pair(name: str, make_optimizer, steps: int = 4):
    plain_model = tiny_vit(16, 4).train().double()
    cipher = build_cipher(name, 16, 4, seed=21)
    encrypted_model = transform_vit(plain_model, cipher.key)
    optimizers = [make_optimizer(m.parameters()) for m in (plain_model, encrypted_model)]
    generator = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(steps):
        images = torch.randint(0, 256, (8, 3, 16, 16), generator=generator, dtype=torch.uint8)
        labels = torch.randint(0, 10, (8,), generator=generator)
        step = []
        for model, optimizer, batch in zip(
            (plain_model, encrypted_model),
            optimizers,
            (normalise(images).double(), 2 * cipher.encrypt(images.double() / 255) - 1),
            strict=True,
        ):
            loss = F.cross_entropy(model(batch), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step.append(loss.detach())
        losses.append(step)
    return plain_model, encrypted_model, cipher, losses


@pytest.mark.parametrize("name", NAMES)
def test_sgd_on_encrypted_images_follows_the_plain_trajectory(name: str) -> None:
    plain_model, encrypted_model, cipher, losses = _train_pair(name, _sgd)
    for plain_loss, encrypted_loss in losses:
        assert_close(encrypted_loss, plain_loss)
    expected = dict(transform_vit(plain_model, cipher.key).named_parameters())
    for param_name, param in encrypted_model.named_parameters():
        assert_close(param, expected[param_name], msg=param_name)


def test_adamw_is_not_rotation_equivariant() -> None:
    """The documented caveat is real: Adam's per-coordinate steps depend on the input basis of
    the patch embedding, so the two runs part ways (the permutation cipher does not)."""
    _, _, _, losses = _train_pair("orthomix", _adamw)
    assert_close(losses[0][1], losses[0][0])  # the same start
    assert (losses[-1][1] - losses[-1][0]).abs() > 1e-6


def test_linear_cipher_errors() -> None:
    model = tiny_vit(32, 4)
    with pytest.raises(ModelTransformError, match="not patch-aligned"):
        check_transformable(model, generate_key("orthomix", 32, 8, seed=0))
    with pytest.raises(ModelTransformError, match="img_size"):
        transform_vit(model, generate_key("orthomix", 16, 4, seed=0))
    with pytest.raises(ModelTransformError, match="mixes patch values linearly"):
        absorbable_permutations(generate_key("orthomix", 32, 4, seed=0), 3)
    with pytest.raises(ModelTransformError, match="one value per channel"):
        transform_vit(model, generate_key("orthomix", 32, 4, seed=0), mean=(0.5, 0.5))
    no_bias = VisionTransformer(
        img_size=32, patch_size=4, embed_dim=16, depth=1, num_heads=2, pre_norm=True
    )  # CLIP-style: the patch embedding has no bias
    assert no_bias.patch_embed.proj.bias is None
    key = generate_key("orthomix", 32, 4, seed=0)
    with pytest.raises(ModelTransformError, match="no bias"):
        transform_vit(no_bias, key, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    transform_vit(no_bias, key)  # mean 0.5: nothing to absorb into a bias


def test_patch_matrix_of_the_sub_variant_is_block_diagonal() -> None:
    cipher = build_cipher("orthomix_sub", 16, 8, seed=0)
    assert isinstance(cipher, LinearPatchCipher)
    matrix = cipher.patch_matrix(3)
    nonzero = (np.abs(matrix) > 0).sum(axis=1)
    assert (nonzero == 48).all()  # each output value mixes the 3 * 4 * 4 values of a sub-block
