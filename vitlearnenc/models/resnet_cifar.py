"""ResNets for 32x32 images: timm's ResNet-18 with a CIFAR stem, and He et al.'s ResNet-20.

ResNet-18 (CIFAR stem) is the PE baseline's classifier (spec §1.6). ResNet-20 (He, Zhang, Ren,
Sun, CVPR 2016, §4.2; ~0.27 M parameters) is a CNN small enough for CPU mini runs; it is written
here because timm's ResNet always builds a 64-channel stem and cannot express the 16-32-64
three-stage layout with parameter-free (option A) shortcuts.
"""

from __future__ import annotations

from typing import Any

import timm
import torch
import torch.nn.functional as F
from torch import nn

from vitlearnenc.errors import InputError


def use_cifar_stem(model: nn.Module) -> nn.Module:
    """Replace a timm ResNet's 7x7/2 stem conv and max-pool by a 3x3/1 conv (in place).

    32x32 inputs keep their resolution into the first stage, as in the CIFAR ResNets. The new
    conv is freshly initialised (pretrained 7x7 weights do not transfer).
    """
    old = model.conv1
    if not isinstance(old, nn.Conv2d):
        raise TypeError(
            f"expected a timm ResNet with a single conv1 stem, got {type(old).__name__}"
        )
    model.conv1 = nn.Conv2d(old.in_channels, old.out_channels, 3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()
    return model


def resnet18_cifar(
    num_classes: int = 10, in_chans: int = 3, pretrained: bool = False, **kwargs: Any
) -> nn.Module:
    """timm ``resnet18`` with the CIFAR stem; ``pretrained`` loads timm's ImageNet weights
    (everything except the replaced stem conv and the head)."""
    model = timm.create_model(
        "resnet18", pretrained=pretrained, num_classes=num_classes, in_chans=in_chans, **kwargs
    )
    return use_cifar_stem(model)


class _CifarBasicBlock(nn.Module):
    """conv3x3 - BN - ReLU - conv3x3 - BN, shortcut: stride-2 subsampling + zero channel pad."""

    def __init__(self, in_chans: int, out_chans: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, out_chans, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_chans)
        self.conv2 = nn.Conv2d(out_chans, out_chans, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chans)
        self.stride = stride
        self.extra_chans = out_chans - in_chans

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x[:, :, :: self.stride, :: self.stride] if self.stride > 1 else x
        if self.extra_chans:
            shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, self.extra_chans))
        return F.relu(out + shortcut)


class CifarResNet(nn.Module):
    """He et al.'s CIFAR ResNet-(6n+2): ``(B, in_chans, H, W)`` -> ``(B, num_classes)`` logits.

    Args:
        depth: 6n + 2 (20, 32, 44, 56, 110).
        num_classes: output logits.
        in_chans: input channels.
        widths: channels of the three stages.
    """

    def __init__(
        self,
        depth: int = 20,
        num_classes: int = 10,
        in_chans: int = 3,
        widths: tuple[int, int, int] = (16, 32, 64),
    ) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise InputError(
                f"CIFAR ResNet depth must be 6n + 2 (20, 32, 44, 56, 110), got {depth}"
            )
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_chans, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        stages: list[nn.Module] = []
        chans = widths[0]
        for stage, width in enumerate(widths):
            blocks = []
            for i in range(n):
                blocks.append(_CifarBasicBlock(chans, width, 2 if stage > 0 and i == 0 else 1))
                chans = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.num_features = chans
        self.fc = nn.Linear(chans, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features ``(B, num_features)``."""
        x = self.stages(F.relu(self.bn1(self.conv1(x))))
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x))


def resnet20_cifar(num_classes: int = 10, in_chans: int = 3, **kwargs: Any) -> CifarResNet:
    """ResNet-20 of He et al. (~0.27 M parameters at 10 classes)."""
    return CifarResNet(depth=20, num_classes=num_classes, in_chans=in_chans, **kwargs)
