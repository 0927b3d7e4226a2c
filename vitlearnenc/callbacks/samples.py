"""Log one grid of plain validation images and their encryption per run."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torchvision.utils import make_grid, save_image

from vitlearnenc.utils.logging import RankedLogger

log = RankedLogger(__name__)


class EncryptedSamplesCallback(L.Callback):
    """At the start of training, save a two-row grid as ``<run dir>/samples.png`` and log it
    to TensorBoard and wandb when those are active: plain validation images over the
    encryption of *other* validation images.

    Why not the encryption of the same images: one plain/encrypted pair is a known-plaintext
    pair, from which :func:`vitlearnenc.attacks.kpa.recover_proposed_key` reads the whole key
    (K1 and K2). Showing different images keeps the picture (what encryption looks like) without
    publishing key-equivalent material to dashboards. Rank zero only, once per run.
    """

    def __init__(self, num_images: int = 16) -> None:
        self.num_images = num_images

    @L.pytorch.utilities.rank_zero_only
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        datamodule = trainer.datamodule
        if datamodule is None or getattr(datamodule, "cipher", None) is None:
            return
        images = self._first_images(datamodule, 2 * self.num_images)
        if images is None or len(images) < 2:
            return
        half = len(images) // 2
        images = datamodule.augment_and_resize(images, train=False)
        plain, encrypted = images[:half], datamodule.cipher.encrypt(images[half : 2 * half])
        grid = _stacked_grids([_viewable(plain), _viewable(encrypted)], half)
        path = Path(trainer.default_root_dir) / "samples.png"
        save_image(grid, path)
        for logger in trainer.loggers:
            experiment = getattr(logger, "experiment", None)
            if hasattr(experiment, "add_image"):  # TensorBoard
                experiment.add_image("samples/plain_and_encrypted", grid, global_step=0)
            elif type(logger).__name__ == "WandbLogger":
                logger.log_image("samples/plain_and_encrypted", [grid], step=0)
        log.info(f"Plain and encrypted samples (different images): {path}")

    @staticmethod
    def _first_images(datamodule: L.LightningDataModule, count: int) -> torch.Tensor | None:
        """The first ``count`` validation images, read from the dataset in this process.

        Not through ``val_dataloader()``: that builds a loader with persistent workers, so
        worker processes would start here for a few images, and once more for the real
        validation loader.
        """
        dataset = getattr(datamodule, "val_set", None)
        if dataset is None:
            return None
        count = min(count, len(dataset))
        return torch.stack([dataset[i]["image"] for i in range(count)]) if count else None


def _viewable(images: torch.Tensor) -> torch.Tensor:
    """RGB floats in [0, 1] for the grid: uint8 scaled, real-valued ciphertexts (orthomix)
    clipped, one-channel ciphertexts (etc_gray) shown grey."""
    shown = images.float() / 255 if images.dtype == torch.uint8 else images.float().clamp(0, 1)
    return shown.expand(-1, 3, -1, -1) if shown.shape[1] == 1 else shown


def _stacked_grids(rows: list[torch.Tensor], per_row: int) -> torch.Tensor:
    """One grid per image set, stacked vertically and right-padded to the widest: a cipher may
    change the layout (etc_gray lays its channels side by side), so the sets differ in size.
    Rows sit where one ``make_grid`` of both sets would put them (one padding line between)."""
    grids = [make_grid(images, nrow=per_row, padding=1) for images in rows]
    grids = [grids[0], *(grid[:, 1:] for grid in grids[1:])]
    width = max(grid.shape[-1] for grid in grids)
    return torch.cat([F.pad(grid, (0, width - grid.shape[-1])) for grid in grids], dim=1)
