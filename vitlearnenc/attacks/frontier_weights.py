"""Weight matching against the linear patch ciphers: public weights + key-adapted weights -> key.

``model.key_adapt=true`` turns the public patch embedding E (D x L) into ``Ê = E S⁻¹ Aᵀ S``
(:func:`vitlearnenc.models.key_transform.transform_vit`; S = I for the project's 0.5/0.5
normalisation) and permutes the ``pos_embed`` rows by K1. So ``E = Ê A`` is a linear system in A
with D equations per column: whenever D >= L and Ê has full column rank (any trained or random
embedding: ViT-B/16 has D = L = 768, vit_mini D = 128 > L = 48) least squares gives A **exactly**
(to float rounding) from the untouched transformed model; K1 comes from the ``pos_embed`` rows as
for the proposed cipher. After fine-tuning, both are estimates. Expected outcome: the key-adapted
weights are the key.
"""

from __future__ import annotations

import numpy as np
from torch import nn

from vitlearnenc.attacks.frontier_common import nearest_orthogonal
from vitlearnenc.attacks.weight_matching import _assign
from vitlearnenc.models.key_transform import embedding_parameters, inspect_vit


def recover_linear_key_from_weights(
    public: nn.Module, transformed: nn.Module
) -> tuple[np.ndarray, np.ndarray]:
    """``(matrix, block_perm)``: A (``(L, L)`` float64, snapped to orthogonal) and K1.

    Raises:
        ValueError: the models' embeddings differ in layout, or D < L (A is then not
            determined by the patch embedding alone).
    """
    layout = inspect_vit(public)
    if inspect_vit(transformed) != layout:
        raise ValueError("the transformed model's embedding layout differs from the public one")
    public_weight, public_pos = embedding_parameters(public)
    weight, pos = embedding_parameters(transformed)
    dim = public_weight.shape[0]
    public_flat = public_weight.detach().reshape(dim, -1).double().cpu().numpy()
    flat = weight.detach().reshape(dim, -1).double().cpu().numpy()
    if dim < flat.shape[1]:
        raise ValueError(
            f"embedding width {dim} < patch length {flat.shape[1]}: the patch embedding does not "
            "determine A on its own"
        )
    solution, *_ = np.linalg.lstsq(flat, public_flat, rcond=None)  # E = Ê A
    rows = layout.prefix_rows
    block_perm, _ = _assign(pos.detach()[0, rows:], public_pos.detach()[0, rows:])
    return nearest_orthogonal(solution), block_perm
