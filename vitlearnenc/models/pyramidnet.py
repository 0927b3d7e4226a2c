"""PyramidNet with ShakeDrop (Han, Kim, Kim, CVPR 2017; Yamada et al. 2019) for 32x32 inputs.

The classifier of the LE/ELE/EtC baselines (Madono et al.; spec §1.6): Shake-PyramidNet-110,
alpha 270, ShakeDrop with drop probability rising linearly to 0.5. Hand-written because timm has
no PyramidNet and no ShakeDrop. The default basic block and the channel schedule follow the
owruby/shake-drop_pytorch network that Madono et al. trained (depth 110 = 6 * 18 + 2 with basic
blocks, ~28.5 M parameters); ``block="bottleneck"`` gives the bottleneck variant of Han et al.
(depth = 9n + 2).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from vitlearnenc.errors import InputError
from vitlearnenc.models.shakedrop import ShakeDrop


def _pad_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Zero-pad ``x`` (B, C, H, W) to ``channels`` channels: PyramidNet's parameter-free shortcut."""
    extra = channels - x.shape[1]
    return F.pad(x, (0, 0, 0, 0, 0, extra)) if extra > 0 else x


class PyramidBasicBlock(nn.Module):
    """BN - conv3x3(stride) - BN - ReLU - conv3x3 - BN - ShakeDrop, plus a zero-padded shortcut."""

    expansion = 1

    def __init__(self, in_chans: int, width: int, stride: int, drop_prob: float) -> None:
        super().__init__()
        self.out_chans = width * self.expansion
        self.branch = nn.Sequential(
            nn.BatchNorm2d(in_chans),
            nn.Conv2d(in_chans, width, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
        )
        self.shake_drop = ShakeDrop(drop_prob)
        self.shortcut = nn.AvgPool2d(2) if stride == 2 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.shake_drop(self.branch(x))
        return residual + _pad_channels(self.shortcut(x), self.out_chans)


class PyramidBottleneck(PyramidBasicBlock):
    """BN - 1x1 - BN - ReLU - 3x3(stride) - BN - ReLU - 1x1 (4x width) - BN - ShakeDrop."""

    expansion = 4

    def __init__(self, in_chans: int, width: int, stride: int, drop_prob: float) -> None:
        super().__init__(in_chans, width, stride, drop_prob)
        self.branch = nn.Sequential(
            nn.BatchNorm2d(in_chans),
            nn.Conv2d(in_chans, width, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, self.out_chans, 1, bias=False),
            nn.BatchNorm2d(self.out_chans),
        )


class PyramidNet(nn.Module):
    """PyramidNet for CIFAR-sized images: ``(B, in_chans, H, W)`` float -> ``(B, num_classes)`` logits.

    Three stages (strides 1, 2, 2) of ``n`` units; unit ``i`` (0-based, of ``L = 3n``) has width
    ``16 + ceil(alpha * (i + 1) / L)`` and ShakeDrop probability ``max_drop_prob * (i + 1) / L``.

    Args:
        depth: 6n + 2 (basic) or 9n + 2 (bottleneck).
        alpha: total width increase over the network.
        num_classes: output logits.
        in_chans: input channels (16 after an LE/ELE adaptation network).
        block: ``"basic"`` or ``"bottleneck"``.
        max_drop_prob: ShakeDrop probability of the last unit (0 disables ShakeDrop).
    """

    def __init__(
        self,
        depth: int = 110,
        alpha: float = 270,
        num_classes: int = 10,
        in_chans: int = 3,
        block: Literal["basic", "bottleneck"] = "basic",
        max_drop_prob: float = 0.5,
    ) -> None:
        super().__init__()
        block_cls = {"basic": PyramidBasicBlock, "bottleneck": PyramidBottleneck}.get(block)
        if block_cls is None:
            raise InputError(f"block must be 'basic' or 'bottleneck', got {block!r}")
        layers_per_unit = 2 if block == "basic" else 3
        if depth < 3 * layers_per_unit + 2 or (depth - 2) % (3 * layers_per_unit):
            raise InputError(
                f"a {block} PyramidNet needs depth = {3 * layers_per_unit}n + 2 with n >= 1 "
                f"(e.g. 110), got {depth}"
            )
        units_per_stage = (depth - 2) // (3 * layers_per_unit)
        total = 3 * units_per_stage
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)
        )
        units: list[nn.Module] = []
        chans = 16
        for i in range(total):
            stride = 2 if i in (units_per_stage, 2 * units_per_stage) else 1
            width = 16 + math.ceil(alpha * (i + 1) / total)
            unit = block_cls(chans, width, stride, max_drop_prob * (i + 1) / total)
            units.append(unit)
            chans = unit.out_chans
        self.units = nn.Sequential(*units)
        self.final_norm = nn.Sequential(nn.BatchNorm2d(chans), nn.ReLU(inplace=True))
        self.num_features = chans
        self.fc = nn.Linear(chans, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features ``(B, num_features)``."""
        x = self.final_norm(self.units(self.stem(x)))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x))
