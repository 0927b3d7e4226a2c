"""Test accuracy after every training epoch, for learning curves only (never for selection).

Why: recipes without a validation split (all 50,000 CIFAR-10 training images, as the timm
reference script uses) have no per-epoch accuracy, yet comparing recipes epoch by epoch is
how the gap to the reference script was located. The reference script reports test accuracy
per epoch; this callback gives the train app the same curve. Nothing is chosen on it: the
reported test accuracy stays the final model's. Each value is also appended to
``test_curve.jsonl`` in the run directory, because Lightning's CSV logger starts a fresh
``metrics.csv`` when a run resumes, which loses the earlier epochs. Add it on the command line:

    vitlearnenc-train ... +callbacks.test_curve._target_=experiments.recipes.test_curve.TestCurveCallback
"""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import torch

#: file in the run directory (``trainer.default_root_dir``) with one JSON line per epoch
CURVE_FILE = "test_curve.jsonl"


class TestCurveCallback(L.Callback):
    """Log ``test_curve/acc`` (top-1 on the DataModule's test split) at every epoch end."""

    def __init__(self, batch_size: int = 500) -> None:
        self.batch_size = batch_size

    @torch.no_grad()
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        datamodule = trainer.datamodule  # type: ignore[attr-defined]
        if datamodule.test_set is None:
            datamodule.setup("test")
        test = datamodule.test_set
        was_training = pl_module.training
        pl_module.eval()
        correct = 0
        for start in range(0, len(test), self.batch_size):
            batch = test.__getitems__(range(start, min(start + self.batch_size, len(test))))
            images = datamodule.transform_batch(batch["image"].to(pl_module.device), train=False)
            predicted = pl_module(images).argmax(-1).cpu()
            correct += int((predicted == batch["label"]).sum())
        pl_module.train(was_training)
        accuracy = correct / len(test)
        pl_module.log("test_curve/acc", accuracy, on_epoch=True)
        if trainer.is_global_zero:
            line = {
                "epoch": trainer.current_epoch + 1,
                "step": trainer.global_step,
                "acc": accuracy,
            }
            with (Path(trainer.default_root_dir) / CURVE_FILE).open("a") as handle:
                handle.write(json.dumps(line) + "\n")
