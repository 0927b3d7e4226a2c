"""GAN networks for the GAN attacks (spec §2.2).

* SIA-GAN (Madono et al., IEEE Access 2021): :class:`SIAGANGenerator` (block-wise adaptation
  network + residual feature decoder) and :class:`SAGANDiscriminator` (spectral norm,
  self-attention).
* Kiya-lab "GAN-Attack": the generator is :class:`~vitlearnenc.models.unet.BlockwiseInverseNet`
  with DCGAN initialisation (:func:`lab_generator`); :class:`DCGANDiscriminator` is the critic.

Images are ``(B, 3, H, W)`` in [-1, 1]; discriminators return one raw score (logit) per image,
``(B,)``, for a hinge loss or ``BCEWithLogitsLoss``.
"""

from __future__ import annotations

from typing import TypeVar

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

from vitlearnenc.errors import InputError
from vitlearnenc.models.adaptation import (
    BlockwiseBatchNorm,
    BlockwiseConv,
    block_grid,
    blocks_to_map,
)
from vitlearnenc.models.unet import BlockwiseInverseNet

ModuleT = TypeVar("ModuleT", bound=nn.Module)


def _sn_conv(
    in_chans: int, out_chans: int, kernel: int, stride: int = 1, padding: int = 0, bias: bool = True
) -> nn.Module:
    return spectral_norm(nn.Conv2d(in_chans, out_chans, kernel, stride, padding, bias=bias))


