"""Figure grids of attack results in the manner of Qi et al.'s Fig. 4.

Rows are images; columns are the plain image, its ciphertext and one restoration per attack,
with the restoration's score (SSIM by default) printed under it. The same matplotlib figure is
saved as a PNG (:func:`save_attack_grid`) or rendered to a uint8 tensor for wandb/TensorBoard
(:func:`make_grid_tensor`), so logged and saved grids look alike. Figures are built with the
object-oriented API on an Agg canvas: no pyplot state, safe in workers and headless jobs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from vitlearnenc.attacks.scoring import check_image_batch
from vitlearnenc.errors import InputError


def save_attack_grid(
    plain: torch.Tensor,
    encrypted: torch.Tensor,
    restored: Mapping[str, torch.Tensor],
    scores: Mapping[str, torch.Tensor],
    path: str | Path,
    max_images: int = 8,
    score_name: str = "SSIM",
) -> Path:
    """Save a Fig. 4-style grid as a PNG.

    Args:
        plain: ``(B, C, H, W)`` uint8 plain images (C = 1 or 3).
        encrypted: ``(B, C', H', W')`` uint8 ciphertexts (grayscale EtC may differ in shape);
            real-valued ones (linear patch ciphers) are shown clamped to [0, 1].
        restored: attack name -> ``(B, C, H, W)`` uint8 restorations, one column each, in order.
        scores: attack name -> ``(B,)`` per-image scores printed under that attack's images
            (attacks without an entry get no label).
        path: output file; parent folders are created.
        max_images: rows shown (the first images of the batch).
        score_name: label printed before each score.

    Returns:
        The path of the written PNG.
    """
    figure = _attack_figure(plain, encrypted, restored, scores, max_images, score_name)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path


def make_grid_tensor(
    plain: torch.Tensor,
    encrypted: torch.Tensor,
    restored: Mapping[str, torch.Tensor],
    scores: Mapping[str, torch.Tensor] | None = None,
    max_images: int = 8,
    score_name: str = "SSIM",
) -> torch.Tensor:
    """The grid of :func:`save_attack_grid` as an image tensor, for loggers.

    Returns:
        ``(3, H, W)`` uint8 RGB on the CPU (``wandb.Image(t.permute(1, 2, 0).numpy())`` or
        TensorBoard's ``add_image(tag, t)``).
    """
    figure = _attack_figure(plain, encrypted, restored, scores or {}, max_images, score_name)
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    return torch.from_numpy(rgba[..., :3].copy()).permute(2, 0, 1).contiguous()


def _attack_figure(
    plain: torch.Tensor,
    encrypted: torch.Tensor,
    restored: Mapping[str, torch.Tensor],
    scores: Mapping[str, torch.Tensor],
    max_images: int,
    score_name: str,
) -> Figure:
    if encrypted.is_floating_point():  # real-valued ciphertexts (linear patch ciphers): shown
        encrypted = (encrypted.clamp(0, 1) * 255).round().to(torch.uint8)  # clamped to [0, 1]
    columns = {"plain": plain, "encrypted": encrypted, **restored}
    if len(columns) != 2 + len(restored):
        raise InputError("attack names 'plain' and 'encrypted' are reserved for the first columns")
    for name, images in columns.items():
        check_image_batch(images, name)
    unknown = set(scores) - set(restored)
    if unknown:
        raise InputError(f"scores given for attacks without restored images: {sorted(unknown)}")
    if max_images < 1:
        raise InputError(f"max_images must be positive, got {max_images}")
    rows = min([max_images] + [len(images) for images in columns.values()])
    for name, values in scores.items():
        if values.ndim != 1 or len(values) < rows:
            raise InputError(f"scores[{name!r}] must be a 1-D tensor with one value per image")

    cell = 1.3  # inches per image
    figure = Figure(figsize=(cell * len(columns), cell * rows + 0.4), dpi=100, layout="constrained")
    axes = figure.subplots(rows, len(columns), squeeze=False)
    for col, (name, images) in enumerate(columns.items()):
        axes[0, col].set_title(name, fontsize=8)
        for row in range(rows):
            axis = axes[row, col]
            image = images[row].detach().cpu()
            if image.shape[0] == 1:
                axis.imshow(
                    image[0].numpy(), cmap="gray", vmin=0, vmax=255, interpolation="nearest"
                )
            else:
                axis.imshow(image.permute(1, 2, 0).numpy(), interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
            if name in scores:
                axis.set_xlabel(f"{score_name} {float(scores[name][row]):.3f}", fontsize=7)
    return figure
