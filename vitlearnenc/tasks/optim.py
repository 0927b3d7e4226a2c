"""Optimisers and learning-rate schedules from plain config data.

Plain data (names and numbers) rather than Hydra partials, so that ``save_hyperparameters``
stores a checkpoint that rebuilds itself with ``load_from_checkpoint`` and no Hydra.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from vitlearnenc.errors import InputError


@dataclass
class OptimConfig:
    """Optimiser and schedule of a training run.

    Defaults are the paper's ViT fine-tuning setting (SGD, momentum 0.9, weight decay 5e-4)
    with the ViT paper's linear warm-up + cosine decay and gradient clipping done by the trainer.
    """

    name: str = "sgd"  # sgd | adamw
    lr: float = 0.03
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: str = "cosine"  # cosine | multistep | constant
    warmup_fraction: float = 0.05  # of all optimiser steps
    milestones: list[float] = field(default_factory=lambda: [0.5, 0.75])  # fractions, multistep
    gamma: float = 0.1
    min_lr_ratio: float = 0.0
    no_decay_on_norm_and_bias: bool = True


def parameter_groups(
    model: nn.Module, weight_decay: float, exclude_norm_and_bias: bool
) -> list[dict]:
    """Weight decay on weights only; biases, norms, position embeddings and tokens are excluded,
    as in timm's and the ViT paper's recipes."""
    if not exclude_norm_and_bias:
        return [
            {
                "params": [p for p in model.parameters() if p.requires_grad],
                "weight_decay": weight_decay,
            }
        ]
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        skip = param.ndim <= 1 or name.endswith((".bias", "pos_embed", "cls_token", "reg_token"))
        (no_decay if skip else decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(params: Iterable[dict], cfg: OptimConfig) -> torch.optim.Optimizer:
    """SGD (momentum, optional Nesterov) or AdamW."""
    groups = list(params)
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas))
    raise InputError(f"unknown optimizer {cfg.name!r}; choose sgd or adamw")


def lr_lambda(cfg: OptimConfig, total_steps: int):
    """Multiplier of the base lr at optimiser step ``step`` (linear warm-up, then the schedule)."""
    warmup = int(round(cfg.warmup_fraction * total_steps))
    milestones = [int(round(m * total_steps)) for m in cfg.milestones]

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if cfg.schedule == "constant":
            return 1.0
        if cfg.schedule == "multistep":
            return cfg.gamma ** sum(step >= m for m in milestones)
        if cfg.schedule == "cosine":
            progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
            return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (
                1 + math.cos(math.pi * progress)
            )
        raise InputError(f"unknown schedule {cfg.schedule!r}; choose cosine, multistep or constant")

    return factor


def configure_sgd_or_adamw(net: nn.Module, cfg: OptimConfig, total_steps: int) -> dict:
    """Lightning ``configure_optimizers`` result: the optimiser over ``net``'s parameter
    groups and the per-step warm-up + schedule (shared by the classifier and the ITN attack)."""
    optimizer = build_optimizer(
        parameter_groups(net, cfg.weight_decay, cfg.no_decay_on_norm_and_bias), cfg
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg, max(1, total_steps)))
    return {
        "optimizer": optimizer,
        "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1},
    }
