"""``resize_uint8`` (the on-device resize, e.g. the paper's 32 -> 224) against independent
implementations: Pillow and torchvision's uint8 resize, within +-1 grey level."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.v2.functional import InterpolationMode, resize

from vitlearnenc.utils.image_ops import resize_uint8


@pytest.mark.parametrize(("source", "target"), [(32, 224), (32, 64), (64, 32), (224, 96)])
def test_resize_uint8_matches_pillow_and_torchvision(source: int, target: int) -> None:
    rng = np.random.default_rng(source * 1000 + target)
    # smooth images plus noise: the interpolation, not only the noise, is compared
    ramp = np.linspace(0, 255, source)
    base = (ramp[None, :, None] + ramp[:, None, None]) / 2
    images = np.clip(base + rng.normal(0, 40, (4, source, source, 3)), 0, 255).astype(np.uint8)
    ours = resize_uint8(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), target)
    pillow = np.stack(
        [np.asarray(Image.fromarray(im).resize((target, target), Image.BILINEAR)) for im in images]
    )
    vision = resize(
        torch.from_numpy(images).permute(0, 3, 1, 2),
        [target, target],
        interpolation=InterpolationMode.BILINEAR,
        antialias=True,
    )
    ours_hwc = ours.permute(0, 2, 3, 1).numpy().astype(int)
    assert np.abs(ours_hwc - pillow.astype(int)).max() <= 1
    assert (ours.int() - vision.int()).abs().max() <= 1
    assert ours.dtype == torch.uint8 and ours.shape == (4, 3, target, target)
