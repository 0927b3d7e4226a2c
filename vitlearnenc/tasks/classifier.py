"""LightningModule that trains and evaluates an image classifier on (encrypted) images."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from vitlearnenc.models import build_classifier
from vitlearnenc.tasks.optim import OptimConfig, configure_sgd_or_adamw


class ClassifierModule(L.LightningModule):
    """Cross-entropy classifier around a network from :func:`vitlearnenc.models.build_classifier`.

    The constructor takes plain data only (network name and kwargs, optimiser settings), so a
    checkpoint rebuilds itself with ``ClassifierModule.load_from_checkpoint(path)``; the key is
    never an argument: the module sees only (encrypted) images from the DataModule.

    Args:
        net: keyword arguments of ``build_classifier`` except ``num_classes``
            (``name``, ``img_size``, ``patch_size``, ``pretrained``, ``checkpoint``, ``adapt``...).
        num_classes: number of classes.
        optim: fields of :class:`~vitlearnenc.tasks.optim.OptimConfig`.
        label_smoothing: cross-entropy label smoothing (off by default, as in the paper).
        compile: compile the inner network with ``torch.compile`` in ``configure_model``.
        channels_last: keep the network's weights and input images in the channels-last memory
            format (NHWC), which convolutions run faster in on tensor-core GPUs (and with oneDNN
            on CPU); values and results are unchanged.
        class_names: label names, stored in the checkpoint for prediction reports.
    """

    def __init__(
        self,
        net: dict[str, Any],
        num_classes: int,
        optim: dict[str, Any] | None = None,
        label_smoothing: float = 0.0,
        compile: bool = False,
        channels_last: bool = False,
        class_names: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net: nn.Module = build_classifier(num_classes=num_classes, **net)
        self.optim_cfg = OptimConfig(**(optim or {}))
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        top_k = min(5, num_classes)
        metrics = MetricCollection(
            {
                "acc": MulticlassAccuracy(num_classes, top_k=1, average="micro"),
                f"acc_top{top_k}": MulticlassAccuracy(num_classes, top_k=top_k, average="micro"),
            }
        )
        # one metric object per stage, so Lightning syncs and resets each separately
        self.train_metrics = metrics.clone(prefix="train/")
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.train_loss, self.val_loss, self.test_loss = MeanMetric(), MeanMetric(), MeanMetric()

    def configure_model(self) -> None:
        """Switch the memory format, then compile the inner network in place (keeps checkpoint
        keys free of ``_orig_mod.``)."""
        if self.hparams.channels_last:  # convolutions only: other layers may hold 5-D weights
            for module in self.net.modules():
                if isinstance(module, nn.Conv2d):
                    module.to(memory_format=torch.channels_last)
        if self.hparams.compile and not getattr(self, "_compiled", False):
            self.net.compile()
            self._compiled = True

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)`` for normalised float images ``(B, C, H, W)``."""
        if self.hparams.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.net(images)

    def _regularization(self) -> torch.Tensor | float:
        """Extra loss of adaptation networks (ELE-AdaptNet's L_U and L_s), zero otherwise."""
        regularizer = getattr(self.net, "regularization_loss", None)
        return regularizer() if callable(regularizer) else 0.0

    def _step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        logits = self(batch["image"])
        loss = self.criterion(logits, batch["label"])
        metrics = {"train": self.train_metrics, "val": self.val_metrics, "test": self.test_metrics}[
            stage
        ]
        mean_loss = {"train": self.train_loss, "val": self.val_loss, "test": self.test_loss}[stage]
        metrics.update(logits.detach(), batch["label"])
        mean_loss.update(loss.detach(), weight=batch["label"].numel())
        on_step = stage == "train"
        self.log(f"{stage}/loss", mean_loss, on_step=False, on_epoch=True, prog_bar=stage != "test")
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=True)
        if on_step:
            self.log("train/loss_step", loss.detach(), on_step=True, on_epoch=False)
            loss = loss + self._regularization()
        return loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "test")

    def predict_step(
        self, batch: dict[str, torch.Tensor], batch_idx: int
    ) -> dict[str, torch.Tensor]:
        probabilities = self(batch["image"]).softmax(dim=-1)
        confidence, label = probabilities.max(dim=-1)
        out = {"label": label, "confidence": confidence}
        if "index" in batch:
            out["index"] = batch["index"]
        return out

    def configure_optimizers(self) -> dict[str, Any]:
        return configure_sgd_or_adamw(
            self.net, self.optim_cfg, int(self.trainer.estimated_stepping_batches)
        )

    @property
    def optim_settings(self) -> dict[str, Any]:
        """The resolved optimiser settings (defaults filled in), for logs and reports."""
        return dataclasses.asdict(self.optim_cfg)


def export_network_weights(ckpt_path: str | Path, out_path: str | Path) -> Path:
    """Save the network of a training checkpoint as a timm-style ``.safetensors`` state dict,
    so it can start another run through ``model.checkpoint=PATH`` (e.g. fine-tuning on another
    task, with or without ``model.key_adapt``)."""
    from safetensors.torch import save_file

    task = ClassifierModule.load_from_checkpoint(ckpt_path, map_location="cpu")
    state = {name: tensor.contiguous() for name, tensor in task.net.state_dict().items()}
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out))
    return out
