"""Fixtures for the data tests: tiny image trees on disk, tar archives of them, a key file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.trees import make_tar, write_tree
from vitlearnenc.ciphers import generate_key, save_key

TreeWriter = Callable[..., dict[str, np.ndarray]]


@pytest.fixture
def tree_writer() -> TreeWriter:
    return write_tree


@pytest.fixture
def tar_maker() -> Callable[..., Path]:
    return make_tar


@pytest.fixture
def key_file(tmp_path: Path) -> Callable[..., Path]:
    """Factory: a seeded key file for ``(method, image_size, block_size)`` in ``tmp_path``."""

    def make(
        method: str = "proposed", image_size: int = 16, block_size: int = 4, seed: int = 1
    ) -> Path:
        key = generate_key(method, image_size, block_size, seed=seed)
        return save_key(key, tmp_path / f"{method}-{image_size}-{block_size}-{seed}.json")

    return make
