"""Objects of a composed config: the DataModule, loggers and callbacks."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from lightning import Callback
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf

from vitlearnenc.runs.config import model_input_shape
from vitlearnenc.runs.keys import resolve_key_source


def build_datamodule(cfg: DictConfig, run_dir: Path) -> L.LightningDataModule:
    """The DataModule of ``cfg.data`` with the cipher of ``cfg.cipher`` and the key source;
    for a cipher that merges the colour planes into one channel, with the normalisation of
    that channel (:func:`pooled_statistics`)."""
    return hydra.utils.instantiate(
        cfg.data,
        image_size=cfg.image_size,
        cipher=cfg.cipher.name,
        block_size=cfg.cipher.block_size,
        cipher_options=OmegaConf.to_container(cfg.cipher.options, resolve=True),
        **_normalisation(cfg),
        **resolve_key_source(cfg, run_dir),
    )


def pooled_statistics(mean: list[float], std: list[float]) -> tuple[tuple[float], tuple[float]]:
    """Mean and std of the values of all channels taken together (equal-sized channels), as
    grayscale EtC's one channel holds R, G and B side by side: the mean of the means, and the
    variance = mean of (std^2 + mean^2) - mean^2 (exact, not an approximation)."""
    pooled = sum(mean) / len(mean)
    second = sum(s * s + m * m for m, s in zip(mean, std, strict=True)) / len(mean)
    return (pooled,), (math.sqrt(max(second - pooled * pooled, 0.0)),)


def _normalisation(cfg: DictConfig) -> dict[str, Any]:
    """``mean``/``std`` overrides for a one-channel cipher output of RGB data; none otherwise
    (a config that already gives one value per output channel is kept)."""
    channels = model_input_shape(cfg)[0]
    mean, std = list(cfg.data.get("mean") or []), list(cfg.data.get("std") or [])
    if channels != 1 or len(mean) <= 1 or len(mean) != len(std):
        return {}
    pooled_mean, pooled_std = pooled_statistics(mean, std)
    return {"mean": pooled_mean, "std": pooled_std}


def instantiate_callbacks(cfg: DictConfig | None) -> list[Callback]:
    """Instantiate every callback config that has a ``_target_``."""
    return [hydra.utils.instantiate(c) for c in (cfg or {}).values() if c and "_target_" in c]


def instantiate_loggers(cfg: DictConfig | None) -> list[Logger]:
    """Instantiate every logger config that has a ``_target_``."""
    return [hydra.utils.instantiate(c) for c in (cfg or {}).values() if c and "_target_" in c]
