"""Inverse networks for the ITN attack (spec §2.3): a U-Net and the Kiya-lab block-wise network.

Both map an encrypted image in [-1, 1] to a plain-image estimate in [-1, 1] (tanh output; the
lab code's extra sigmoid on top of the tanh is a bug and is not reproduced).
"""

from __future__ import annotations

import torch
from torch import nn

from vitlearnenc.errors import InputError
from vitlearnenc.models.adaptation import block_grid


def _double_conv(in_chans: int, out_chans: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_chans, out_chans, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_chans),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_chans, out_chans, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_chans),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """U-Net (Ronneberger et al. 2015) with BatchNorm, padded convs and a tanh output.

    ``(B, in_chans, H, W)`` -> ``(B, out_chans, H, W)`` in [-1, 1]; H and W must be multiples of
    ``2**depth``. Channels are ``base_channels * 2**level``: 64 ... 1024 at the defaults (the
    ITN paper's network); smaller ``base_channels``/``depth`` for CPU runs and tests.
    Hand-written: neither timm nor torchvision ships a U-Net.
    """

    def __init__(
        self, in_chans: int = 3, out_chans: int = 3, base_channels: int = 64, depth: int = 4
    ) -> None:
        super().__init__()
        if depth < 1:
            raise InputError(f"U-Net depth must be >= 1, got {depth}")
        self.depth = depth
        widths = [base_channels * 2**level for level in range(depth + 1)]
        self.inc = _double_conv(in_chans, widths[0])
        self.downs = nn.ModuleList(
            nn.Sequential(nn.MaxPool2d(2), _double_conv(widths[i], widths[i + 1]))
            for i in range(depth)
        )
        self.ups = nn.ModuleList(
            nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2)
            for i in reversed(range(depth))
        )
        self.up_convs = nn.ModuleList(
            _double_conv(2 * widths[i], widths[i]) for i in reversed(range(depth))
        )
        self.head = nn.Conv2d(widths[0], out_chans, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        factor = 2**self.depth
        if x.shape[-2] % factor or x.shape[-1] % factor:
            raise InputError(
                f"U-Net of depth {self.depth} needs H and W divisible by {factor}, got "
                f"{x.shape[-2]}x{x.shape[-1]}; resize the images or lower depth"
            )
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        h = skips.pop()
        for up, conv in zip(self.ups, self.up_convs, strict=True):
            h = conv(torch.cat([skips.pop(), up(h)], dim=1))
        return torch.tanh(self.head(h))


class BlockwiseInverseNet(nn.Module):
    """The Kiya-lab block-wise network (ITN reference code; also the lab GAN-Attack generator).

    ``Conv(M x M, stride M) -> 1x1 -> 1x1`` (each with BN + ReLU) ``-> PixelShuffle(M) -> 1x1 ->
    tanh``: ``(B, in_chans, H, W)`` -> ``(B, out_chans, H, W)`` in [-1, 1]. Default widths are the
    lab's: ``(3M^2, 3M^2, 32M^2)`` = (48, 48, 512) for M = 4, and (64, 128, 256) with 1x1 convs
    only for M = 1 (PE).

    Args:
        block_size: M (4 for LE/ELE/EtC at 32x32, 1 for PE).
        in_chans: input channels.
        out_chans: output channels.
        widths: channels of the three conv stages; the last must be a multiple of ``M**2``.
    """

    def __init__(
        self,
        block_size: int = 4,
        in_chans: int = 3,
        out_chans: int = 3,
        widths: tuple[int, int, int] | None = None,
    ) -> None:
        super().__init__()
        area = block_size * block_size
        if widths is None:
            widths = (64, 128, 256) if block_size == 1 else (3 * area, 3 * area, 32 * area)
        if widths[2] % area:
            raise InputError(f"widths[2]={widths[2]} must be a multiple of block_size**2={area}")
        self.block_size = block_size
        layers: list[nn.Module] = []
        chans = in_chans
        for i, width in enumerate(widths):
            kernel = block_size if i == 0 else 1
            layers += [
                nn.Conv2d(chans, width, kernel, stride=kernel),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            ]
            chans = width
        layers += [nn.PixelShuffle(block_size), nn.Conv2d(chans // area, out_chans, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        block_grid(x.shape[-2], x.shape[-1], self.block_size)
        return self.net(x)
