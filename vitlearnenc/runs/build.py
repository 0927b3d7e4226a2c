"""Objects of a composed config: the DataModule, loggers, callbacks and trainer plugins."""

from __future__ import annotations

import math
import signal
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from lightning import Callback
from lightning.fabric.plugins.environments import ClusterEnvironment, SLURMEnvironment
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


def trainer_plugins(cfg: DictConfig) -> list[Any]:
    """The trainer's plugins: ``cfg.trainer.plugins`` (atomic checkpoint writes) and, inside a
    SLURM job, ``SLURMEnvironment(auto_requeue=True)``.

    Under SLURM, Lightning then handles the requeue signal (SIGUSR1, which the job asks SLURM
    to send before its time limit): it writes ``hpc_ckpt_N.ckpt`` into the run directory and
    runs ``scontrol requeue``; the requeued job resumes from it with ``ckpt_path=auto``. SIGTERM
    (pre-emption, ``scancel``) makes Lightning stop after the current batch. Lightning is the
    one requeue owner: the submitit launcher's own requeue stays off (``max_num_timeout: 0``).
    Outside SLURM (or in an interactive ``srun --job-name=interactive`` shell) nothing is added.
    """
    plugins = [hydra.utils.instantiate(p) for p in cfg.trainer.get("plugins") or []]
    if SLURMEnvironment.detect() and not any(isinstance(p, ClusterEnvironment) for p in plugins):
        plugins.append(SLURMEnvironment(auto_requeue=True, requeue_signal=signal.SIGUSR1))
    return plugins
