"""The classifier factory: every name builds, ViT geometry, adaptation wrapping and loading local
checkpoints (.safetensors, .pth, .npz) with head replacement."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import timm
import torch
from torch import nn
from torch.testing import assert_close

from vitlearnenc.models import (
    VIT_PRESETS,
    AdaptedClassifier,
    CheckpointError,
    CifarResNet,
    UnknownModelError,
    build_classifier,
    count_parameters,
    list_classifiers,
    load_state_dict_file,
)

torch.set_num_threads(1)

SLOW_NAMES = {"pyramidnet110_shakedrop"}


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_NAMES else n for n in list_classifiers()],
)
def test_every_classifier_gives_logits(name: str) -> None:
    model = build_classifier(name, num_classes=7).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 7)
    assert torch.isfinite(logits).all()


def test_list_classifiers() -> None:
    ours = list_classifiers()
    assert {"vit_mini", "vit_micro", "vit_small_cifar", "resnet20_cifar"} <= set(ours)
    assert "vit_base_patch16_224" in list_classifiers(include_timm=True)


def test_parameter_counts() -> None:
    assert 0.75e6 < count_parameters(build_classifier("vit_mini", 10)) < 0.85e6
    assert 2.0e6 < count_parameters(build_classifier("vit_small_cifar", 10)) < 3.0e6
    assert 0.26e6 < count_parameters(build_classifier("resnet20_cifar", 10)) < 0.28e6


@pytest.mark.slow
def test_pyramidnet110_matches_han_et_al_size() -> None:
    model = build_classifier("pyramidnet110_shakedrop", 10)
    assert 28.0e6 < count_parameters(model) < 29.0e6  # Han et al.: 28.3 M
    assert model.units[-1].shake_drop.drop_prob == pytest.approx(0.5)


def test_vit_base_geometry_on_meta_device() -> None:
    with torch.device("meta"):
        model = build_classifier("vit_base_patch16_224", num_classes=10, img_size=224)
    assert model.patch_embed.proj.kernel_size == (16, 16)
    assert model.pos_embed.shape == (1, 197, 768)
    assert model.cls_token is not None and model.global_pool == "token"
    assert model.head.out_features == 10
    assert 85e6 < count_parameters(model) < 87e6


@pytest.mark.parametrize(("patch", "tokens"), [(None, 65), (8, 17)])
def test_presets_are_timm_vits_with_cipher_sized_patches(patch: int | None, tokens: int) -> None:
    model = build_classifier("vit_micro", 10, img_size=32, patch_size=patch)
    assert isinstance(model, timm.models.VisionTransformer)
    assert model.pos_embed.shape == (1, tokens, VIT_PRESETS["vit_micro"]["embed_dim"])
    assert model.cls_token is not None and model.global_pool == "token"


def test_timm_name_with_overrides() -> None:
    model = build_classifier("vit_tiny_patch16_224", 3, img_size=32, patch_size=8, depth=1)
    assert len(model.blocks) == 1 and model.pos_embed.shape == (1, 17, 192)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3)


@pytest.mark.parametrize(("adapt", "name"), [("le", "vit_micro"), ("ele", "resnet20_cifar")])
def test_adaptation_wraps_a_16_channel_backbone(adapt: str, name: str) -> None:
    model = build_classifier(name, 5, img_size=16, adapt=adapt, adapt_block_size=4)
    assert isinstance(model, AdaptedClassifier)
    first_conv = next(m for m in model.backbone.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.in_channels == 16
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 5)
    assert torch.isfinite(model.regularization_loss())


def test_adapt_kwargs_reach_the_adaptation_net() -> None:
    model = build_classifier("vit_micro", 5, adapt="ele", adapt_kwargs=dict(lambda_s=0.5))
    assert model.adaptation.lambda_s == 0.5


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(name="not_a_model"), UnknownModelError, "resnet20_cifar"),
        (dict(name="resnet20_cifar", patch_size=4), ValueError, "ViTs only"),
        (dict(name="vit_mini", pretrained=True), ValueError, "no published weights"),
        (dict(name="pyramidnet_shakedrop_mini", pretrained=True), ValueError, "no published"),
        (dict(name="vit_mini", pretrained=True, checkpoint="x.pth"), ValueError, "not both"),
        (dict(name="vit_mini", checkpoint="/nonexistent/w.pth"), FileNotFoundError, "w.pth"),
        (dict(name="resnet20_cifar", checkpoint="/nonexistent/w.pth"), FileNotFoundError, "w.pth"),
    ],
)
def test_bad_requests_fail_clearly(kwargs: dict, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        build_classifier(num_classes=10, **kwargs)


def test_unsupported_checkpoint_suffix(tmp_path: Path) -> None:
    path = tmp_path / "w.ckpt"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="load_from_checkpoint"):
        build_classifier("vit_micro", 10, checkpoint=path)


# --------------------------------------------------------------------------- checkpoints


def _non_head(model: nn.Module, head: str) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if not k.startswith(head + ".")}


@pytest.fixture
def source_vit() -> nn.Module:
    torch.manual_seed(0)
    return build_classifier("vit_micro", num_classes=7).eval()


@pytest.mark.parametrize("fmt", ["safetensors", "pth", "pth-wrapped"])
def test_vit_checkpoint_with_another_head(tmp_path: Path, source_vit: nn.Module, fmt: str) -> None:
    state = source_vit.state_dict()
    path = tmp_path / f"vit.{fmt.split('-')[0]}"
    if fmt == "safetensors":
        safetensors.torch.save_file(state, path)
    elif fmt == "pth":
        torch.save(state, path)
    else:  # DDP-style prefix inside a {"state_dict": ...} file
        torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    model = build_classifier("vit_micro", num_classes=10, checkpoint=path)
    assert model.head.out_features == 10
    for key, value in _non_head(source_vit, "head").items():
        assert_close(model.state_dict()[key], value, msg=key)
    same = build_classifier("vit_micro", num_classes=7, checkpoint=path).eval()
    x = torch.randn(2, 3, 32, 32)
    assert_close(same(x), source_vit(x))  # same head size: the head is kept


def test_vit_checkpoint_resamples_position_embedding(tmp_path: Path, source_vit: nn.Module) -> None:
    path = tmp_path / "vit.safetensors"
    safetensors.torch.save_file(source_vit.state_dict(), path)
    model = build_classifier("vit_micro", num_classes=7, img_size=64, checkpoint=path)
    assert model.pos_embed.shape == (1, 257, 32)
    assert_close(model.cls_token, source_vit.cls_token)


def test_vit_checkpoint_of_another_depth_is_an_error(tmp_path: Path, source_vit: nn.Module) -> None:
    path = tmp_path / "vit.pth"
    torch.save(source_vit.state_dict(), path)
    # timm alone would load this non-strictly (the head differs) and leave block 2 random
    with pytest.raises(CheckpointError, match="blocks.2"):
        build_classifier("vit_micro", num_classes=10, checkpoint=path, depth=3)


def _to_augreg_npz(model: timm.models.VisionTransformer, path: Path) -> None:
    """Write a timm ViT in the JAX AugReg .npz layout (the inverse of timm's _load_weights)."""
    d = model.embed_dim
    heads = model.blocks[0].attn.num_heads
    arrays = {
        "embedding/kernel": model.patch_embed.proj.weight.permute(2, 3, 1, 0),
        "embedding/bias": model.patch_embed.proj.bias,
        "cls": model.cls_token,
        "Transformer/posembed_input/pos_embedding": model.pos_embed,
        "Transformer/encoder_norm/scale": model.norm.weight,
        "Transformer/encoder_norm/bias": model.norm.bias,
        "head/kernel": model.head.weight.T,
        "head/bias": model.head.bias,
    }
    for i, block in enumerate(model.blocks):
        p = f"Transformer/encoderblock_{i}/"
        qkv_w = block.attn.qkv.weight.reshape(3, d, d)
        qkv_b = block.attn.qkv.bias.reshape(3, heads, d // heads)
        for j, name in enumerate(("query", "key", "value")):
            arrays[f"{p}MultiHeadDotProductAttention_1/{name}/kernel"] = qkv_w[j].T.reshape(
                d, heads, d // heads
            )
            arrays[f"{p}MultiHeadDotProductAttention_1/{name}/bias"] = qkv_b[j]
        out_w = block.attn.proj.weight.reshape(d, heads, d // heads).permute(1, 2, 0)
        arrays[f"{p}MultiHeadDotProductAttention_1/out/kernel"] = out_w
        arrays[f"{p}MultiHeadDotProductAttention_1/out/bias"] = block.attn.proj.bias
        for ln, norm in (("LayerNorm_0", block.norm1), ("LayerNorm_2", block.norm2)):
            arrays[f"{p}{ln}/scale"] = norm.weight
            arrays[f"{p}{ln}/bias"] = norm.bias
        for r, fc in enumerate((block.mlp.fc1, block.mlp.fc2)):
            arrays[f"{p}MlpBlock_3/Dense_{r}/kernel"] = fc.weight.T
            arrays[f"{p}MlpBlock_3/Dense_{r}/bias"] = fc.bias
    np.savez(path, **{k: v.detach().numpy() for k, v in arrays.items()})


def test_vit_npz_checkpoint(tmp_path: Path, source_vit: nn.Module) -> None:
    path = tmp_path / "augreg.npz"
    _to_augreg_npz(source_vit, path)
    x = torch.randn(2, 3, 32, 32)
    same = build_classifier("vit_micro", num_classes=7, checkpoint=path).eval()
    assert_close(same(x), source_vit(x), rtol=1e-5, atol=1e-5)
    other = build_classifier("vit_micro", num_classes=10, checkpoint=path)
    assert other.head.out_features == 10
    for key, value in _non_head(source_vit, "head").items():
        assert_close(other.state_dict()[key], value, msg=key)


def test_cnn_checkpoint_with_another_head(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = build_classifier("resnet20_cifar", num_classes=10)
    path = tmp_path / "r20.safetensors"
    safetensors.torch.save_file(source.state_dict(), path)
    model = build_classifier("resnet20_cifar", num_classes=100, checkpoint=path)
    assert model.fc.out_features == 100
    for key, value in _non_head(source, "fc").items():
        assert_close(model.state_dict()[key], value, msg=key)


def test_cnn_checkpoint_of_another_architecture_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "pyr.pth"
    torch.save(build_classifier("pyramidnet_shakedrop_mini", 10).state_dict(), path)
    with pytest.raises(CheckpointError, match="shape mismatch"):
        build_classifier("pyramidnet_shakedrop_mini", 10, checkpoint=path, alpha=24)
    resnet20 = tmp_path / "r20.pth"
    torch.save(build_classifier("resnet20_cifar", 10).state_dict(), resnet20)
    with pytest.raises(CheckpointError, match="missing"):
        load_state_dict_file(CifarResNet(depth=32), resnet20)
    with pytest.raises(ValueError, match="JAX ViT format"):
        npz = tmp_path / "w.npz"
        npz.write_bytes(b"")
        load_state_dict_file(nn.Linear(2, 2), npz)
