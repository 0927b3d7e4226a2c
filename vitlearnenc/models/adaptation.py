"""Adaptation networks for block-wise encrypted images (spec §1.6) and their block-wise layers.

An adaptation network maps an encrypted image ``(B, 3, H, W)`` to a ``(B, 16, H, W)`` feature map
that an ordinary CNN/ViT (built with ``in_chans=16``) classifies:

* :class:`LEAdaptNet` (Tanaka 2018): one sub-network shared by every ``M x M`` block.
* :class:`ELEAdaptNet` (Madono et al. 2020): a separate spectrally normalised sub-network per block
  position, then a learnable ``N x N`` pseudo-permutation ``U`` that can undo block shuffling.

The per-position layers (:class:`BlockwiseConv`, :class:`BlockwiseBatchNorm`) are batched over
the ``N`` block positions (one einsum, one BatchNorm1d) instead of the reference code's Python
loop of ``N`` convolutions; :mod:`vitlearnenc.models.gan` reuses them for SIA-GAN's generator.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from vitlearnenc.errors import InputError


def l12_penalty(u: torch.Tensor) -> torch.Tensor:
    """``L_U = (1/N^2) [sum_rows (|u|_1 - |u|_2) + sum_cols (|u|_1 - |u|_2)]`` of an ``N x N`` ``u``.

    Zero exactly when every row and column has at most one non-zero entry, so it pushes ``U``
    towards a (signed, scaled) permutation matrix.
    """
    rows = u.abs().sum(dim=1) - torch.linalg.vector_norm(u, dim=1)
    cols = u.abs().sum(dim=0) - torch.linalg.vector_norm(u, dim=0)
    return (rows.sum() + cols.sum()) / (u.shape[0] * u.shape[1])


def smoothness_penalty(feature: torch.Tensor, channels: int = 3) -> torch.Tensor:
    """Squared-difference total variation ``L_s`` of the first ``channels`` feature channels.

    ``feature`` is ``(B, C, H, W)``. Vertical and horizontal forward differences are taken on the
    top-left ``(H-1) x (W-1)`` grid, and the sum is divided by ``B * (H-1) * W * C`` (all ``C``
    channels), the normalisation of Madono et al.'s code, so that their ``lambda_s = 0.1`` keeps
    its meaning.
    """
    batch, total_chans, height, width = feature.shape
    x = feature[:, :channels]
    corner = x[:, :, :-1, :-1]
    down = x[:, :, 1:, :-1] - corner
    right = x[:, :, :-1, 1:] - corner
    return (down.square() + right.square()).sum() / (batch * (height - 1) * width * total_chans)


class BlockSpectralNorm(nn.Module):
    """Parametrization dividing each of ``N`` stacked weight matrices by its own spectral norm.

    ``torch.nn.utils.parametrizations.spectral_norm`` treats a weight as *one* matrix; block-wise
    layers need one ``sigma`` per block position. Same estimator as torch's: persistent ``u``/``v``
    buffers, ``n_power_iterations`` steps per training forward and none in evaluation.

    Args:
        weight: the ``(N, out, ...)`` weight to be normalised (used for shapes and warm-up).
        n_power_iterations: power-iteration steps per training forward.
        eps: numerical floor for the normalisations.
    """

    _u: torch.Tensor
    _v: torch.Tensor

    def __init__(
        self, weight: torch.Tensor, n_power_iterations: int = 1, eps: float = 1e-12
    ) -> None:
        super().__init__()
        if weight.dim() < 3:
            raise InputError(f"expected an (N, out, ...) weight, got shape {tuple(weight.shape)}")
        self.n_power_iterations = n_power_iterations
        self.eps = eps
        mats = weight.detach().flatten(2)
        num, rows, cols = mats.shape
        self.register_buffer("_u", F.normalize(mats.new_empty(num, rows).normal_(), dim=1, eps=eps))
        self.register_buffer("_v", F.normalize(mats.new_empty(num, cols).normal_(), dim=1, eps=eps))
        self._power_iteration(mats, 15)

    @torch.no_grad()
    def _power_iteration(self, mats: torch.Tensor, steps: int) -> None:
        for _ in range(steps):
            v = torch.bmm(mats.transpose(1, 2), self._u.unsqueeze(2)).squeeze(2)
            self._v.copy_(F.normalize(v, dim=1, eps=self.eps))
            u = torch.bmm(mats, self._v.unsqueeze(2)).squeeze(2)
            self._u.copy_(F.normalize(u, dim=1, eps=self.eps))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        mats = weight.flatten(2)
        if self.training:
            self._power_iteration(mats.detach(), self.n_power_iterations)
        u = self._u.clone(memory_format=torch.contiguous_format)
        v = self._v.clone(memory_format=torch.contiguous_format)
        sigma = torch.einsum("no,nok,nk->n", u, mats, v)
        return weight / sigma.view(-1, *([1] * (weight.dim() - 1)))


def block_grid(height: int, width: int, block_size: int) -> tuple[int, int]:
    """``(H/M, W/M)``, or a clear error when M does not divide the image."""
    if height % block_size or width % block_size:
        raise InputError(
            f"image size {height}x{width} is not a multiple of the block size {block_size}; "
            "resize the images or choose a block size that divides both sides"
        )
    return height // block_size, width // block_size


def image_to_blocks(x: torch.Tensor, block_size: int) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, N, C*M*M)``: blocks in row-major order, each flattened (c, i, j)
    like a ``Conv2d`` weight, so block ``n`` is ``x[:, :, r*M:(r+1)*M, s*M:(s+1)*M]`` with
    ``n = r * (W/M) + s``."""
    batch, chans, height, width = x.shape
    gh, gw = block_grid(height, width, block_size)
    blocks = x.reshape(batch, chans, gh, block_size, gw, block_size).permute(0, 2, 4, 1, 3, 5)
    return blocks.reshape(batch, gh * gw, chans * block_size * block_size)


