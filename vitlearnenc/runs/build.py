"""Objects of a composed config: the DataModule, loggers and callbacks."""

from __future__ import annotations

from pathlib import Path

import hydra
import lightning as L
from lightning import Callback
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf

from vitlearnenc.runs.keys import resolve_key_source


def build_datamodule(cfg: DictConfig, run_dir: Path) -> L.LightningDataModule:
    """The DataModule of ``cfg.data`` with the cipher of ``cfg.cipher`` and the key source."""
    return hydra.utils.instantiate(
        cfg.data,
        image_size=cfg.image_size,
        cipher=cfg.cipher.name,
        block_size=cfg.cipher.block_size,
        cipher_options=OmegaConf.to_container(cfg.cipher.options, resolve=True),
        **resolve_key_source(cfg, run_dir),
    )


def instantiate_callbacks(cfg: DictConfig | None) -> list[Callback]:
    """Instantiate every callback config that has a ``_target_``."""
    return [hydra.utils.instantiate(c) for c in (cfg or {}).values() if c and "_target_" in c]


def instantiate_loggers(cfg: DictConfig | None) -> list[Logger]:
    """Instantiate every logger config that has a ``_target_``."""
    return [hydra.utils.instantiate(c) for c in (cfg or {}).values() if c and "_target_" in c]
