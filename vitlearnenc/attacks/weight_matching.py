"""Key recovery from a transformed ViT by matching its weights against the public ones.

Threat model: the provider holds the public pretrained weights the data owner started from and
the transformed model the data owner handed over (possibly fine-tuned since). It never holds
the key. The key-based transformation (:mod:`vitlearnenc.models.key_transform`) only permutes
the patch rows of ``pos_embed`` (by K1) and the input columns of the patch embedding (by the
patch-vector permutation σ built from K2), so each transformed row/column is a public one:

* K1: transformed ``pos_embed`` patch row i ≈ public row π(i);
* σ: transformed column j of ``patch_embed.proj.weight`` (D × C·M·M) ≈ public column σ(j);
* K2 (the proposed cipher's sub-block key): σ maps entry k of every sub-block (and, for
  channel-tied keys, of every channel) to entry ``pixel_perm[k]`` of the same sub-block, so the
  columns are pooled over sub-blocks (and channels) and matched once per key entry.

Fine-tuning moves the weights, so equality gives way to the nearest match; matching as an
optimal assignment (Hungarian, :func:`scipy.optimize.linear_sum_assignment`) on Euclidean
distances keeps the recovered maps permutations and uses the whole cost matrix rather than
row-wise nearest neighbours.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from vitlearnenc.ciphers.keys import CipherKey
from vitlearnenc.errors import InputError
from vitlearnenc.models.key_transform import (
    VitEmbeddingLayout,
    embedding_parameters,
    inspect_vit,
    patch_vector_permutation,
)


@dataclass(frozen=True, repr=False)
class WeightMatchResult:
    """Recovered key material and how clear each match was.

    All permutations are 0-based gathers in the key file's convention. Margins are per entry:
    Euclidean distance to the second-closest public candidate minus the distance to the
    assigned one (large = unambiguous; negative = the assignment overrode the nearest match).

    Attributes:
        block_perm: recovered K1, length N (transformed token i = public token ``block_perm[i]``).
        pixel_perm: recovered K2 in the key's form: length (M/2)² when ``channel_mix`` is False,
            C·(M/2)² (channel-major) when True.
        patch_perm: recovered σ over the C·M·M patch vector, matched column by column without
            assuming the cipher's structure.
        channel_mix: whether ``pixel_perm`` was recovered as a channel-mixing key.
        block_margin: (N,) margins of the ``pos_embed`` row matches.
        pixel_margin: margins of the pooled ``pixel_perm`` matches.
        patch_margin: (C·M·M,) margins of the column matches.
    """

    block_perm: np.ndarray
    pixel_perm: np.ndarray
    patch_perm: np.ndarray
    channel_mix: bool
    block_margin: np.ndarray
    pixel_margin: np.ndarray
    patch_margin: np.ndarray

    def __repr__(self) -> str:  # recovered key material stays out of logs
        return (
            f"WeightMatchResult(blocks={self.block_perm.size}, pixel_perm={self.pixel_perm.size}, "
            f"channel_mix={self.channel_mix}, min_block_margin={self.block_margin.min():.3g}, "
            f"min_pixel_margin={self.pixel_margin.min():.3g})"
        )


def _assign(transformed: torch.Tensor, public: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Optimal one-to-one matching of transformed rows to public rows.

    Args:
        transformed, public: (K, F) feature rows (float, any device).

    Returns:
        ``(perm, margin)``: transformed row i matched to public row ``perm[i]``, and its margin.
    """
    dist = torch.cdist(transformed.double().cpu(), public.double().cpu()).numpy()
    rows, perm = linear_sum_assignment(dist)
    perm = perm[np.argsort(rows)]
    assigned = dist[np.arange(dist.shape[0]), perm]
    others = dist.copy()
    others[np.arange(dist.shape[0]), perm] = np.inf
    return perm.astype(np.int64), others.min(axis=1) - assigned


def _embeddings(model: nn.Module, layout: VitEmbeddingLayout) -> tuple[torch.Tensor, torch.Tensor]:
    """Patch rows of ``pos_embed`` (N, D) and the patch-embedding weight (D, C, M, M)."""
    weight, pos_embed = embedding_parameters(model)
    return pos_embed.detach()[0, layout.prefix_rows :], weight.detach()