class SIAGANAdaptation(nn.Module):
    """SIA-GAN's adaptation network: ``(B, in, H, W)`` -> ``(B, feature_chans, H, W)``.

    Per block position: SN-``Conv(M x M, stride M, feature_chans * M^2)`` -> BN -> LeakyReLU(0.1),
    then ``PixelShuffle(M)`` puts each block's features back in place (no block unshuffling).
    ``shared=True`` uses one conv for all blocks (LE-AdaptNet style), which keeps the parameter
    count independent of the number of blocks (per-block weights at 224x224, M=16 would be
    ~0.6 G parameters).

    Args:
        block_size: M (4 for LE/ELE/EtC, 1 for PE).
        img_size: H (or (H, W)); fixes the number of blocks.
        in_chans: input channels.
        feature_chans: output channels.
        shared: one shared block conv instead of one per block position.
    """

    def __init__(
        self,
        block_size: int = 4,
        img_size: int | tuple[int, int] = 32,
        in_chans: int = 3,
        feature_chans: int = 16,
        shared: bool = False,
    ) -> None:
        super().__init__()
        height, width = (img_size, img_size) if isinstance(img_size, int) else img_size
        gh, gw = block_grid(height, width, block_size)
        out = feature_chans * block_size * block_size
        self.block_size, self.feature_chans, self.shared = block_size, feature_chans, shared
        if shared:
            self.conv: nn.Module = _sn_conv(in_chans, out, block_size, block_size, bias=False)
            self.bn: nn.Module = nn.BatchNorm2d(out)
        else:
            self.conv = BlockwiseConv(in_chans, out, block_size, gh * gw, spectral_norm=True)
            self.bn = BlockwiseBatchNorm(out, gh * gw)
        self.act = nn.LeakyReLU(0.1)
        self.shuffle = nn.PixelShuffle(block_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid = block_grid(x.shape[-2], x.shape[-1], self.block_size)
        h = self.act(self.bn(self.conv(x)))
        if not self.shared:
            h = blocks_to_map(h, grid)
        return self.shuffle(h)


class _ResBlock(nn.Module):
    """``x + (SN-conv3x3 - BN - LReLU - SN-conv3x3 - BN)(x)``, then LeakyReLU(0.1)."""

    def __init__(self, chans: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _sn_conv(chans, chans, 3, padding=1, bias=False),
            nn.BatchNorm2d(chans),
            nn.LeakyReLU(0.1),
            _sn_conv(chans, chans, 3, padding=1, bias=False),
            nn.BatchNorm2d(chans),
        )
        self.act = nn.LeakyReLU(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.body(x))


class FeatureDecoder(nn.Module):
    """SIA-GAN feature decoder: ``(B, in_chans, H, W)`` -> ``(B, out_chans, H, W)`` in [-1, 1].

    SN-conv3x3 (in -> width) + BN + LReLU(0.1), ``num_res_blocks`` residual blocks, SN-conv3x3 +
    BN + LReLU, SN-conv3x3 (width -> out), tanh.
    """

    def __init__(
        self, in_chans: int = 16, out_chans: int = 3, width: int = 64, num_res_blocks: int = 3
    ) -> None:
        super().__init__()
        self.net = nn.Sequential(
            _sn_conv(in_chans, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.LeakyReLU(0.1),
            *[_ResBlock(width) for _ in range(num_res_blocks)],
            _sn_conv(width, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.LeakyReLU(0.1),
            _sn_conv(width, out_chans, 3, padding=1, bias=False),
            nn.Tanh(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SIAGANGenerator(nn.Module):
    """SIA-GAN generator: ``decoder(adaptation(x))``; encrypted ``(B, 3, H, W)`` in [-1, 1] ->
    restored ``(B, 3, H, W)`` in [-1, 1].

    For the optional TV loss on the adaptation feature, call ``adaptation`` and ``decoder``
    separately.

    Args:
        block_size: M of the adaptation network (4 for LE/ELE/EtC, 1 for PE).
        img_size: H (or (H, W)).
        in_chans: input (and output) channels.
        feature_chans: adaptation feature channels.
        width: decoder channels (64 in the paper; smaller for CPU tests).
        num_res_blocks: decoder residual blocks.
        shared_adaptation: see :class:`SIAGANAdaptation`.
    """

    def __init__(
        self,
        block_size: int = 4,
        img_size: int | tuple[int, int] = 32,
        in_chans: int = 3,
        feature_chans: int = 16,
        width: int = 64,
        num_res_blocks: int = 3,
        shared_adaptation: bool = False,
    ) -> None:
        super().__init__()
        self.adaptation = SIAGANAdaptation(
            block_size, img_size, in_chans, feature_chans, shared=shared_adaptation
        )
        self.decoder = FeatureDecoder(feature_chans, in_chans, width, num_res_blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.adaptation(x))


class SelfAttention(nn.Module):
    """SAGAN self-attention (Zhang et al. 2019) with spectrally normalised 1x1 projections.

    ``x + gamma * attention(x)`` on ``(B, C, H, W)``; ``gamma`` starts at 0, so the layer starts
    as the identity.
    """

    def __init__(self, chans: int) -> None:
        super().__init__()
        inner = max(chans // 8, 1)
        self.query = _sn_conv(chans, inner, 1)
        self.key = _sn_conv(chans, inner, 1)
        self.value = _sn_conv(chans, chans, 1)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, chans, height, width = x.shape
        q = self.query(x).flatten(2).transpose(1, 2)  # (B, HW, C')
        k = self.key(x).flatten(2)  # (B, C', HW)
        attn = torch.softmax(torch.bmm(q, k), dim=-1)  # (B, HW, HW): row i attends over j
        v = self.value(x).flatten(2)  # (B, C, HW)
        out = torch.bmm(v, attn.transpose(1, 2)).view(batch, chans, height, width)
        return x + self.gamma * out


class SAGANDiscriminator(nn.Module):
    """SIA-GAN discriminator: ``(B, in_chans, H, W)`` -> ``(B,)`` scores.

    Three stages ``[SN-conv3x3 - LReLU(0.1) - SN-conv4x4/2 - LReLU(0.1)]`` with 128/256/512
    channels, self-attention, SN-conv3x3 to 1024, self-attention, SN-linear on the flattened
    ``1024 x H/8 x W/8`` map. No activation between the 1024-channel conv and the second
    attention, as in the SIA-GAN code. ``width`` scales all channel counts (1.0 = paper).

    Args:
        in_chans: image channels.
        img_size: H (or (H, W)), a multiple of 8; fixes the linear layer.
        width: channel multiplier.
    """

    def __init__(
        self, in_chans: int = 3, img_size: int | tuple[int, int] = 32, width: float = 1.0
    ) -> None:
        super().__init__()
        height, wide = (img_size, img_size) if isinstance(img_size, int) else img_size
        grid = block_grid(height, wide, 8)
        c1, c2, c3, c4 = (max(int(c * width), 8) for c in (128, 256, 512, 1024))
        stages: list[nn.Module] = []
        chans = in_chans
        for out in (c1, c2, c3):
            stages += [
                _sn_conv(chans, out, 3, padding=1),
                nn.LeakyReLU(0.1),
                _sn_conv(out, out, 4, stride=2, padding=1),
                nn.LeakyReLU(0.1),
            ]
            chans = out
        self.features = nn.Sequential(
            *stages, SelfAttention(c3), _sn_conv(c3, c4, 3, padding=1), SelfAttention(c4)
        )
        self.img_size = (height, wide)
        self.linear = spectral_norm(nn.Linear(c4 * grid[0] * grid[1], 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != self.img_size:
            raise InputError(
                f"discriminator built for {self.img_size[0]}x{self.img_size[1]} images, got "
                f"{x.shape[-2]}x{x.shape[-1]}; build it with img_size={x.shape[-2]}"
            )
        return self.linear(self.features(x).flatten(1)).squeeze(1)


def init_dcgan_weights(module: ModuleT) -> ModuleT:
    """DCGAN initialisation (Radford et al. 2016), as in the lab code: conv weights N(0, 0.02),
    BatchNorm weights N(1, 0.02) and biases 0. Applied in place; returns ``module``.

    Spectrally normalised convs keep their default init: the lab code's re-init of those only
    touched the derived weight, which spectral norm recomputes, so it never took effect.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d) and not parametrize.is_parametrized(m):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
    return module


class DCGANDiscriminator(nn.Module):
    """The lab GAN-Attack discriminator: ``(B, in_chans, H, W)`` -> ``(B,)`` logits.

    ``conv4x4/2 - LReLU(0.2) - SN-conv4x4/2 - LReLU(0.2) - conv4x4 (valid, 1 channel)``, then the
    maximum over the remaining positions. The lab code max-pools a 3x3 window of the 5x5 map at
    32x32 and applies a sigmoid; here the maximum is global (any image size) and the sigmoid is
    left to ``BCEWithLogitsLoss`` for numerical stability.

    Args:
        in_chans: image channels.
        width: channels of the first conv (64 in the lab code).
    """

    def __init__(self, in_chans: int = 3, width: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_chans, width, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2),
            _sn_conv(width, 2 * width, 4, stride=2, padding=1, bias=False),
            nn.LeakyReLU(0.2),
            nn.Conv2d(2 * width, 1, 4, 1, 0, bias=False),
        )
        init_dcgan_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).amax(dim=(1, 2, 3))


def lab_generator(block_size: int = 4, in_chans: int = 3) -> BlockwiseInverseNet:
    """The lab GAN-Attack generator: :class:`BlockwiseInverseNet` with DCGAN initialisation."""
    return init_dcgan_weights(BlockwiseInverseNet(block_size, in_chans, in_chans))