def blocks_to_map(features: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """``(B, N, D)`` block features -> ``(B, D, H/M, W/M)`` map (block ``n`` at row-major ``n``)."""
    batch, num, dim = features.shape
    return features.transpose(1, 2).reshape(batch, dim, grid[0], grid[1])


class BlockwiseConv(nn.Module):
    """An independent bias-free ``Conv2d(in, out, M, stride=M)`` for each of ``N`` block positions.

    ``(B, in_chans, H, W)`` -> ``(B, N, out_chans)``, computed as one einsum. Each block's weight is
    initialised like ``nn.Conv2d`` and, if ``spectral_norm``, normalised by its own largest
    singular value (:class:`BlockSpectralNorm`).
    """

    def __init__(
        self,
        in_chans: int,
        out_chans: int,
        block_size: int,
        num_blocks: int,
        spectral_norm: bool = True,
    ) -> None:
        super().__init__()
        self.in_chans, self.out_chans = in_chans, out_chans
        self.block_size, self.num_blocks = block_size, num_blocks
        fan_in = in_chans * block_size * block_size
        bound = 1.0 / math.sqrt(fan_in)  # nn.Conv2d's default kaiming_uniform_(a=sqrt(5))
        self.weight = nn.Parameter(
            torch.empty(num_blocks, out_chans, in_chans, block_size, block_size).uniform_(
                -bound, bound
            )
        )
        if spectral_norm:
            parametrize.register_parametrization(self, "weight", BlockSpectralNorm(self.weight))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        blocks = image_to_blocks(x, self.block_size)
        if blocks.shape[1] != self.num_blocks or x.shape[1] != self.in_chans:
            raise InputError(
                f"this block-wise layer was built for {self.num_blocks} blocks of "
                f"{self.in_chans}x{self.block_size}x{self.block_size}, got input {tuple(x.shape)}; "
                "build it for this image size"
            )
        return torch.einsum("bnk,nok->bno", blocks, self.weight.flatten(2))

    def extra_repr(self) -> str:
        return (
            f"{self.in_chans}, {self.out_chans}, block_size={self.block_size}, "
            f"num_blocks={self.num_blocks}"
        )


class BlockwiseBatchNorm(nn.Module):
    """A separate BatchNorm for each block position of ``(B, N, D)`` features.

    A per-block ``BatchNorm2d(D)`` on a ``(B, D, 1, 1)`` block output normalises each (block,
    channel) pair over the batch only, which is exactly ``BatchNorm1d(N * D)`` on the flattened
    features.
    """

    def __init__(self, channels: int, num_blocks: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(num_blocks * channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(x.flatten(1)).view_as(x)


class LEAdaptNet(nn.Module):
    """LE-AdaptNet: one block sub-network shared by all blocks; ``(B, in, H, W)`` -> ``(B, out, H, W)``.

    ``Conv(M x M, stride M, out * M^2, no bias) -> BN -> LeakyReLU(0.1) -> PixelShuffle(M)``. The
    BatchNorm pools statistics over batch and blocks; Madono et al.'s code ran the shared layers
    block by block, which normalises each block with its own batch statistics.
    """

    def __init__(self, block_size: int = 4, in_chans: int = 3, out_chans: int = 16) -> None:
        super().__init__()
        self.block_size, self.out_chans = block_size, out_chans
        width = out_chans * block_size * block_size
        self.conv = nn.Conv2d(in_chans, width, block_size, stride=block_size, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.act = nn.LeakyReLU(0.1)
        self.shuffle = nn.PixelShuffle(block_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        block_grid(x.shape[-2], x.shape[-1], self.block_size)
        return self.shuffle(self.act(self.bn(self.conv(x))))

    def regularization_loss(self) -> torch.Tensor:
        """LE-AdaptNet adds no loss term; a zero keeps the adaptation-net interface uniform."""
        return self.conv.weight.new_zeros(())


class ELEAdaptNet(nn.Module):
    """ELE-AdaptNet: per-block SN sub-networks, pseudo-permutation ``U``, pixel shuffle.

    ``(B, in, H, W)`` -> ``(B, out, H, W)`` with ``N = (H/M)(W/M)`` = ``num_blocks``:
    block ``n`` -> its own ``SN-Conv(M x M, stride M, out * M^2) -> BN -> LeakyReLU(0.2)`` ->
    feature ``f_n``; ``h_k = sum_n U[n, k] f_n``; ``h`` placed at block ``k`` by ``PixelShuffle(M)``.
    ``U`` is unconstrained and starts like an ``nn.Linear`` weight (Kaiming uniform,
    ``a = sqrt(5)``: ``U(-1/sqrt(N), 1/sqrt(N))``), as in Madono et al.'s code.

    Args:
        block_size: M.
        num_blocks: N; the input must have exactly N blocks.
        in_chans: input channels.
        out_chans: feature channels after the pixel shuffle.
        lambda_u: weight of :func:`l12_penalty` in :meth:`regularization_loss`.
        lambda_s: weight of :func:`smoothness_penalty` in :meth:`regularization_loss`.
    """

    def __init__(
        self,
        block_size: int = 4,
        num_blocks: int = 64,
        in_chans: int = 3,
        out_chans: int = 16,
        lambda_u: float = 1e-3,
        lambda_s: float = 0.1,
    ) -> None:
        super().__init__()
        self.block_size, self.num_blocks, self.out_chans = block_size, num_blocks, out_chans
        self.lambda_u, self.lambda_s = lambda_u, lambda_s
        width = out_chans * block_size * block_size
        self.conv = BlockwiseConv(in_chans, width, block_size, num_blocks, spectral_norm=True)
        self.bn = BlockwiseBatchNorm(width, num_blocks)
        self.act = nn.LeakyReLU(0.2)
        self.mixing = nn.Parameter(torch.empty(num_blocks, num_blocks))
        nn.init.kaiming_uniform_(self.mixing, a=math.sqrt(5))
        self.shuffle = nn.PixelShuffle(block_size)
        self._last_output: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid = block_grid(x.shape[-2], x.shape[-1], self.block_size)
        features = self.act(self.bn(self.conv(x)))  # (B, N, D)
        mixed = torch.einsum("bnd,nk->bkd", features, self.mixing)
        out = self.shuffle(blocks_to_map(mixed, grid))
        self._last_output = out
        return out

    def regularization_loss(self, feature: torch.Tensor | None = None) -> torch.Tensor:
        """``lambda_u * L_U(U) + lambda_s * L_s(feature)``; ``feature`` defaults to the output of
        the last forward pass (call it right after the forward of the same step)."""
        if feature is None:
            feature = self._last_output
        if feature is None:
            raise RuntimeError(
                "regularization_loss() needs a forward pass first (or pass feature=)"
            )
        return self.lambda_u * l12_penalty(self.mixing) + self.lambda_s * smoothness_penalty(
            feature
        )


class AdaptedClassifier(nn.Module):
    """``backbone(adaptation(x))``: an adaptation network in front of a classifier.

    ``x`` is ``(B, 3, H, W)`` float; the backbone must take ``adaptation.out_chans`` channels.
    """

    def __init__(self, adaptation: LEAdaptNet | ELEAdaptNet, backbone: nn.Module) -> None:
        super().__init__()
        self.adaptation = adaptation
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.adaptation(x))

    def regularization_loss(self) -> torch.Tensor:
        """The adaptation network's extra loss term for the last forward (0 for LE)."""
        return self.adaptation.regularization_loss()


def build_adaptation(
    kind: str,
    block_size: int = 4,
    img_size: int | tuple[int, int] = 32,
    in_chans: int = 3,
    **kwargs: float | int,
) -> LEAdaptNet | ELEAdaptNet:
    """``"le"`` -> :class:`LEAdaptNet`, ``"ele"`` -> :class:`ELEAdaptNet` sized for ``img_size``."""
    height, width = (img_size, img_size) if isinstance(img_size, int) else img_size
    grid = block_grid(height, width, block_size)
    if kind == "le":
        return LEAdaptNet(block_size, in_chans, **kwargs)  # type: ignore[arg-type]
    if kind == "ele":
        num_blocks = grid[0] * grid[1]
        return ELEAdaptNet(block_size, num_blocks, in_chans, **kwargs)  # type: ignore[arg-type]
    raise InputError(f"unknown adaptation network {kind!r}; choose 'le' or 'ele' (or None)")