def _subblock_features(weight: torch.Tensor, channel_mix: bool) -> torch.Tensor:
    """Pool the patch-embedding columns of each K2 entry into one feature row.

    (D, C, M, M) -> ((M/2)², D·C·4) for channel-tied keys (entry = pixel of a sub-block) or
    (C·(M/2)², D·4) for channel-mixing keys (entry = channel-major value of a sub-block).
    """
    dim, channels, size, _ = weight.shape
    half = size // 2
    # (D, C, sub_row, r, sub_col, c) -> (D, sub-block, C, pixel)
    sub = weight.reshape(dim, channels, 2, half, 2, half).permute(0, 2, 4, 1, 3, 5)
    sub = sub.reshape(dim, 4, channels, half * half)
    if channel_mix:
        return sub.reshape(dim, 4, channels * half * half).permute(2, 0, 1).reshape(-1, dim * 4)
    return sub.permute(3, 0, 1, 2).reshape(half * half, -1)


def _keeps_channels(patch_perm: np.ndarray, channels: int) -> bool:
    """Whether most column matches stay in their own colour channel (a channel-tied key)."""
    per_channel = patch_perm.size // channels
    same = np.arange(patch_perm.size) // per_channel == patch_perm // per_channel
    return bool(same.mean() > 0.5)


def recover_key_from_weights(
    public: nn.Module,
    transformed: nn.Module,
    block_size: int | None = None,
    channel_mix: bool | None = None,
) -> WeightMatchResult:
    """Recover K1 and K2 of the proposed cipher from a transformed ViT and its public origin.

    Args:
        public: the public (pretrained) ViT the data owner started from.
        transformed: the model produced by the key-based transformation, possibly fine-tuned.
        block_size: the cipher's block size, if known; it must equal the patch size.
        channel_mix: the key's public ``channel_mix`` option; None infers it from whether the
            column matches keep their colour channel.

    Returns:
        The recovered permutations with per-entry margins.

    Raises:
        ValueError: the two models differ in their embedding layout, or ``block_size`` is not
            the patch size.
    """
    layout = inspect_vit(public)
    other = inspect_vit(transformed)
    if other != layout or any(
        a.shape != b.shape
        for a, b in zip(
            embedding_parameters(public), embedding_parameters(transformed), strict=True
        )
    ):
        raise InputError(
            f"the transformed model's embeddings ({other}) do not match the public model's "
            f"({layout}); compare a model with the public architecture it was derived from"
        )
    if block_size is not None and block_size != layout.patch_size:
        raise InputError(
            f"block size {block_size} differs from the models' patch size {layout.patch_size}; "
            "the transformation only exists for block size = patch size"
        )
    if layout.patch_size % 2:
        raise InputError(
            f"patch size {layout.patch_size} is odd; the proposed cipher needs even blocks"
        )
    public_pos, public_weight = _embeddings(public, layout)
    pos, weight = _embeddings(transformed, layout)
    block_perm, block_margin = _assign(pos, public_pos)
    dim = weight.shape[0]
    patch_perm, patch_margin = _assign(weight.reshape(dim, -1).T, public_weight.reshape(dim, -1).T)
    if channel_mix is None:
        channel_mix = not _keeps_channels(patch_perm, layout.channels)
    pixel_perm, pixel_margin = _assign(
        _subblock_features(weight, channel_mix), _subblock_features(public_weight, channel_mix)
    )
    return WeightMatchResult(
        block_perm, pixel_perm, patch_perm, channel_mix, block_margin, pixel_margin, patch_margin
    )


def key_recovery_rate(result: WeightMatchResult, key: CipherKey) -> dict[str, float | bool]:
    """Score a recovery against the true key (evaluation only; the attack never sees the key).

    Returns:
        ``{block_perm,pixel_perm,patch_perm}_rate``: fraction of entries recovered, and
        ``..._exact``: whether the whole permutation was. A ``pixel_perm`` recovered in the
        other channel mode than the key's scores 0.
    """
    channels = result.patch_perm.size // (key.block_size * key.block_size)
    truth = {
        "block_perm": key["block_perm"],
        "pixel_perm": key["pixel_perm"],
        "patch_perm": patch_vector_permutation(key, channels),
    }
    scores: dict[str, float | bool] = {}
    for name, true_perm in truth.items():
        guess = getattr(result, name)
        rate = float((guess == true_perm).mean()) if guess.shape == true_perm.shape else 0.0
        scores[f"{name}_rate"] = rate
        scores[f"{name}_exact"] = rate == 1.0
    return scores
