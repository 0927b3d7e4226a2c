"""Seam statistics pooled over a corpus: the evidence every population block puzzle uses.

With one key, encrypted block position i holds the same plain block position (seen through the
same per-block transform) in every ciphertext. A seam cost summed over the corpus therefore
scores a *key* hypothesis, not one image's, and grows sharper with every ciphertext.

The seam cost is the squared error of a linear prediction across the seam (each side's edge
extrapolated one pixel, ``2 * edge - inner``, against the other side's edge), both ways, the
pooled analogue of Gallagher's gradient compatibility. On values centred at 127.5 it is a
quadratic form, so the corpus is summarised by Gram matrices between the edge lines of all
blocks, sides and channels (accumulated chunk by chunk, memory fixed in N):

- ``gram[x, y, rho] = sum_n sum_k pred_x[k] * edge_y[k or M-1-k]`` (``rho`` = read reversed),
- ``pred_sq[x]``, ``edge_sq[x]``: the sums of squares,

where ``x = (block, side, channel)`` and sides are right, bottom, left, top, columns read top to
bottom and rows left to right. Negating a block (EtC's NP) flips the sign of its centred values,
so every rotation/flip, NP and colour order of a block is a re-indexing of the same statistics.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vitlearnenc.attacks.population.corpus import Corpus
from vitlearnenc.errors import InputError

_CENTRE = 127.5
#: directions / sides: right, down (bottom), left, up (top)
RIGHT, DOWN, LEFT, UP = range(4)
OPPOSITE = np.array([LEFT, UP, RIGHT, DOWN])


@dataclass(frozen=True, repr=False, eq=False)
class EdgeStats:
    """Pooled seam statistics of a corpus (see the module docstring).

    Attributes:
        gram: ``(K, K, 2)`` float64, K = blocks * 4 sides * channels.
        pred_sq: ``(K,)`` sums of squared predictions; ``edge_sq``: of squared edges.
        samples: images x M, the number of terms behind every entry.
        grid: (rows, cols) of the block grid; ``channels``; ``block_size``.
    """

    gram: np.ndarray
    pred_sq: np.ndarray
    edge_sq: np.ndarray
    samples: int
    grid: tuple[int, int]
    channels: int
    block_size: int

    @property
    def num_blocks(self) -> int:
        return self.grid[0] * self.grid[1]

    def index(self, block: np.ndarray, side: np.ndarray, channel: np.ndarray) -> np.ndarray:
        """Row of (block, side, channel) in the statistics (broadcasting)."""
        return (block * 4 + side) * self.channels + channel

    def seam_cost(
        self, x: np.ndarray, y: np.ndarray, reversed_: np.ndarray, sign: np.ndarray
    ) -> np.ndarray:
        """Mean per-pixel cost of the seam between edge lines ``x`` and ``y`` (indices from
        :meth:`index`, summed over the last axis = channels), ``y`` read reversed where
        ``reversed_``, one side negated where ``sign`` is -1 (both broadcast over channels)."""
        rho = np.asarray(reversed_, dtype=np.int64)[..., None]
        cross = self.gram[x, y, rho] + self.gram[y, x, rho]
        total = (
            self.pred_sq[x] + self.edge_sq[y] + self.pred_sq[y] + self.edge_sq[x]
            - 2.0 * np.asarray(sign)[..., None] * cross
        )  # fmt: skip
        return total.sum(axis=-1) / (self.samples * self.channels)

    def fixed_orientation_costs(self) -> np.ndarray:
        """``(4, N, N)``: cost of block j right of / below / left of / above block i, blocks
        unrotated (the proposed cipher after K2 is undone); ``inf`` on the diagonal."""
        count, channels = self.num_blocks, np.arange(self.channels)
        blocks = np.arange(count)
        i, j = blocks[:, None, None], blocks[None, :, None]
        right = self.seam_cost(self.index(i, RIGHT, channels), self.index(j, LEFT, channels), 0, 1)
        down = self.seam_cost(self.index(i, DOWN, channels), self.index(j, UP, channels), 0, 1)
        costs = np.stack([right, down, right.T, down.T])
        costs[:, blocks, blocks] = np.inf
        return costs


def accumulate_edge_stats(corpus: Corpus, block_size: int) -> EdgeStats:
    """One pass over ``corpus`` (``(B, C, H, W)`` uint8 chunks) into :class:`EdgeStats`.

    Cost per chunk: two ``(K, B*M) @ (B*M, K)`` products (float32 per chunk, float64 sums).
    """
    channels, height, width = corpus.image_shape
    grid = (height // block_size, width // block_size)
    if block_size < 2 or height % block_size or width % block_size:
        raise InputError(
            f"block size {block_size} must be at least 2 and divide the image size {height}x{width}"
        )
    rows = grid[0] * grid[1] * 4 * channels
    gram = torch.zeros(rows, rows, 2, dtype=torch.float64)
    pred_sq = torch.zeros(rows, dtype=torch.float64)
    edge_sq = torch.zeros(rows, dtype=torch.float64)
    samples = 0
    for chunk in corpus:
        edge, pred = edge_lines(chunk.cpu(), block_size)  # (B, K, M) each
        batch = chunk.shape[0]
        edges = edge.permute(1, 0, 2).reshape(rows, -1)
        preds = pred.permute(1, 0, 2).reshape(rows, -1)
        gram[..., 0] += (preds @ edges.T).double()
        gram[..., 1] += (preds @ edge.flip(-1).permute(1, 0, 2).reshape(rows, -1).T).double()
        pred_sq += (preds.double() ** 2).sum(1)
        edge_sq += (edges.double() ** 2).sum(1)
        samples += batch * block_size
    return EdgeStats(
        gram.numpy(), pred_sq.numpy(), edge_sq.numpy(), samples, grid, channels, block_size
    )


def edge_lines(images: torch.Tensor, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Centred edge lines and their outward predictions of every block side and channel.

    Args:
        images: ``(B, C, H, W)`` uint8.

    Returns:
        ``edge`` and ``pred``, ``(B, K, M)`` float32 with K ordered (block, side, channel):
        sides right, bottom, left, top; columns top to bottom, rows left to right.
    """
    batch, channels, height, width = images.shape
    grid_h, grid_w = height // block_size, width // block_size
    values = images.float() - _CENTRE
    blocks = values.reshape(batch, channels, grid_h, block_size, grid_w, block_size)
    blocks = blocks.permute(0, 2, 4, 1, 3, 5).reshape(
        batch, grid_h * grid_w, channels, block_size, block_size
    )
    edge = torch.stack(
        [blocks[..., :, -1], blocks[..., -1, :], blocks[..., :, 0], blocks[..., 0, :]], dim=2
    )
    inner = torch.stack(
        [blocks[..., :, -2], blocks[..., -2, :], blocks[..., :, 1], blocks[..., 1, :]], dim=2
    )
    shape = (batch, grid_h * grid_w * 4 * channels, block_size)
    return edge.reshape(shape), (2 * edge - inner).reshape(shape)
