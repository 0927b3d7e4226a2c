"""Evaluate a trained checkpoint from a composed ``eval`` config: test (or validate) it on the
configured data encrypted with the configured cipher and key; ``metrics.json`` in the run
directory. ``vitlearnenc-eval`` (:mod:`vitlearnenc.cli.evaluate`) only composes and calls it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
import lightning as L
from omegaconf import DictConfig

from vitlearnenc.errors import InputError
from vitlearnenc.runs.build import build_datamodule, instantiate_loggers
from vitlearnenc.runs.config import validate_config
from vitlearnenc.utils.files import write_json_atomic
from vitlearnenc.utils.logging import RankedLogger

log = RankedLogger(__name__)


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Test (or validate) ``cfg.ckpt_path`` on ``cfg.data`` encrypted with ``cfg.cipher``."""
    from vitlearnenc.tasks.classifier import ClassifierModule

    validate_config(cfg)
    if cfg.split not in ("test", "val"):
        raise InputError(f"split must be test or val, got {cfg.split!r}")
    run_dir = Path(cfg.paths.output_dir)
    L.seed_everything(cfg.seed, workers=True)
    task = ClassifierModule.load_from_checkpoint(cfg.ckpt_path, map_location="cpu")
    datamodule = build_datamodule(cfg, run_dir)
    trainer: L.Trainer = hydra.utils.instantiate(
        cfg.trainer, logger=instantiate_loggers(cfg.get("logger"))
    )
    run = trainer.test if cfg.split == "test" else trainer.validate
    results = run(task, datamodule=datamodule)
    metrics = {k: float(v) for k, v in (results[0] if results else {}).items()}
    if trainer.is_global_zero:
        write_json_atomic(
            {
                "metrics": metrics,
                "checkpoint": str(cfg.ckpt_path),
                "cipher": cfg.cipher.name,
                "key_source": cfg.key.source,
                "data": cfg.data.name,
                "split": cfg.split,
            },
            run_dir / "metrics.json",
        )
        log.info(f"{cfg.split} metrics: {metrics} -> {run_dir / 'metrics.json'}")
    return metrics
