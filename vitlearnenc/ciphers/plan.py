"""The value map of one key: :class:`GatherPlan`.

It lives in its own module so that :mod:`~vitlearnenc.ciphers.base` (which builds plans) and
:mod:`~vitlearnenc.ciphers.fastpath` (which compiles them into kernels) both import it and
neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GatherPlan:
    """One key's transform as a gather over flattened values plus a negation mask.

    ``out.flatten(1)[:, j] = in.flatten(1)[:, index[j]]``, then values where ``negate[j]`` are
    mapped ``v -> max - v``. ``spatial`` plans index H*W pixel positions and act on every channel
    alike; otherwise they index the C*H*W values.
    """

    index: np.ndarray
    negate: np.ndarray | None
    spatial: bool

    def __post_init__(self) -> None:
        if self.spatial and self.negate is not None:
            # a spatial plan acts on every channel alike; a per-value mask needs a value plan
            raise ValueError(
                "a spatial GatherPlan cannot carry a negation mask; index C*H*W values"
            )

    def inverse(self) -> GatherPlan:
        """The plan of the inverse transform: gather by ``argsort(index)``, negation moved along."""
        inverse_index = np.argsort(self.index, kind="stable")
        negate = None if self.negate is None else self.negate[inverse_index]
        return GatherPlan(inverse_index, negate, self.spatial)
