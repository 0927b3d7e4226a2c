"""``vitlearnenc-predict``: label a folder of encrypted images with a trained checkpoint.

The provider's side: the folder was written by ``vitlearnenc-encrypt`` and this process holds
no key (``cipher=pre_encrypted``, the default). Writes ``predictions.csv`` (file, label, class,
confidence) to the run directory.

Example::

    vitlearnenc-predict ckpt_path=.../last.ckpt input_dir=encrypted_images/
"""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path

import hydra
import lightning as L
import torch
from omegaconf import DictConfig

from vitlearnenc.cli.common import (
    configure_environment,
    one_line_errors,
    reject_renamed_overrides,
)
from vitlearnenc.runs.config import validate_config
from vitlearnenc.runs.keys import resolve_key_source
from vitlearnenc.utils.logging import RankedLogger
from vitlearnenc.utils.paths import check_conf_dir, register_resolvers

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


@one_line_errors("vitlearnenc-predict")
def _main(cfg: DictConfig) -> None:
    configure_environment()
    predict(cfg)


def main() -> None:
    """Console-script entry point."""
    reject_renamed_overrides("vitlearnenc-predict")
    register_resolvers()
    hydra.main(version_base="1.3", config_path=str(check_conf_dir()), config_name="predict")(
        _main
    )()
