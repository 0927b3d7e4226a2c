"""Synthetic test images shared by the attack tests."""

from __future__ import annotations

import torch


def smooth_images(count: int, size: int, seed: int, blobs: int = 3) -> torch.Tensor:
    """Smooth colour images: gradients plus ``blobs`` Gaussian blobs, spanning 0..255, uint8
    ``(count, 3, size, size)``; smooth enough that neighbouring pixels correlate strongly."""
    g = torch.Generator().manual_seed(seed)
    axis = torch.linspace(0, 1, size, dtype=torch.float64)
    ys, xs = torch.meshgrid(axis, axis, indexing="ij")
    shape = (count, 3, 1, 1)
    images = (torch.rand(shape, generator=g, dtype=torch.float64) - 0.5) * (xs + 2 * ys)
    for _ in range(blobs):
        cx, cy, width, amp = (torch.rand(shape, generator=g, dtype=torch.float64) for _ in range(4))
        images = images + (amp - 0.5) * torch.exp(
            -((xs - cx) ** 2 + (ys - cy) ** 2) / (0.02 + 0.1 * width)
        )
    low, high = images.amin(dim=(1, 2, 3), keepdim=True), images.amax(dim=(1, 2, 3), keepdim=True)
    return ((images - low) / (high - low) * 255).round().to(torch.uint8)
