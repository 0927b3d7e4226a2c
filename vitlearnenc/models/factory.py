"""Model factories: classifiers and attack networks by name, from plain arguments.

:func:`build_classifier` knows three kinds of names:

* any timm model name that takes ``img_size`` (the ViT family), built with
  ``timm.create_model``. The paper's backbone is ViT-B/16 pretrained on ImageNet-21k:
  ``vit_base_patch16_224.augreg_in21k`` (the untagged name loads timm's default tag,
  ``augreg2_in21k_ft_in1k``, fine-tuned on ImageNet-1k);
* small ViT presets for 32x32 CPU runs (:data:`VIT_PRESETS`), which are timm
  ``VisionTransformer``s (class token, absolute position embedding, as the key-based model
  transformation needs) with patch size 4 unless ``patch_size`` is given;
* CIFAR CNNs: ``resnet18_cifar``, ``resnet20_cifar``, ``pyramidnet110_shakedrop``,
  ``pyramidnet_shakedrop_mini``.

Weights: ``pretrained=True`` downloads timm's weights (network needed); ``checkpoint=PATH`` loads a
local ``.npz`` (JAX/big_vision ViT), ``.safetensors``, ``.pth`` or ``.bin`` file. A checkpoint
whose head has another number of classes loads everything except the head (freshly
initialised); any other missing or mismatched weight is an error.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any

import timm
from torch import nn

from vitlearnenc.errors import InputError, VitlearnencError
from vitlearnenc.models.adaptation import AdaptedClassifier, build_adaptation
from vitlearnenc.models.gan import (
    DCGANDiscriminator,
    SAGANDiscriminator,
    SIAGANGenerator,
    lab_generator,
)
from vitlearnenc.models.pyramidnet import PyramidNet
from vitlearnenc.models.resnet_cifar import resnet18_cifar, resnet20_cifar
from vitlearnenc.models.unet import BlockwiseInverseNet, UNet

logger = logging.getLogger(__name__)

#: timm architecture the ViT presets are built from (its defaults are overridden)
VIT_PRESET_BASE = "vit_tiny_patch16_224"
#: patch size of the presets when ``patch_size`` is not given (= cipher block size at 32x32)
VIT_PRESET_PATCH = 4
#: small ViTs for 32x32 inputs; parameter counts at patch 4, 10 classes
VIT_PRESETS: dict[str, dict[str, Any]] = {
    "vit_micro": dict(embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0),  # ~28 k, tests
    "vit_mini": dict(embed_dim=128, depth=6, num_heads=4, mlp_ratio=2.0),  # ~0.81 M
    "vit_small_cifar": dict(embed_dim=192, depth=8, num_heads=3, mlp_ratio=2.0),  # ~2.4 M
}

_CNN_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "resnet18_cifar": resnet18_cifar,
    "resnet20_cifar": resnet20_cifar,
    "pyramidnet110_shakedrop": partial(PyramidNet, depth=110, alpha=270),
    "pyramidnet_shakedrop_mini": partial(PyramidNet, depth=26, alpha=48),
}
#: CNNs with downloadable (timm) weights
_PRETRAINED_CNNS = frozenset({"resnet18_cifar"})
#: classifier module of every CNN above (timm ResNet, CifarResNet, PyramidNet)
_CNN_HEAD = "fc"
_CHECKPOINT_SUFFIXES = (".npz", ".safetensors", ".pth", ".pt", ".bin")

_ATTACK_NETS: dict[str, Callable[..., nn.Module]] = {
    "unet": UNet,
    "blockwise_inverse": BlockwiseInverseNet,
    "siagan_generator": SIAGANGenerator,
    "lab_generator": lab_generator,
    "sagan_discriminator": SAGANDiscriminator,
    "dcgan_discriminator": DCGANDiscriminator,
}


class UnknownModelError(VitlearnencError, ValueError):
    """A model name that is neither one of ours nor a timm model."""


class CheckpointError(VitlearnencError, RuntimeError):
    """A checkpoint file that does not fit the requested model."""


def list_classifiers(include_timm: bool = False) -> list[str]:
    """Names :func:`build_classifier` knows; ``include_timm`` adds timm's ``vit_*`` names."""
    names = sorted([*VIT_PRESETS, *_CNN_BUILDERS])
    return names + timm.list_models("vit_*") if include_timm else names


def list_attack_nets() -> list[str]:
    """Names :func:`build_attack_net` knows."""
    return sorted(_ATTACK_NETS)


def build_attack_net(name: str, **kwargs: Any) -> nn.Module:
    """An attack network (inverse net, GAN generator or discriminator) by name.

    ``unet``, ``blockwise_inverse``, ``siagan_generator``, ``lab_generator``,
    ``sagan_discriminator``, ``dcgan_discriminator``; ``kwargs`` go to the constructor.
    """
    try:
        builder = _ATTACK_NETS[name]
    except KeyError:
        raise UnknownModelError(
            f"unknown attack network {name!r}; choose one of: {', '.join(list_attack_nets())}"
        ) from None
    return builder(**kwargs)


