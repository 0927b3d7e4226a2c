"""Image operations shared by the client tools and the on-device data pipeline.

Both sides must produce the same bytes, so that training on a folder pre-encrypted with
``vitlearnenc-encrypt --resize S`` equals training with on-the-fly resize + encryption.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def resize_uint8(images: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Bilinear (antialiased when shrinking) resize of a ``(B, C, H, W)`` uint8 batch.

    Returns uint8 (rounded, clamped to 0..255) on the input's device, so that encryption after
    the resize still works on exact 8-bit values. A no-op when the size already matches.
    """
    target = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(images.shape[-2:]) == target:
        return images
    shrinking = target[0] < images.shape[-2] or target[1] < images.shape[-1]
    resized = F.interpolate(
        images.float(), size=target, mode="bilinear", align_corners=False, antialias=shrinking
    )
    return resized.round_().clamp_(0, 255).to(torch.uint8)
