"""Log one grid of plain validation images and their encryption per run."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torchvision.utils import make_grid, save_image

from vitlearnenc.utils.logging import RankedLogger

log = RankedLogger(__name__)


class EncryptedSamplesCallback(L.Callback):
    """At the start of training, take ``num_images`` validation images, encrypt them with the
    DataModule's cipher, and save a two-row grid (plain over encrypted) as
    ``<run dir>/samples.png``; also log it to TensorBoard and wandb when those are active.

    Rank zero only, once per run. The grid shows images, never key material.
    """

    def __init__(self, num_images: int = 16) -> None:
        self.num_images = num_images

    @L.pytorch.utilities.rank_zero_only
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        datamodule = trainer.datamodule
        if datamodule is None or getattr(datamodule, "cipher", None) is None:
            return
        plain = self._first_images(datamodule)
        if plain is None:
            return
        plain = datamodule.augment_and_resize(plain, train=False)
        encrypted = datamodule.cipher.encrypt(plain)
        grid = make_grid(torch.cat([plain, encrypted]).float() / 255, nrow=len(plain), padding=1)
        path = Path(trainer.default_root_dir) / "samples.png"
        save_image(grid, path)
        for logger in trainer.loggers:
            experiment = getattr(logger, "experiment", None)
            if hasattr(experiment, "add_image"):  # TensorBoard
                experiment.add_image("samples/plain_vs_encrypted", grid, global_step=0)
            elif type(logger).__name__ == "WandbLogger":
                logger.log_image("samples/plain_vs_encrypted", [grid], step=0)
        log.info(f"Plain and encrypted samples: {path}")

    def _first_images(self, datamodule: L.LightningDataModule) -> torch.Tensor | None:
        images = []
        for batch in datamodule.val_dataloader():
            images.append(batch["image"])
            if sum(len(i) for i in images) >= self.num_images:
                break
        return torch.cat(images)[: self.num_images] if images else None
