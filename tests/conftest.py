"""Shared fixtures: the real CIFAR-10 JPEG copy (skipped cleanly when absent) and CUDA marks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
CIFAR10_JPEG = Path(
    os.environ.get(
        "VITLEARNENC_CIFAR10_JPEG", REPO_ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
    )
)


@pytest.fixture(scope="session")
def cifar10_jpeg() -> Path:
    """Path of the real CIFAR-10 JPEG archive; skips the test when it is not on this machine."""
    if not CIFAR10_JPEG.exists():
        if os.environ.get("VITLEARNENC_REQUIRE_DATA") == "1":  # set by .ci/run: fail, not skip
            pytest.fail(f"real CIFAR-10 copy not found at {CIFAR10_JPEG} (CI requires it)")
        pytest.skip(
            f"real CIFAR-10 copy not found at {CIFAR10_JPEG} (set VITLEARNENC_CIFAR10_JPEG)"
        )
    return CIFAR10_JPEG


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests marked ``gpu`` where CUDA is absent."""
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip_gpu)
