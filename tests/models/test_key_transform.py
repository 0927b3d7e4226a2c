"""Key-based model transformation: exactness, exact inverse, training equivalence, errors."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from timm.models.beit import Beit
from timm.models.vision_transformer import VisionTransformer
from torch import nn
from torch.testing import assert_close

from vitlearnenc.ciphers import (
    GatherPlan,
    ProposedCipher,
    build_cipher,
    generate_key,
    list_ciphers,
)
from vitlearnenc.models.key_transform import (
    ModelTransformError,
    absorbable_cipher_names,
    absorbable_permutations,
    check_transformable,
    patch_vector_permutation,
    transform_vit,
)
from vitlearnenc.utils.image_ops import resize_uint8

HALF = (0.5, 0.5, 0.5)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
TRANSFORMED = {"pos_embed", "patch_embed.proj.weight"}


def tiny_vit(img_size: int = 32, patch_size: int = 4, **kwargs) -> VisionTransformer:
    """A small random ViT in eval mode whose output depends strongly on the input and on token
    positions: timm's default init (0.02 std) makes logits nearly constant, so a wrong
    permutation would hide below the tolerance. Matrices get fan-in scaled unit-variance
    weights and ``pos_embed`` std 1."""
    torch.manual_seed(0)
    options = {"embed_dim": 32, "depth": 2, "num_heads": 2, "num_classes": 10, **kwargs}
    model = VisionTransformer(img_size=img_size, patch_size=patch_size, **options)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name == "pos_embed" or name.startswith("head."):
                param.normal_()
            elif param.ndim > 1:
                param.normal_(0, param[0].numel() ** -0.5)
    return model.eval()


def normalise(images: torch.Tensor, mean=HALF, std=HALF) -> torch.Tensor:
    """uint8 (B, C, H, W) -> float, per-channel normalised (what the data pipeline does)."""
    mean_t = torch.tensor(mean).view(1, -1, 1, 1)
    std_t = torch.tensor(std).view(1, -1, 1, 1)
    return (images.float() / 255 - mean_t) / std_t


def random_images(count: int, size: int, seed: int = 0, channels: int = 3) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(
        0, 256, (count, channels, size, size), generator=generator, dtype=torch.uint8
    )


def patches(images: torch.Tensor, size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, C*M*M): row-major patches in timm's weight order."""
    batch, channels, height, width = images.shape
    grid = images.reshape(batch, channels, height // size, size, width // size, size)
    return grid.permute(0, 2, 4, 1, 3, 5).reshape(batch, -1, channels * size * size)


CASES = [
    pytest.param(16, 4, {}, False, id="16px-p4-cls"),
    pytest.param(32, 4, {}, True, id="32px-p4-cls-mix"),
    pytest.param(32, 8, {"class_token": False, "global_pool": "avg"}, False, id="32px-p8-avg"),
    pytest.param(16, 8, {"class_token": False, "global_pool": "avg"}, True, id="16px-p8-avg-mix"),
    pytest.param(32, 4, {"reg_tokens": 2}, False, id="32px-p4-registers"),
    pytest.param(32, 4, {"no_embed_class": True}, True, id="32px-p4-no-embed-class-mix"),
]


@pytest.mark.parametrize(("img_size", "patch_size", "options", "channel_mix"), CASES)
def test_transformed_model_on_encrypted_images_equals_plain_model(
    img_size: int, patch_size: int, options: dict, channel_mix: bool
) -> None:
    model = tiny_vit(img_size, patch_size, **options)
    cipher = build_cipher("proposed", img_size, patch_size, seed=7, channel_mix=channel_mix)
    transformed = transform_vit(model, cipher.key)
    images = random_images(4, img_size)
    plain, encrypted = normalise(images), normalise(cipher.encrypt(images))
    with torch.no_grad():
        logits = model(plain)
        features = model.forward_features(plain)
        logits_t = transformed(encrypted)
        features_t = transformed.forward_features(encrypted)
        logits_untransformed = model(encrypted)
    assert_close(logits_t, logits, atol=1e-5, rtol=1e-5)
    # tokens come out in the encrypted order: token i of the transformed run is plain token pi(i)
    prefix = model.num_prefix_tokens
    block_perm = torch.from_numpy(cipher.key["block_perm"].copy())
    assert_close(features_t[:, :prefix], features[:, :prefix], atol=1e-5, rtol=1e-5)
    assert_close(features_t[:, prefix:], features[:, prefix:][:, block_perm], atol=1e-5, rtol=1e-5)
    assert (logits_untransformed - logits).abs().max() > 1e-3  # the transformation did the work


def test_channel_tied_key_commutes_with_per_channel_normalisation() -> None:
    model = tiny_vit(32, 4)
    cipher = build_cipher("proposed", 32, 4, seed=3)
    transformed = transform_vit(model, cipher)
    images = random_images(3, 32)
    with torch.no_grad():
        expected = model(normalise(images, IMAGENET_MEAN, IMAGENET_STD))
        actual = transformed(normalise(cipher.encrypt(images), IMAGENET_MEAN, IMAGENET_STD))
    assert_close(actual, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("img_size", "patch_size", "options", "channel_mix"), CASES)
def test_inverse_restores_weights_exactly(
    img_size: int, patch_size: int, options: dict, channel_mix: bool
) -> None:
    model = tiny_vit(img_size, patch_size, **options)
    key = generate_key("proposed", img_size, patch_size, seed=11, channel_mix=channel_mix)
    transformed = transform_vit(model, key)
    restored = transform_vit(transformed, key, inverse=True)
    original, changed = model.state_dict(), transformed.state_dict()
    for name, tensor in restored.state_dict().items():
        assert torch.equal(tensor, original[name]), name
        assert torch.equal(changed[name], tensor) != (name in TRANSFORMED), name


def test_prefix_rows_and_bias_are_untouched() -> None:
    model = tiny_vit(32, 4, reg_tokens=2)
    transformed = transform_vit(model, generate_key("proposed", 32, 4, seed=5))
    assert torch.equal(transformed.pos_embed[:, :3], model.pos_embed[:, :3])
    assert torch.equal(transformed.patch_embed.proj.bias, model.patch_embed.proj.bias)
    assert torch.equal(
        transformed.pos_embed.sort(dim=1).values, model.pos_embed.sort(dim=1).values
    )  # rows permuted, none lost


def test_copy_by_default_and_inplace_on_request() -> None:
    model = tiny_vit(16, 4)
    before = model.pos_embed.detach().clone()
    key = generate_key("proposed", 16, 4, seed=2)
    copied = transform_vit(model, key)
    assert copied is not model
    assert torch.equal(model.pos_embed, before)
    weight = model.patch_embed.proj.weight
    same = transform_vit(model, key, inplace=True)
    assert same is model and same.patch_embed.proj.weight is weight
    assert torch.equal(model.pos_embed, copied.pos_embed)


@pytest.mark.parametrize("channel_mix", [False, True])
def test_patch_vector_permutation_matches_the_cipher(channel_mix: bool) -> None:
    cipher = build_cipher("proposed", 16, 8, seed=4, channel_mix=channel_mix)
    sigma = torch.from_numpy(patch_vector_permutation(cipher.key, 3))
    images = random_images(2, 16)
    plain, encrypted = patches(images, 8), patches(cipher.encrypt(images), 8)
    block_perm = torch.from_numpy(cipher.key["block_perm"].copy())
    assert torch.equal(encrypted, plain[:, block_perm][:, :, sigma])
    keeps_channel = (torch.arange(sigma.numel()) // 64 == sigma // 64).all()
    assert bool(keeps_channel) != channel_mix


def test_block_permutation_read_off_the_plan_is_k1() -> None:
    key = generate_key("proposed", 32, 4, seed=9)
    block_perm, _ = absorbable_permutations(key, 3)
    assert np.array_equal(block_perm, key["block_perm"])


def test_resized_224_patch16_pipeline_is_exact() -> None:
    """The paper's setting: 32x32 images resized to 224, encrypted with M = 16, ViT/16."""
    torch.manual_seed(0)
    model = VisionTransformer(
        img_size=224, patch_size=16, embed_dim=24, depth=1, num_heads=2, num_classes=10
    ).eval()
    cipher = build_cipher("proposed", 224, 16, seed=1)
    resized = resize_uint8(random_images(2, 32), 224)
    transformed = transform_vit(model, cipher.key)
    with torch.no_grad():
        expected = model(normalise(resized))
        actual = transformed(normalise(cipher.encrypt(resized)))
    assert_close(actual, expected, atol=1e-5, rtol=1e-5)


def _sgd(params: Iterator[nn.Parameter]) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=5e-4)


def _adamw(params: Iterator[nn.Parameter]) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=1e-3, weight_decay=0.05)