def build_classifier(
    name: str,
    num_classes: int,
    img_size: int | tuple[int, int] = 32,
    in_chans: int = 3,
    patch_size: int | None = None,
    pretrained: bool = False,
    checkpoint: str | os.PathLike[str] | None = None,
    adapt: str | None = None,
    adapt_block_size: int = 4,
    adapt_kwargs: dict[str, Any] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a classifier ``(B, in_chans, img_size, img_size)`` float -> ``(B, num_classes)`` logits.

    Args:
        name: a timm model name, a :data:`VIT_PRESETS` name or a CIFAR CNN name
            (see :func:`list_classifiers`).
        num_classes: number of output logits.
        img_size: input side, or (H, W) for a non-square input (grayscale EtC's H x 3W); ViTs
            size their position embedding for it (CNNs pool globally).
        in_chans: input channels of the whole model.
        patch_size: ViT patch size (= cipher block size); ViTs only.
        pretrained: load timm's published weights (downloads; timm ViTs and resnet18_cifar).
        checkpoint: local weight file for the backbone (.npz, .safetensors, .pth, .bin).
        adapt: ``"le"`` or ``"ele"`` puts that adaptation network in front of the backbone, which
            is then built with the adaptation's 16 output channels; returns an
            :class:`AdaptedClassifier`.
        adapt_block_size: block size of the adaptation network (the cipher's block size).
        adapt_kwargs: extra adaptation-network arguments (e.g. ``lambda_s``).
        **kwargs: passed to the backbone constructor (e.g. ``drop_path_rate``, ``depth``,
            ``alpha``); they override preset values.
    """
    if pretrained and checkpoint is not None:
        raise InputError(
            "pass either pretrained=True (timm's weights) or checkpoint=PATH, not both"
        )
    adaptation = None
    backbone_chans = in_chans
    if adapt is not None:
        adaptation = build_adaptation(
            adapt, adapt_block_size, img_size, in_chans, **(adapt_kwargs or {})
        )
        backbone_chans = adaptation.out_chans
    if name in _CNN_BUILDERS:
        backbone = _build_cnn(
            name, num_classes, backbone_chans, patch_size, pretrained, checkpoint, kwargs
        )
    else:
        backbone = _build_timm(
            name, num_classes, img_size, backbone_chans, patch_size, pretrained, checkpoint, kwargs
        )
    return AdaptedClassifier(adaptation, backbone) if adaptation is not None else backbone


def _build_cnn(
    name: str,
    num_classes: int,
    in_chans: int,
    patch_size: int | None,
    pretrained: bool,
    checkpoint: str | os.PathLike[str] | None,
    kwargs: dict[str, Any],
) -> nn.Module:
    if patch_size is not None:
        raise InputError(f"patch_size applies to ViTs only; {name!r} is a CNN")
    if pretrained:
        if name not in _PRETRAINED_CNNS:
            raise InputError(
                f"{name!r} has no published weights; train it, or pass checkpoint=PATH"
            )
        kwargs = {**kwargs, "pretrained": True}
    model = _CNN_BUILDERS[name](num_classes=num_classes, in_chans=in_chans, **kwargs)
    if checkpoint is not None:
        load_state_dict_file(model, checkpoint, head=_CNN_HEAD)
    return model


def _build_timm(
    name: str,
    num_classes: int,
    img_size: int | tuple[int, int],
    in_chans: int,
    patch_size: int | None,
    pretrained: bool,
    checkpoint: str | os.PathLike[str] | None,
    kwargs: dict[str, Any],
) -> nn.Module:
    if name in VIT_PRESETS:
        if pretrained:
            raise InputError(
                f"{name!r} is a project preset with no published weights; train it, or pass "
                "checkpoint=PATH"
            )
        timm_name = VIT_PRESET_BASE
        model_kwargs = {**VIT_PRESETS[name], "patch_size": patch_size or VIT_PRESET_PATCH}
    elif timm.models.is_model(name):
        timm_name = name
        model_kwargs = {} if patch_size is None else {"patch_size": patch_size}
    else:
        raise UnknownModelError(
            f"unknown classifier {name!r}; choose one of {', '.join(list_classifiers())} or a timm "
            "ViT name (see list_classifiers(include_timm=True))"
        )
    model_kwargs.update(kwargs, num_classes=num_classes, img_size=img_size, in_chans=in_chans)
    if checkpoint is None:
        return timm.create_model(timm_name, pretrained=pretrained, **model_kwargs)
    return _create_timm_from_file(timm_name, _checkpoint_path(checkpoint), model_kwargs)


def _create_timm_from_file(timm_name: str, path: Path, model_kwargs: dict[str, Any]) -> nn.Module:
    """``timm.create_model`` with ``pretrained_cfg_overlay=dict(file=path)``.

    timm then resamples the position/patch embedding to the requested size and adapts the input
    conv to ``in_chans``. It drops the head only when the overlay's ``num_classes`` differs from the
    requested one, so the overlay carries the file's head size; and since dropping the head makes
    timm load non-strictly (missing weights only logged), completeness is checked here.
    """
    if path.suffix == ".npz":  # JAX/big_vision layout: timm's ViT.load_pretrained (skips a
        # head of another size, raises on any other missing array)
        overlay = dict(file=str(path), custom_load=True)
        return timm.create_model(
            timm_name, pretrained=True, pretrained_cfg_overlay=overlay, **model_kwargs
        )
    state = timm.models.load_state_dict(str(path))
    head = timm.models.get_pretrained_cfg_value(timm_name, "classifier") or "head"
    heads = (head,) if isinstance(head, str) else tuple(head)
    file_classes = next((state[f"{h}.weight"].shape[0] for h in heads if f"{h}.weight" in state), 0)
    keys = list(state)
    del state  # timm reads the file again; don't hold two copies
    overlay = dict(file=str(path), num_classes=file_classes, custom_load=False)
    model = timm.create_model(
        timm_name, pretrained=True, pretrained_cfg_overlay=overlay, **model_kwargs
    )
    _check_complete(model, keys, heads, path)
    if file_classes != model_kwargs["num_classes"]:
        logger.info(
            "checkpoint %s has a %d-class head; the %d-class head is freshly initialised",
            path,
            file_classes,
            model_kwargs["num_classes"],
        )
    return model


def _check_complete(
    model: nn.Module, keys: Iterable[str], heads: tuple[str, ...], path: Path
) -> None:
    """Raise unless every non-head weight of ``model`` is in the checkpoint (native timm layout
    only: a foreign layout that timm converts, e.g. OpenCLIP, shares no key and is trusted)."""
    provided = set(keys)
    expected = {k for k in model.state_dict() if not _is_head(k, heads)}
    if not expected & provided:
        return
    missing = sorted(expected - provided)
    if missing:
        raise CheckpointError(
            f"{path} lacks {len(missing)} weights of this model (e.g. {', '.join(missing[:4])}); "
            "it was saved from another architecture: check depth/embed_dim/patch_size"
        )


def _is_head(key: str, heads: tuple[str, ...]) -> bool:
    return any(key == h or key.startswith(h + ".") for h in heads)


def _checkpoint_path(checkpoint: str | os.PathLike[str]) -> Path:
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint file not found: {path}; pass the path of a "
            f"{'/'.join(_CHECKPOINT_SUFFIXES)} weight file"
        )
    if path.suffix not in _CHECKPOINT_SUFFIXES:
        raise InputError(
            f"unsupported checkpoint format {path.suffix!r} ({path}); use one of "
            f"{', '.join(_CHECKPOINT_SUFFIXES)} (Lightning .ckpt files: use the task's "
            "load_from_checkpoint)"
        )
    return path


def load_state_dict_file(
    model: nn.Module, checkpoint: str | os.PathLike[str], head: str = _CNN_HEAD
) -> None:
    """Load a ``.safetensors``/``.pth``/``.bin`` state dict into ``model`` strictly, except that a
    ``head`` of another shape is left freshly initialised.

    Files saved as ``{"state_dict": ...}``/``{"model": ...}`` and ``module.``/``_orig_mod.``
    prefixes are accepted (timm's ``load_state_dict``).
    """
    path = _checkpoint_path(checkpoint)
    if path.suffix == ".npz":
        raise InputError(
            f"{path}: .npz is the JAX ViT format; save CNN weights as .pth or .safetensors"
        )
    state = timm.models.load_state_dict(str(path))
    own = model.state_dict()
    skipped = [
        k for k in own if _is_head(k, (head,)) and k in state and state[k].shape != own[k].shape
    ]
    for key in skipped:
        del state[key]
    wrong = [k for k in state if k in own and state[k].shape != own[k].shape]
    if wrong:
        raise CheckpointError(
            f"{path} does not fit this model: shape mismatch for {', '.join(wrong[:4])}"
            f"{' ...' if len(wrong) > 4 else ''} (other depth, width or in_chans?)"
        )
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if k not in skipped]
    if missing or result.unexpected_keys:
        raise CheckpointError(
            f"{path} does not fit this model: missing {missing[:4]}, unexpected "
            f"{result.unexpected_keys[:4]} (saved from another architecture?)"
        )
    if skipped:
        logger.info("checkpoint %s: head of another size left freshly initialised", path)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
