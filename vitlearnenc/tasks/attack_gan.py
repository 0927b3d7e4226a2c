"""GAN attacks (spec §2.2) as a LightningModule with manual optimisation.

SIA-GAN (Madono et al., IEEE Access 2021): the attacker holds victim ciphertexts *with their
class labels* and unpaired natural images, no key and no pairs. A generator G maps ciphertexts
to images; a discriminator D tells G(s) from natural images (hinge loss); an auxiliary
classifier C is trained jointly on G(s) with the labels, and its cross entropy is added to G's
loss, which pushes G towards images whose class content is recognisable. Adam with
beta = (0, 0.9), lr_G 1e-4, lr_D 4e-4 (the paper's setting); images in [-1, 1].

The Kiya-lab "GAN-Attack" is the same loop with a lighter network pair, a BCE loss, no
classifier and Adam 2e-4, beta1 0.5 (``conf/attack/gan_lab.yaml``).

One optimiser per network, stepped in the order of Lightning's GAN example
(``examples/pytorch/domain_templates/generative_adversarial_net.py``): G, then C, then D, each
inside ``toggled_optimizer`` so that a loss only reaches the parameters of its own network.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric

from vitlearnenc.attacks.registry import (
    AttackContext,
    AttackOutcome,
    Input,
    InputKind,
    register_attack,
)
from vitlearnenc.errors import InputError
from vitlearnenc.models import build_attack_net, build_classifier
from vitlearnenc.tasks.attack_itn import RestorationTask, fit_and_restore, to_signed_unit

LOSSES = ("hinge", "bce")


class SIAGANAttack(RestorationTask):
    """SIA-GAN (or the lab GAN-Attack) trained with manual optimisation.

    Training batches: ``{"scrambled": {"image", "label"}, "natural": {"image"}}`` of uint8
    images (see :class:`~vitlearnenc.data.attack.GANDataModule`).

    Args:
        generator: :func:`~vitlearnenc.models.build_attack_net` kwargs with ``name``
            (``siagan_generator`` or ``lab_generator``).
        discriminator: the same for D (``sagan_discriminator`` or ``dcgan_discriminator``).
        classifier: :func:`~vitlearnenc.models.build_classifier` kwargs with ``name`` for the
            auxiliary classifier trained on G(s); None trains without labels (lab variant).
        num_classes: classes of the labels.
        loss: ``hinge`` (SIA-GAN) or ``bce`` (lab GAN-Attack, on D's logits).
        lr_g: generator learning rate.
        lr_d: discriminator learning rate.
        lr_c: classifier learning rate (Adam with betas ``classifier_betas``); the defaults
            are G's, as the SIA-GAN code steps the classifier with the generator's optimiser.
        betas: Adam betas of G and D.
        classifier_betas: Adam betas of C.
        classifier_weight: weight of C's cross entropy in G's loss.
    """

    def __init__(
        self,
        generator: dict[str, Any],
        discriminator: dict[str, Any],
        classifier: dict[str, Any] | None = None,
        num_classes: int = 10,
        loss: str = "hinge",
        lr_g: float = 1e-4,
        lr_d: float = 4e-4,
        lr_c: float = 1e-4,
        betas: tuple[float, float] = (0.0, 0.9),
        classifier_betas: tuple[float, float] = (0.0, 0.9),
        classifier_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if loss not in LOSSES:
            raise InputError(f"GAN loss must be one of {', '.join(LOSSES)}, got {loss!r}")
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.generator = _build(generator, build_attack_net)
        self.discriminator = _build(discriminator, build_attack_net)
        self.classifier = (
            None
            if classifier is None
            else _build({**classifier, "num_classes": num_classes}, build_classifier)
        )
        self.means = nn.ModuleDict(
            {name: MeanMetric() for name in ("g_loss", "d_loss", "c_loss", "c_acc")}
        )

    def restorer(self) -> nn.Module:
        return self.generator

    def forward(self, ciphertexts: torch.Tensor) -> torch.Tensor:
        """Restored images in [-1, 1] for ciphertexts in [-1, 1], ``(B, C, H, W)`` float."""
        return self.generator(ciphertexts)

    def generator_adversarial_loss(self, fake_scores: torch.Tensor) -> torch.Tensor:
        """G's adversarial loss from D's scores ``(B,)`` of generated images."""
        if self.hparams.loss == "hinge":
            return -fake_scores.mean()
        return F.binary_cross_entropy_with_logits(fake_scores, torch.ones_like(fake_scores))

    def discriminator_loss(
        self, real_scores: torch.Tensor, fake_scores: torch.Tensor
    ) -> torch.Tensor:
        """D's loss from its scores ``(B,)`` of natural and generated images."""
        if self.hparams.loss == "hinge":
            return F.relu(1.0 - real_scores).mean() + F.relu(1.0 + fake_scores).mean()
        real = F.binary_cross_entropy_with_logits(real_scores, torch.ones_like(real_scores))
        fake = F.binary_cross_entropy_with_logits(fake_scores, torch.zeros_like(fake_scores))
        return real + fake

    def training_step(self, batch: dict[str, dict[str, torch.Tensor]], batch_idx: int) -> None:
        scrambled = to_signed_unit(batch["scrambled"]["image"])
        labels = batch["scrambled"]["label"]
        real = to_signed_unit(batch["natural"]["image"])
        optimizers = self.optimizers()
        opt_g, opt_d = optimizers[0], optimizers[1]

        with self.toggled_optimizer(opt_g):
            fake = self.generator(scrambled)
            g_loss = self.generator_adversarial_loss(self.discriminator(fake))
            if self.classifier is not None:
                g_loss = g_loss + self.hparams.classifier_weight * F.cross_entropy(
                    self.classifier(fake), labels
                )
            self.manual_backward(g_loss)
            opt_g.step()
            opt_g.zero_grad()
        fake = fake.detach()

        if self.classifier is not None:
            opt_c = optimizers[2]
            with self.toggled_optimizer(opt_c):
                logits = self.classifier(fake)
                c_loss = F.cross_entropy(logits, labels)
                self.manual_backward(c_loss)
                opt_c.step()
                opt_c.zero_grad()
            self._log_mean("c_loss", c_loss)
            self._log_mean("c_acc", (logits.argmax(dim=1) == labels).float().mean())

        with self.toggled_optimizer(opt_d):
            d_loss = self.discriminator_loss(self.discriminator(real), self.discriminator(fake))
            self.manual_backward(d_loss)
            opt_d.step()
            opt_d.zero_grad()

        self._log_mean("g_loss", g_loss, prog_bar=True)
        self._log_mean("d_loss", d_loss, prog_bar=True)

    def _log_mean(self, name: str, value: torch.Tensor, prog_bar: bool = False) -> None:
        metric = self.means[name]
        metric.update(value.detach())
        self.log(f"train/{name}", metric, on_step=False, on_epoch=True, prog_bar=prog_bar)
        self.log(f"train/{name}_step", value.detach(), on_step=True, on_epoch=False)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """Adam per network: [G, D] or [G, D, C]."""
        hp = self.hparams
        optimizers = [
            torch.optim.Adam(self.generator.parameters(), lr=hp.lr_g, betas=tuple(hp.betas)),
            torch.optim.Adam(self.discriminator.parameters(), lr=hp.lr_d, betas=tuple(hp.betas)),
        ]
        if self.classifier is not None:
            optimizers.append(
                torch.optim.Adam(
                    self.classifier.parameters(), lr=hp.lr_c, betas=tuple(hp.classifier_betas)
                )
            )
        return optimizers


def _build(config: dict[str, Any], factory: Any) -> nn.Module:
    kwargs = dict(config)
    return factory(kwargs.pop("name"), **kwargs)


#: settings of the attack config passed on to :class:`SIAGANAttack` when present
_GAN_SETTINGS = (
    "loss",
    "lr_g",
    "lr_d",
    "lr_c",
    "betas",
    "classifier_betas",
    "classifier_weight",
)


@register_attack(
    "gan",
    inputs=(
        Input(InputKind.LABELLED_CIPHERTEXTS, "num_victim_train"),
        Input(InputKind.PUBLIC_IMAGES, "num_natural"),
    ),
)
def run_gan(context: AttackContext) -> AttackOutcome:
    """SIA-GAN / GAN-Attack: fit G against D (and C) on the labelled victim ciphertexts and
    the natural images, then restore the victim's test ciphertexts."""
    from vitlearnenc.data.attack import GANDataModule

    settings = context.settings
    scrambled, labels = context.need("labelled_ciphertexts"), context.need("labels")
    natural = context.need("public_images")
    datamodule = GANDataModule(
        scrambled=scrambled,
        labels=labels,
        natural=natural,
        victim_ciphertexts=context.victim_ciphertexts,
        batch_size=int(settings["batch_size"]),
        num_workers=int(settings["num_workers"]),
    )
    task = SIAGANAttack(
        generator=dict(settings["generator"]),
        discriminator=dict(settings["discriminator"]),
        classifier=settings.get("classifier"),
        num_classes=int(labels.max()) + 1,
        **{k: settings[k] for k in _GAN_SETTINGS if k in settings},
    )
    outcome = fit_and_restore(context, task, datamodule)
    outcome.budget.update(
        victim_train_ciphertexts=len(scrambled),
        natural_images=len(natural),
        generator=settings["generator"],
        discriminator=settings["discriminator"],
        classifier=settings.get("classifier"),
    )
    return outcome
