"""CIFAR through torchvision: arrays to uint8 tensors, and a clear error offline."""

from __future__ import annotations

import pickle
from urllib.error import URLError

import numpy as np
import pytest
import torch
import torchvision.datasets.cifar as tv_cifar

from vitlearnenc.data import CIFARDataModule, DatasetNotFoundError


@pytest.fixture
def offline(monkeypatch):
    """Any download attempt fails as it does without a network."""

    def fail(*args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", fail)


def fake_cifar10(root, monkeypatch, per_batch: int = 2) -> np.ndarray:
    """torchvision's CIFAR-10 layout with a few images per file; checksums are not checked."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=per_batch).tolist()
        with open(folder / name, "wb") as handle:
            pickle.dump({"data": data, "labels": labels}, handle)
        rows.append((data, labels))
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, handle)
    monkeypatch.setattr(tv_cifar.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *args, **kwargs: True)
    return rows


def test_offline_without_data_says_how_to_point_to_a_copy(tmp_path, offline):
    dm = CIFARDataModule(name="cifar10", root=str(tmp_path), num_workers=0)
    with pytest.raises(DatasetNotFoundError) as error:
        dm.prepare_data()
    message = str(error.value)
    assert f"CIFAR-10 not found under {tmp_path} and download failed (offline?)" in message
    assert "set data.root to a folder holding cifar-10-batches-py" in message
    assert "data=cifar10_folder data.root=../shared/data/cifar10-jpeg.tar.gz" in message
    with pytest.raises(DatasetNotFoundError, match="CIFAR-10 not found"):
        dm.setup("fit")  # setup never downloads; same advice


def test_cifar100_offline_and_download_off(tmp_path, offline):
    dm = CIFARDataModule(name="cifar100", root=str(tmp_path), num_workers=0)
    with pytest.raises(
        DatasetNotFoundError, match="CIFAR-100 not found .* holding cifar-100-python"
    ):
        dm.prepare_data()
    quiet = CIFARDataModule(name="cifar100", root=str(tmp_path), download=False, num_workers=0)
    with pytest.raises(DatasetNotFoundError, match="data.download is false"):
        quiet.prepare_data()


def test_arrays_become_nchw_uint8_with_labels(tmp_path, monkeypatch):
    rows = fake_cifar10(tmp_path, monkeypatch)
    dm = CIFARDataModule(root=str(tmp_path), download=False, num_workers=0, val_fraction=0.0)
    dm.prepare_data()
    dm.setup("fit")
    dm.setup("test")
    train = dm.train_set.dataset
    assert train.images.shape == (10, 3, 32, 32) and train.images.dtype == torch.uint8
    first = torch.from_numpy(rows[0][0][0]).view(3, 32, 32)  # CIFAR rows are channel-major
    torch.testing.assert_close(train.images[0], first)
    torch.testing.assert_close(dm.test_set.fields["label"], torch.tensor(rows[5][1]))
    assert dm.num_classes == 10


def test_unknown_variant():
    with pytest.raises(ValueError, match="cifar10"):
        CIFARDataModule(name="cifar1000")
