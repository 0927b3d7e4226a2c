"""The sample grid shows plain and encrypted images of any cipher layout and value type."""

from __future__ import annotations

import torch
from torchvision.utils import make_grid

from vitlearnenc.callbacks.samples import _stacked_grids, _viewable


def test_same_layout_grid_equals_one_make_grid() -> None:
    plain, encrypted = torch.rand(4, 3, 8, 8), torch.rand(4, 3, 8, 8)
    expected = make_grid(torch.cat([plain, encrypted]), nrow=4, padding=1)
    assert torch.equal(_stacked_grids([plain, encrypted], 4), expected)


def test_layout_changing_and_real_valued_ciphertexts_are_shown() -> None:
    plain = _viewable(torch.full((2, 3, 8, 8), 255, dtype=torch.uint8))
    gray_wide = _viewable(torch.zeros(2, 1, 8, 24, dtype=torch.uint8))  # etc_gray's layout
    real = _viewable(torch.tensor([-0.5, 0.25, 1.5]).repeat(2, 3, 8, 3)[..., :8])
    assert plain.max() == 1 and gray_wide.shape == (2, 3, 8, 24)
    assert real.min() == 0 and real.max() == 1  # real-valued ciphertexts clipped, not /255
    grid = _stacked_grids([plain, gray_wide, real], 2)
    assert grid.shape == (3, 3 * 9 + 1, 2 * 25 + 1)
