"""Batched random crop (with zero padding) and horizontal flip on the training device.

The CIFAR recipe of the reference code (``RandomCrop(32, padding=4)`` +
``RandomHorizontalFlip``) applied to a whole ``(B, C, H, W)`` batch at once: one random offset
and flip bit per image, realised by a single gather through an index grid, with no Python loop
over images. torchvision's v2 transforms draw one set of parameters per call, i.e. the same
crop for the whole batch, which is why this is hand-written.

Randomness comes from ``generator`` or, when it is None, from torch's global RNG of the batch's
device, so ``lightning.seed_everything`` makes the augmentation reproducible.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vitlearnenc.errors import InputError


def draw_crop_flip(
    batch_size: int,
    padding: int,
    flip: bool,
    device: torch.device,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random parameters for :func:`crop_flip`.

    The numbers are drawn on the generator's device (or ``device`` for the global RNG) and
    moved to ``device``, so a CPU generator also drives a GPU batch.

    Returns:
        ``(top, left, flipped)``: int64 offsets in ``[0, 2 * padding]`` and a bool flip mask,
        each ``(B,)`` on ``device``.
    """
    draw_device = generator.device if generator is not None else device
    top = torch.randint(0, 2 * padding + 1, (batch_size,), device=draw_device, generator=generator)
    left = torch.randint(0, 2 * padding + 1, (batch_size,), device=draw_device, generator=generator)
    if flip:
        flipped = torch.rand(batch_size, device=draw_device, generator=generator) < 0.5
    else:
        flipped = torch.zeros(batch_size, dtype=torch.bool, device=draw_device)
    return top.to(device), left.to(device), flipped.to(device)


def crop_flip(
    images: torch.Tensor,
    padding: int,
    top: torch.Tensor,
    left: torch.Tensor,
    flipped: torch.Tensor,
) -> torch.Tensor:
    """Zero-pad every image by ``padding``, crop it back to ``H x W`` at its own offset, flip.

    Args:
        images: ``(B, C, H, W)`` batch, any dtype and device.
        padding: pixels of zeros added on each side before cropping.
        top: ``(B,)`` row offsets into the padded image, in ``[0, 2 * padding]``.
        left: ``(B,)`` column offsets, in ``[0, 2 * padding]``.
        flipped: ``(B,)`` bool, mirror the crop left-right where True.

    Returns:
        ``(B, C, H, W)`` tensor of the input's dtype and device.
    """
    batch, _, height, width = images.shape
    padded = F.pad(images, (padding, padding, padding, padding)) if padding else images
    device = images.device
    rows = top[:, None] + torch.arange(height, device=device)  # (B, H)
    columns = torch.arange(width, device=device).expand(batch, width)
    columns = torch.where(flipped[:, None], width - 1 - columns, columns) + left[:, None]  # (B, W)
    batch_index = torch.arange(batch, device=device)[:, None, None]
    # advanced indices around a slice put their broadcast shape first: (B, H, W, C)
    cropped = padded[batch_index, :, rows[:, :, None], columns[:, None, :]]
    return cropped.permute(0, 3, 1, 2).contiguous()


def random_crop_flip(
    images: torch.Tensor,
    padding: int,
    flip: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Random crop with zero padding and random horizontal flip, independently per image.

    Args:
        images: ``(B, C, H, W)`` batch (uint8 on the training device in the pipeline).
        padding: crop padding in pixels (4 for 32x32 CIFAR); 0 disables the crop.
        flip: flip each image left-right with probability 1/2.
        generator: source of randomness; None uses torch's global RNG of the batch's device.

    Returns:
        Augmented batch, same shape, dtype and device.
    """
    if padding < 0:
        raise InputError(f"crop padding must be >= 0, got {padding}")
    if padding == 0 and not flip:
        return images
    top, left, flipped = draw_crop_flip(images.shape[0], padding, flip, images.device, generator)
    return crop_flip(images, padding, top, left, flipped)