@pytest.mark.parametrize(
    ("make_optimizer", "dtype", "tolerance"),
    [
        pytest.param(_sgd, torch.float32, {"atol": 1e-5, "rtol": 1e-5}, id="sgd-momentum-fp32"),
        pytest.param(_sgd, torch.float64, {}, id="sgd-momentum-fp64"),
        # float64 only: the key bias of attention has an exactly zero true gradient (softmax is
        # shift-invariant), and AdamW would turn float32 rounding noise there into full steps
        pytest.param(_adamw, torch.float64, {}, id="adamw-fp64"),
    ],
)
@pytest.mark.parametrize("channel_mix", [False, True], ids=["tied", "mix"])
def test_training_on_encrypted_images_follows_the_plain_trajectory(
    make_optimizer: Callable[[Iterator[nn.Parameter]], torch.optim.Optimizer],
    dtype: torch.dtype,
    tolerance: dict[str, float],
    channel_mix: bool,
) -> None:
    plain_model = tiny_vit(16, 4).train().to(dtype)
    initial = {name: p.detach().clone() for name, p in plain_model.named_parameters()}
    cipher = build_cipher("proposed", 16, 4, seed=21, channel_mix=channel_mix)
    encrypted_model = transform_vit(plain_model, cipher.key)
    optimizers = [
        make_optimizer(plain_model.parameters()),
        make_optimizer(encrypted_model.parameters()),
    ]
    generator = torch.Generator().manual_seed(0)
    for step in range(4):
        images = torch.randint(0, 256, (8, 3, 16, 16), generator=generator, dtype=torch.uint8)
        labels = torch.randint(0, 10, (8,), generator=generator)
        losses = []
        for model, optimizer, batch in zip(
            (plain_model, encrypted_model),
            optimizers,
            (images, cipher.encrypt(images)),
            strict=True,
        ):
            loss = F.cross_entropy(model(normalise(batch).to(dtype)), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
        assert_close(losses[1], losses[0], **tolerance, msg=f"loss differs at step {step}")
    expected = dict(transform_vit(plain_model, cipher.key).named_parameters())
    weight_tolerance = {"atol": 1e-5, "rtol": 1e-4} if tolerance else {}
    for name, param in encrypted_model.named_parameters():
        assert_close(param, expected[name], **weight_tolerance, msg=name)
    assert not torch.equal(plain_model.pos_embed, initial["pos_embed"])  # training moved it


class _NegatingCipher(ProposedCipher):
    """The proposed cipher plus a negative-positive flip of every value (not absorbable)."""

    def build_plan(self, channels: int) -> GatherPlan:
        pixels = super().build_plan(channels).index  # channel-tied key: a pixel-position plan
        values = (np.arange(channels)[:, None] * pixels.size + pixels[None, :]).ravel()
        return GatherPlan(values, np.ones(values.size, bool), spatial=False)


class _PerBlockCipher(ProposedCipher):
    """The proposed cipher with one extra pixel swap in block 0 only (pixel map not shared)."""

    def build_plan(self, channels: int) -> GatherPlan:
        plan = super().build_plan(channels)
        index = plan.index.copy()
        index[[0, 1]] = index[[1, 0]]
        return GatherPlan(index, None, plan.spatial)


@pytest.mark.parametrize(
    ("model_factory", "key_factory", "match"),
    [
        pytest.param(
            lambda: tiny_vit(32, 4),
            lambda: generate_key("proposed", 32, 8, seed=0),
            "not patch-aligned",
            id="patch-size-differs",
        ),
        pytest.param(
            lambda: tiny_vit(32, 4),
            lambda: generate_key("proposed", 16, 4, seed=0),
            "img_size",
            id="image-size-differs",
        ),
        pytest.param(
            lambda: tiny_vit(32, 4, in_chans=1),
            lambda: generate_key("proposed", 32, 4, seed=0, channel_mix=True),
            "3-channel",
            id="channel-mix-key-for-other-channels",
        ),
        pytest.param(
            lambda: VisionTransformer(
                img_size=32, patch_size=4, embed_dim=32, depth=1, num_heads=2, pos_embed="none"
            ),
            lambda: generate_key("proposed", 32, 4, seed=0),
            "pos_embed",
            id="no-pos-embed",
        ),
        pytest.param(
            lambda: VisionTransformer(
                img_size=32, patch_size=4, embed_dim=32, depth=1, num_heads=2, dynamic_img_size=True
            ),
            lambda: generate_key("proposed", 32, 4, seed=0),
            "dynamic_img_size",
            id="dynamic-img-size",
        ),
        pytest.param(
            lambda: Beit(
                img_size=32, patch_size=4, embed_dim=32, depth=1, num_heads=2, use_rel_pos_bias=True
            ),
            lambda: generate_key("proposed", 32, 4, seed=0),
            "relative",
            id="relative-position",
        ),
        pytest.param(
            lambda: nn.Sequential(nn.Conv2d(3, 8, 4, 4)),
            lambda: generate_key("proposed", 32, 4, seed=0),
            "patch_embed",
            id="not-a-vit",
        ),
        pytest.param(
            lambda: tiny_vit(32, 4),
            lambda: generate_key("none", 32, 4),
            "encrypted elsewhere",
            id="pre-encrypted",
        ),
        pytest.param(
            lambda: tiny_vit(32, 4),
            lambda: _NegatingCipher(generate_key("proposed", 32, 4, seed=0)),
            "negative-positive",
            id="np-flip",
        ),
        pytest.param(
            lambda: tiny_vit(32, 4),
            lambda: _PerBlockCipher(generate_key("proposed", 32, 4, seed=0)),
            "same in-block permutation",
            id="per-block-map",
        ),
    ],
)
def test_untransformable_inputs_raise_a_clear_error(model_factory, key_factory, match: str) -> None:
    model, key = model_factory(), key_factory()
    with pytest.raises(ModelTransformError, match=match):
        check_transformable(model, key)
    with pytest.raises(ModelTransformError, match=match):
        transform_vit(model, key)


def test_plain_key_is_the_identity() -> None:
    model = tiny_vit(16, 4)
    transformed = transform_vit(model, generate_key("plain", 16, 4))
    for name, tensor in transformed.state_dict().items():
        assert torch.equal(tensor, model.state_dict()[name]), name


@pytest.mark.parametrize(
    "name",
    sorted(set(list_ciphers()) - set(absorbable_cipher_names()) - {"plain"}),
    ids=lambda name: name,
)
def test_every_other_registered_cipher_is_rejected(name: str) -> None:
    """Baselines (NP flips, per-block keys, nibbles, per-image keys) cannot be absorbed; the
    absorbable ones (proposed here, the linear ones in test_key_transform_linear.py) can."""
    model = tiny_vit(32, 4)
    key = generate_key(name, 32, 4, seed=0)
    with pytest.raises(ModelTransformError, match=repr(name)):
        check_transformable(model, key)
