"""Callbacks used by tests that run the entry points in subprocesses."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import lightning as L
import torch


class RankProbe(L.Callback):
    """Write, per rank, the key fingerprint and a digest of a fixed batch encrypted by this
    rank's DataModule, so a test can check that every DDP rank encrypts identically."""

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        cipher = trainer.datamodule.cipher
        size = cipher.image_size
        images = torch.arange(3 * size[0] * size[1], dtype=torch.int64).remainder(251)
        images = images.to(torch.uint8).reshape(1, 3, *size)
        digest = hashlib.sha256(cipher.encrypt(images).numpy().tobytes()).hexdigest()
        out = Path(trainer.default_root_dir) / f"rank{trainer.global_rank}.json"
        out.write_text(
            json.dumps(
                {
                    "fingerprint": cipher.key.fingerprint,
                    "digest": digest,
                    "world_size": trainer.world_size,
                }
            )
        )
