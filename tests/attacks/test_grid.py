"""Fig. 4-style attack grids: PNG files and logger tensors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from vitlearnenc.attacks.grid import make_grid_tensor, save_attack_grid


def _batch(seed: int, count: int = 3, channels: int = 3, width: int = 16) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, channels, 16, width), generator=g, dtype=torch.uint8)


def test_save_attack_grid_writes_png(tmp_path: Path) -> None:
    plain, encrypted = _batch(0), _batch(1, channels=1, width=48)  # grayscale-EtC-like shape
    restored = {"FR": _batch(2), "jigsaw": _batch(3)}
    scores = {"FR": torch.tensor([0.1, 0.2, 0.3]), "jigsaw": torch.tensor([0.9, 0.8, 0.7])}
    path = save_attack_grid(plain, encrypted, restored, scores, tmp_path / "figs" / "grid.png")
    assert path == tmp_path / "figs" / "grid.png" and path.stat().st_size > 1000
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
    assert width == 4 * 130  # plain, encrypted and two attacks, 1.3 in at 100 dpi each
    fewer = save_attack_grid(plain, encrypted, restored, scores, tmp_path / "two.png", max_images=2)
    with Image.open(fewer) as image:
        assert image.size[1] < height


def test_make_grid_tensor_is_uint8_rgb() -> None:
    grid = make_grid_tensor(_batch(0), _batch(1), {"FR": _batch(2)}, {"FR": torch.ones(3)})
    assert grid.dtype == torch.uint8 and grid.ndim == 3 and grid.shape[0] == 3
    assert grid.float().std() > 0  # something was drawn
    unlabeled = make_grid_tensor(_batch(0), _batch(1), {"FR": _batch(2)})
    assert unlabeled.shape == grid.shape and not torch.equal(unlabeled, grid)  # labels drawn


def test_grid_rejects_inconsistent_input(tmp_path: Path) -> None:
    plain = _batch(0)
    with pytest.raises(ValueError, match="without restored images"):
        save_attack_grid(plain, plain, {"FR": plain}, {"ITN": torch.ones(3)}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="one value per image"):
        save_attack_grid(plain, plain, {"FR": plain}, {"FR": torch.ones(2)}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="uint8"):
        make_grid_tensor(plain.float(), plain, {"FR": plain})
    assert not list(tmp_path.iterdir())
