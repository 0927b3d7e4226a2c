"""Batched random crop + flip: equal to a per-image loop, random per image, reproducible."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vitlearnenc.data.augment import crop_flip, draw_crop_flip, random_crop_flip


def reference_crop_flip(images, padding, top, left, flipped):
    """One image at a time, as torchvision's RandomCrop(padding) + RandomHorizontalFlip do."""
    out = []
    height, width = images.shape[-2:]
    for image, row, col, flip in zip(
        images, top.tolist(), left.tolist(), flipped.tolist(), strict=True
    ):
        padded = F.pad(image, (padding, padding, padding, padding))
        crop = padded[:, row : row + height, col : col + width]
        out.append(crop.flip(-1) if flip else crop)
    return torch.stack(out)


@pytest.mark.parametrize("padding", [0, 1, 4])
@pytest.mark.parametrize("shape", [(6, 3, 8, 8), (5, 3, 6, 10)])
def test_crop_flip_matches_per_image_loop(padding, shape):
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)
    top, left, flipped = draw_crop_flip(shape[0], padding, True, images.device, generator)
    flipped[0], flipped[1] = True, False  # both branches, whatever was drawn
    expected = reference_crop_flip(images, padding, top, left, flipped)
    torch.testing.assert_close(crop_flip(images, padding, top, left, flipped), expected)


def test_extreme_offsets_take_the_padding():
    images = torch.full((2, 1, 4, 4), 7, dtype=torch.uint8)
    top, left = torch.tensor([0, 4]), torch.tensor([0, 4])
    out = crop_flip(images, 2, top, left, torch.tensor([False, False]))
    # top-left crop: two rows and columns of zero padding; bottom-right: the same on the far side
    assert (
        out[0, 0, :2].eq(0).all() and out[0, 0, :, :2].eq(0).all() and out[0, 0, 2:, 2:].eq(7).all()
    )
    assert (
        out[1, 0, 2:].eq(0).all() and out[1, 0, :, 2:].eq(0).all() and out[1, 0, :2, :2].eq(7).all()
    )


def test_parameters_differ_per_image_and_cover_the_range():
    generator = torch.Generator().manual_seed(1)
    top, left, flipped = draw_crop_flip(4000, 4, True, torch.device("cpu"), generator)
    assert set(top.tolist()) == set(range(9)) and set(left.tolist()) == set(range(9))
    assert 0.45 < flipped.float().mean().item() < 0.55
    _, _, never = draw_crop_flip(100, 4, False, torch.device("cpu"), generator)
    assert not never.any()


def test_same_generator_seed_same_batch_and_global_rng_is_used():
    images = torch.randint(0, 256, (8, 3, 8, 8), dtype=torch.uint8)
    first = random_crop_flip(images, 2, generator=torch.Generator().manual_seed(5))
    again = random_crop_flip(images, 2, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(first, again)
    torch.manual_seed(3)
    global_a = random_crop_flip(images, 2)
    torch.manual_seed(3)
    global_b = random_crop_flip(images, 2)
    torch.testing.assert_close(global_a, global_b)
    assert not torch.equal(global_a, random_crop_flip(images, 2))


def test_noop_and_bad_padding():
    images = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    assert random_crop_flip(images, 0, flip=False) is images
    with pytest.raises(ValueError, match="padding"):
        random_crop_flip(images, -1)


@pytest.mark.gpu
def test_cpu_generator_drives_a_cuda_batch_like_a_cpu_one():
    images = torch.randint(0, 256, (8, 3, 8, 8), dtype=torch.uint8)
    cpu = random_crop_flip(images, 4, generator=torch.Generator().manual_seed(2))
    cuda = random_crop_flip(images.cuda(), 4, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(cuda.cpu(), cpu)
