"""SSIM/PSNR scoring: agreement with scikit-image (the reference protocol) and edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from vitlearnenc.attacks.scoring import psnr, ssim, ssim_gaussian, summarize


def _pairs(height: int = 32, width: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain images (smooth, random, dark, bright) and degraded versions of them."""
    g = torch.Generator().manual_seed(0)
    ramp = torch.linspace(0, 255, width).expand(3, height, width)
    plain = (
        torch.stack(
            [
                ramp,
                torch.randint(0, 256, (3, height, width), generator=g).double(),
                ramp * 0.2,
                255 - ramp * 0.1,
            ]
        )
        .round()
        .to(torch.uint8)
    )
    noise = torch.randint(-40, 41, plain.shape, generator=g)
    restored = (plain.int() + noise).clamp(0, 255).to(torch.uint8)
    restored[1] = 255 - plain[1]  # an inverted image scores negative
    return restored, plain


def _skimage_ssim(restored: torch.Tensor, plain: torch.Tensor) -> torch.Tensor:
    values = [
        structural_similarity(
            r.permute(1, 2, 0).numpy(), p.permute(1, 2, 0).numpy(), channel_axis=-1, data_range=255
        )
        for r, p in zip(restored, plain, strict=True)
    ]
    return torch.tensor(values, dtype=torch.float32)


@pytest.mark.parametrize("size", [(32, 32), (24, 40)])
def test_ssim_matches_skimage(size: tuple[int, int]) -> None:
    restored, plain = _pairs(*size)
    expected = _skimage_ssim(restored, plain)
    assert expected.min() < 0 < expected.max() < 1  # the cases are not degenerate
    torch.testing.assert_close(ssim(restored, plain), expected, atol=1e-6, rtol=0)


def test_ssim_of_identical_images_is_one() -> None:
    _, plain = _pairs()
    torch.testing.assert_close(ssim(plain, plain), torch.ones(4))
    torch.testing.assert_close(ssim_gaussian(plain, plain), torch.ones(4))


def test_gaussian_ssim_drops_with_noise() -> None:
    _, plain = _pairs()
    g = torch.Generator().manual_seed(1)
    scores = []
    for amplitude in (5, 20, 60):
        noise = torch.randint(-amplitude, amplitude + 1, plain.shape, generator=g)
        scores.append(ssim_gaussian((plain.int() + noise).clamp(0, 255).to(torch.uint8), plain))
    assert (scores[0] > scores[1]).all() and (scores[1] > scores[2]).all()


def test_psnr_known_values() -> None:
    _, plain = _pairs()
    bright = plain[[0]].clamp(max=245)
    shifted = bright + 10  # every value off by exactly 10
    torch.testing.assert_close(psnr(shifted, bright), torch.tensor([20 * math.log10(255 / 10)]))
    assert torch.isinf(psnr(plain, plain)).all()


def test_scores_reject_bad_input() -> None:
    restored, plain = _pairs()
    with pytest.raises(ValueError, match="differ in shape"):
        ssim(restored[:2], plain)
    with pytest.raises(ValueError, match="uint8"):
        psnr(restored.float() / 255, plain)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        ssim(restored[0], plain[0])
    with pytest.raises(ValueError, match="at least 7x7"):
        ssim(restored[..., :6, :6], plain[..., :6, :6])


def test_summarize() -> None:
    stats = summarize(torch.tensor([4.0, 1.0, 3.0, 2.0]))
    assert stats["n"] == 4
    for name, value in {
        "mean": 2.5,
        "median": 2.5,
        "q1": 1.75,
        "q3": 3.25,
        "min": 1.0,
        "max": 4.0,
        "std": float(np.std([1, 2, 3, 4], ddof=1)),
    }.items():
        assert stats[name] == pytest.approx(value), name
    assert summarize(torch.tensor([0.5]))["std"] == 0.0
    perfect = summarize(torch.tensor([30.0, math.inf, math.inf]))
    assert perfect["median"] == math.inf and perfect["min"] == 30.0
    with pytest.raises(ValueError, match="non-empty 1-D"):
        summarize(torch.zeros(2, 2))


@pytest.mark.gpu
def test_scores_on_cuda_match_cpu() -> None:
    restored, plain = _pairs()
    for score in (ssim, ssim_gaussian, psnr):
        torch.testing.assert_close(
            score(restored.cuda(), plain.cuda()).cpu(), score(restored, plain)
        )
