"""Checks and derived settings of a composed train/eval/attack config."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from vitlearnenc.ciphers import get_cipher_class, probe_cipher
from vitlearnenc.ciphers.base import check_block_grid, parse_image_size
from vitlearnenc.runs.errors import ConfigError

#: config keys that were renamed or merged into another (old -> new): an override or a config
#: file that still sets the old one fails with one line naming the new one, instead of Hydra's
#: "not in struct" message or, in a config file, a key that nothing reads
RENAMED_KEYS: dict[str, str] = {
    "img_size": "image_size",
    # the LE/ELE adaptation network works on the cipher's blocks: one knob, not two
    "model.adapt_block_size": "cipher.block_size",
}
_ABSENT = object()


def check_renamed_overrides(overrides: Sequence[str]) -> None:
    """ConfigError for the first command-line override (``key=value``, ``+key=``, ``++key=``,
    ``~key``) that names a key of :data:`RENAMED_KEYS`."""
    for text in overrides:
        if text.startswith("-"):
            continue
        key, _, value = text.partition("=")
        key = key.lstrip("+~")
        if key in RENAMED_KEYS:
            new = RENAMED_KEYS[key]
            raise ConfigError(f"{key} is now {new}: say {new}={value or '...'}")


def check_renamed_keys(cfg: DictConfig) -> None:
    """ConfigError when a composed config (an experiment or local file) still sets a key of
    :data:`RENAMED_KEYS`."""
    for old, new in RENAMED_KEYS.items():
        value = OmegaConf.select(cfg, old, default=_ABSENT)
        if value is not _ABSENT:
            raise ConfigError(f"the config sets {old}, which is now {new}: say {new}: {value}")


def plain_dict(node: Any, what: str) -> dict[str, Any]:
    """``node`` (a config group or mapping) as a resolved plain dict; ConfigError otherwise."""
    container = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
    if not isinstance(container, dict):
        raise ConfigError(f"{what} must be a mapping, got {type(container).__name__}")
    return {str(k): v for k, v in container.items()}


#: colour channels of the plain images every DataModule delivers (RGB)
PLAIN_CHANNELS = 3


def model_input_shape(cfg: DictConfig) -> tuple[int, int, int]:
    """(C, H, W) that the model receives: the cipher's output for RGB images of
    ``cfg.image_size``. Equal to the input for all but layout-changing ciphers (grayscale EtC
    lays R, G and B side by side: ``(1, H, 3W)``)."""
    options = plain_dict(cfg.cipher.options, "cipher.options")
    size = parse_image_size(cfg.image_size)
    cipher = probe_cipher(cfg.cipher.name, size, int(cfg.cipher.block_size), **options)
    return cipher.output_shape(PLAIN_CHANNELS)


def network_config(cfg: DictConfig) -> dict[str, Any]:
    """Keyword arguments of ``build_classifier`` from ``cfg.model``, ``cfg.image_size`` and
    the cipher's output shape: a cipher that changes the layout (grayscale EtC) gets a model
    with its channels (``in_chans``) and its non-square size (``img_size=(H, W)``; timm's
    ViTs size their patch grid and position embedding for it, the CNNs pool globally)."""
    model = plain_dict(cfg.model, "model")
    channels, height, width = model_input_shape(cfg)
    size = parse_image_size(cfg.image_size)
    net = {
        "name": model["name"],
        "img_size": cfg.image_size if (height, width) == size else (height, width),
        "pretrained": bool(model.get("pretrained", False)),
        "checkpoint": model.get("checkpoint"),
        "adapt": model.get("adapt"),
        **(model.get("kwargs") or {}),
    }
    if channels != PLAIN_CHANNELS:
        net["in_chans"] = channels
    if model.get("patch_size") is not None:
        net["patch_size"] = model["patch_size"]
    if model.get("adapt") is not None:
        net["adapt_block_size"] = cfg.cipher.block_size
    return net


def vit_layout(cfg: DictConfig, with_adapt: bool = False) -> Any:
    """The configured model's ViT embedding layout
    (:class:`~vitlearnenc.models.key_transform.VitEmbeddingLayout`), or the
    :class:`~vitlearnenc.models.key_transform.ModelTransformError` that says why it has none.

    The model is built on the ``meta`` device (no weights, no memory, no download) and judged
    by :func:`~vitlearnenc.models.key_transform.inspect_vit`, so a ``deit_*`` or any other
    patch-embedding ViT counts, whatever its name. ``with_adapt=False`` judges the backbone
    behind an LE/ELE adaptation network.
    """
    from vitlearnenc.models import build_classifier
    from vitlearnenc.models.key_transform import ModelTransformError, inspect_vit

    net = {**network_config(cfg), "pretrained": False, "checkpoint": None}
    if not with_adapt:
        net.pop("adapt_block_size", None)
        net["adapt"] = None
    with torch.device("meta"):
        model = build_classifier(num_classes=2, **net)
    try:
        return inspect_vit(model)
    except ModelTransformError as error:
        return error


def validate_config(cfg: DictConfig) -> None:
    """Fail fast, before data is loaded, on combinations that cannot work.

    Checks that no renamed key is set (:data:`RENAMED_KEYS`), the cipher name, that its block size divides the model's input size, that a
    block-scrambling cipher on a ViT uses block size = patch size (an error for ciphers that
    ``requires_patch_alignment``, a warning otherwise), and that ``model.key_adapt`` is asked
    for only with a ViT and a cipher that is ``absorbable_by_vit``.
    """
    from vitlearnenc.models.key_transform import VitEmbeddingLayout, absorbable_cipher_names

    check_renamed_keys(cfg)
    cipher_cls = get_cipher_class(cfg.cipher.name)  # clear error listing the known names
    image_size = parse_image_size(cfg.image_size)
    block = int(cfg.cipher.block_size)
    try:
        check_block_grid(image_size, block)
    except ValueError as error:
        raise ConfigError(
            f"cipher.block_size={block} does not fit image_size={cfg.image_size}: {error}"
        ) from None
    model = cfg.get("model") or {}
    if not model or not cipher_cls.keyed:
        if model.get("key_adapt"):
            raise ConfigError(
                f"model.key_adapt=true needs a keyed cipher (got cipher={cfg.cipher.name})"
            )
        return
    cipher = probe_cipher(cfg.cipher.name, image_size, block, **cfg.cipher.options)
    layout = vit_layout(cfg)
    if isinstance(layout, VitEmbeddingLayout):
        patch = int(model.get("patch_size") or layout.patch_size)
        if image_size[0] % patch or image_size[1] % patch:
            raise ConfigError(
                f"image_size={cfg.image_size} is not a multiple of model.patch_size={patch}"
            )
        if not cipher.is_patch_aligned(patch):
            message = (
                f"cipher {cfg.cipher.name} with block size {block} is not aligned with the ViT's "
                f"patch size {patch}: set cipher.block_size={patch} (or model.patch_size={block})"
            )
            if cipher.requires_patch_alignment:
                raise ConfigError(message)
            warnings.warn(message, stacklevel=2)
    if model.get("key_adapt"):
        full = vit_layout(cfg, with_adapt=True)
        if not isinstance(full, VitEmbeddingLayout):
            raise ConfigError(
                f"model.key_adapt=true needs a ViT model (its weights absorb the key): {full}"
            )
        if full.patch_size != block:
            raise ConfigError(
                f"model.key_adapt=true needs cipher.block_size equal to the ViT's patch size: "
                f"set cipher.block_size={full.patch_size}"
            )
        if not cipher.absorbable_by_vit:
            raise ConfigError(
                f"model.key_adapt=true needs cipher={' or cipher='.join(absorbable_cipher_names())} (got "
                f"{cfg.cipher.name}): only a cipher that is absorbable_by_vit (block scrambling + "
                "one in-block linear map shared by all blocks) can be absorbed into a ViT's weights"
            )


def check_slurm_layout(cfg: DictConfig, environ: dict[str, str] | None = None) -> None:
    """Under SLURM, one task per device: ``tasks_per_node`` must equal ``trainer.devices``
    and the job's node count ``trainer.num_nodes``, or Lightning's DDP would hang or
    oversubscribe GPUs."""
    env = os.environ if environ is None else environ
    tasks = env.get("SLURM_NTASKS_PER_NODE")
    nodes = env.get("SLURM_JOB_NUM_NODES") or env.get("SLURM_NNODES")
    devices = cfg.trainer.get("devices", 1)
    if tasks is not None and isinstance(devices, int) and int(tasks) != devices:
        raise ConfigError(
            f"SLURM runs {tasks} task(s) per node but trainer.devices={devices}; set "
            f"hydra.launcher.tasks_per_node={devices} (the slurm launcher config does)"
        )
    if nodes is not None and int(nodes) != int(cfg.trainer.get("num_nodes", 1)):
        raise ConfigError(
            f"SLURM allocated {nodes} node(s) but trainer.num_nodes={cfg.trainer.get('num_nodes', 1)}"
        )
