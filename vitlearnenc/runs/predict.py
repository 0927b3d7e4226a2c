"""Label a folder of (pre-)encrypted images from a composed ``predict`` config and write
``predictions.csv`` atomically. ``vitlearnenc-predict`` (:mod:`vitlearnenc.cli.predict`) only
composes and calls it."""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path

import hydra
import lightning as L
import torch
from omegaconf import DictConfig

from vitlearnenc.runs.config import validate_config
from vitlearnenc.runs.keys import resolve_key_source
from vitlearnenc.utils.logging import RankedLogger

log = RankedLogger(__name__)


def predict(cfg: DictConfig) -> Path:
    """Predict labels for every image under ``cfg.input_dir``; returns the CSV path."""
    from vitlearnenc.data import PredictFolderDataModule
    from vitlearnenc.tasks.classifier import ClassifierModule

    validate_config(cfg)
    run_dir = Path(cfg.paths.output_dir)
    task = ClassifierModule.load_from_checkpoint(cfg.ckpt_path, map_location="cpu")
    datamodule = PredictFolderDataModule(
        root=cfg.input_dir,
        image_size=cfg.image_size,
        batch_size=cfg.batch_size,
        num_workers=cfg.num_workers,
        cipher=cfg.cipher.name,
        block_size=cfg.cipher.block_size,
        **resolve_key_source(cfg, run_dir),
    )
    trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, logger=False)
    outputs = trainer.predict(task, datamodule=datamodule)
    labels = torch.cat([o["label"] for o in outputs]).tolist()
    confidences = torch.cat([o["confidence"] for o in outputs]).tolist()
    class_names = task.hparams.get("class_names")
    path = run_dir / "predictions.csv"
    run_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".predictions.", suffix=".tmp", dir=run_dir)
    with os.fdopen(fd, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "label", "class", "confidence"])
        for file, label, confidence in zip(
            datamodule.predict_files, labels, confidences, strict=True
        ):
            name = class_names[label] if class_names else str(label)
            writer.writerow([str(file), label, name, f"{confidence:.6f}"])
    os.replace(tmp, path)
    log.info(f"{len(labels)} predictions written to {path}")
    return path
