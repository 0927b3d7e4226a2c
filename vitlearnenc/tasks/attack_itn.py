"""ITN-Attack (Ito, Kinoshita, Kiya, GCCE 2020; spec §2.3) as a LightningModule.

The attacker encrypts public images with keys it draws itself (a fresh key per image, see
:class:`~vitlearnenc.data.attack.ITNDataModule`), trains an inverse network on the
(encrypted, plain) pairs with MSE in [-1, 1], and applies it to the victim's ciphertexts.

:class:`RestorationTask` holds what every learned restoration attack shares (value scaling,
the test stage's scores against the plain images, prediction); :class:`ITNAttack` adds the
inverse network and its supervised training.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import lightning as L
import torch
from torch import nn
from torchmetrics import MeanMetric

from vitlearnenc.attacks.registry import (
    AttackContext,
    AttackOutcome,
    Input,
    InputKind,
    register_attack,
)
from vitlearnenc.attacks.scoring import restoration_scores
from vitlearnenc.models import build_attack_net
from vitlearnenc.tasks.optim import OptimConfig, configure_sgd_or_adamw

#: the Kiya-lab ITN recipe (spec §2.3): SGD lr 0.01, momentum 0.9, weight decay 5e-4 on every
#: parameter, constant learning rate
ITN_OPTIM: dict[str, Any] = {
    "name": "sgd",
    "lr": 0.01,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "schedule": "constant",
    "warmup_fraction": 0.0,
    "no_decay_on_norm_and_bias": False,
}


def to_signed_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``(B, C, H, W)`` 0..255 -> float32 in [-1, 1] (the networks' tanh range).

    Real-valued ciphertexts (orthomix; float, on the 0..1 scale of the float cipher API) take the
    same affine map, ``2x - 1``, so both kinds reach the network on one scale.
    """
    if images.is_floating_point():
        return images.float().mul(2.0).sub(1.0)
    return images.float().div(127.5).sub(1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float ``(B, C, H, W)`` in [-1, 1] -> uint8 0..255 (rounded, clamped), detached."""
    return images.detach().add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8)


class RestorationTask(L.LightningModule):
    """Base of the learned attacks: a network maps ciphertexts to plain-image estimates.

    Subclasses implement :meth:`restorer` (the network used at test/predict time). Test batches
    are ``{"image": ciphertexts, "plain": plain}`` (uint8); the plain images are read for the
    scores only. Predict batches are ``{"image", "index"}``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.test_means = nn.ModuleDict({name: MeanMetric() for name in ("ssim", "psnr")})

    def restorer(self) -> nn.Module:
        """The network that restores ciphertexts in [-1, 1]."""
        raise NotImplementedError

    def restore(self, ciphertexts: torch.Tensor) -> torch.Tensor:
        """Restore ``(B, C, H, W)`` ciphertexts (uint8, or float for the real-valued ciphers) to
        ``(B, 3, H, W)`` uint8 estimates."""
        return to_uint8(self.restorer()(to_signed_unit(ciphertexts)))

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        restored = self.restore(batch["image"])
        for name, values in restoration_scores(restored, batch["plain"]).items():
            metric = self.test_means[name]
            metric.update(values)
            self.log(f"test/{name}", metric, on_step=False, on_epoch=True)

    def predict_step(
        self, batch: dict[str, torch.Tensor], batch_idx: int
    ) -> dict[str, torch.Tensor]:
        out = {"restored": self.restore(batch["image"])}
        if "index" in batch:
            out["index"] = batch["index"]
        return out


class ITNAttack(RestorationTask):
    """Inverse-transformation network trained on attacker-encrypted public images.

    Args:
        net: keyword arguments of :func:`~vitlearnenc.models.build_attack_net`, with ``name``
            (``unet``, the paper's network, or ``blockwise_inverse``, the lab code's).
        optim: fields of :class:`~vitlearnenc.tasks.optim.OptimConfig` overriding
            :data:`ITN_OPTIM` (Adam: ``name=adamw, weight_decay=0``).
    """

    def __init__(self, net: dict[str, Any], optim: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        kwargs = dict(net)
        self.net = build_attack_net(kwargs.pop("name"), **kwargs)
        self.optim_cfg = OptimConfig(**{**ITN_OPTIM, **(optim or {})})
        self.criterion = nn.MSELoss()
        self.train_loss, self.val_loss = MeanMetric(), MeanMetric()

    def restorer(self) -> nn.Module:
        return self.net

    def forward(self, ciphertexts: torch.Tensor) -> torch.Tensor:
        """Plain estimates in [-1, 1] for ciphertexts in [-1, 1], ``(B, C, H, W)`` float."""
        return self.net(ciphertexts)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.criterion(self(to_signed_unit(batch["image"])), to_signed_unit(batch["plain"]))
        self.train_loss.update(loss.detach(), weight=len(batch["image"]))
        self.log("train/loss", self.train_loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log("train/loss_step", loss.detach(), on_step=True, on_epoch=False)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        """MSE on held-out *attacker* pairs (the attacker's own model selection; SSIM is left to
        the test stage, as it costs more than the network on CPU)."""
        output = self(to_signed_unit(batch["image"]))
        loss = self.criterion(output, to_signed_unit(batch["plain"]))
        self.val_loss.update(loss, weight=len(batch["image"]))
        self.log("val/loss", self.val_loss, on_step=False, on_epoch=True, prog_bar=True)

    def configure_optimizers(self) -> dict[str, Any]:
        return configure_sgd_or_adamw(
            self.net, self.optim_cfg, int(self.trainer.estimated_stepping_batches)
        )

    @property
    def optim_settings(self) -> dict[str, Any]:
        """The resolved optimiser settings (defaults filled in), for reports."""
        return dataclasses.asdict(self.optim_cfg)


def fit_and_restore(
    context: AttackContext, task: RestorationTask, datamodule: L.LightningDataModule
) -> AttackOutcome:
    """Train ``task`` on the attacker's data, then restore the victim ciphertexts (predict);
    the outcome's budget holds what the training cost."""
    trainer = context.need("make_trainer")()
    started = time.perf_counter()
    trainer.fit(task, datamodule=datamodule)
    fit_seconds = round(time.perf_counter() - started, 2)
    outputs = trainer.predict(task, datamodule=datamodule)
    restored = torch.cat([o["restored"] for o in outputs])
    index = torch.cat([o["index"] for o in outputs])
    iterations = int(trainer.fit_loop.epoch_loop.batch_progress.total.completed)
    batch_size = int(context.settings["batch_size"])
    budget = {
        "epochs": int(trainer.current_epoch),
        "iterations": iterations,
        "optimizer_steps": int(trainer.global_step),
        "batch_size": batch_size,
        "images_seen": iterations * batch_size,
        "fit_seconds": fit_seconds,
        "parameters": {
            name: sum(p.numel() for p in module.parameters())
            for name, module in task.named_children()
            if any(True for _ in module.parameters())
        },
    }
    return AttackOutcome(restored[index.argsort()], budget=budget)


@register_attack("itn", inputs=(Input(InputKind.PUBLIC_IMAGES, "num_public_images"),))
def run_itn(context: AttackContext) -> AttackOutcome:
    """ITN-Attack: encrypt the public images with fresh attacker keys, fit, restore."""
    from vitlearnenc.data.attack import ITNDataModule

    settings, public = context.settings, context.need("public_images")
    datamodule = ITNDataModule(
        public_images=public,
        victim_ciphertexts=context.victim_ciphertexts,
        cipher=context.cipher.name,
        block_size=context.cipher.block_size,
        cipher_options=dict(context.cipher_options),
        images_per_key=int(settings["images_per_key"]),
        key_seed=int(settings["attacker_seed"]),
        val_fraction=float(settings["val_fraction"]),
        batch_size=int(settings["batch_size"]),
        num_workers=int(settings["num_workers"]),
    )
    task = ITNAttack(net=dict(settings["net"]), optim=settings.get("optim"))
    outcome = fit_and_restore(context, task, datamodule)
    outcome.budget.update(
        public_images=len(public),
        images_per_key=int(settings["images_per_key"]),
        net=settings["net"],
        optim=task.optim_settings,
    )
    return outcome
