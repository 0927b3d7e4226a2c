"""The uint8 dict dataset, its batched fetch through DataLoader, and the train/val split."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from vitlearnenc.data.datasets import UInt8ImageDataset, collate_batch, split_train_val


def make_dataset(n: int = 20) -> UInt8ImageDataset:
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, 2, 2).contiguous()
    return UInt8ImageDataset(images, label=torch.arange(n) % 3)


def test_items_and_batches_are_dicts_of_the_right_rows():
    dataset = make_dataset()
    item = dataset[4]
    assert item["image"].dtype == torch.uint8 and item["image"].shape == (3, 2, 2)
    assert item["image"][0, 0, 0] == 4 and item["label"] == 1
    batch = dataset.__getitems__([5, 0, 7])
    torch.testing.assert_close(
        batch["image"][:, 0, 0, 0], torch.tensor([5, 0, 7], dtype=torch.uint8)
    )
    torch.testing.assert_close(batch["label"], torch.tensor([2, 0, 1]))


def test_loader_over_a_subset_stacks_uint8_batches():
    train, _ = split_train_val(make_dataset(), 0.25, seed=0)
    loader = DataLoader(train, batch_size=4, collate_fn=collate_batch)
    batches = list(loader)
    assert [b["image"].shape[0] for b in batches] == [4, 4, 4, 3]
    assert all(b["image"].dtype == torch.uint8 and b["label"].dtype == torch.int64 for b in batches)
    seen = torch.cat([b["image"][:, 0, 0, 0] for b in batches]).long()
    torch.testing.assert_close(seen, torch.as_tensor(train.indices))
    # per-item dicts from any other dataset still collate
    listed = collate_batch([{"image": torch.zeros(3, 2, 2)}, {"image": torch.ones(3, 2, 2)}])
    assert listed["image"].shape == (2, 3, 2, 2)


class _SharedFlagDataset(UInt8ImageDataset):
    """Adds, per batch, whether the worker built each field in shared memory."""

    def __getitems__(self, indices):  # type: ignore[no-untyped-def]
        batch = super().__getitems__(indices)
        flags = [batch[name].is_shared() for name in ("image", "label")]
        return {**batch, "built_shared": torch.tensor([flags])}


def test_worker_batches_are_built_in_shared_memory_with_the_right_rows():
    """In a loader worker the batch is written straight into shared memory (a heap buffer
    copied there and freed made each worker's private memory grow with the batches read)."""
    base = make_dataset()
    dataset = _SharedFlagDataset(base.images, **base.fields)
    loader = DataLoader(dataset, batch_size=6, num_workers=1, collate_fn=collate_batch)
    batches = list(loader)
    assert all(bool(b["built_shared"].all()) for b in batches)
    images = torch.cat([b["image"] for b in batches])
    torch.testing.assert_close(images, base.images)
    torch.testing.assert_close(torch.cat([b["label"] for b in batches]), base.fields["label"])
    in_process = dataset.__getitems__([3, 1])
    assert not in_process["built_shared"].any()


def test_split_is_disjoint_complete_and_deterministic():
    dataset = make_dataset(100)
    train, val = split_train_val(dataset, 0.1, seed=3)
    assert len(train) == 90 and len(val) == 10
    assert set(train.indices).isdisjoint(val.indices)
    assert sorted(train.indices + val.indices) == list(range(100))
    torch.manual_seed(123)  # the global seed must not matter
    again, val_again = split_train_val(dataset, 0.1, seed=3)
    assert again.indices == train.indices and val_again.indices == val.indices
    _, other = split_train_val(dataset, 0.1, seed=4)
    assert other.indices != val.indices


def test_split_edge_cases():
    dataset = make_dataset(10)
    train, val = split_train_val(dataset, 0.0, seed=0)
    assert val is None and len(train) == 10
    assert len(split_train_val(dataset, 0.01, seed=0)[1]) == 1  # a requested split is never empty
    with pytest.raises(ValueError, match="val_fraction"):
        split_train_val(make_dataset(1), 0.5, seed=0)


def test_dataset_rejects_non_uint8_and_ragged_fields():
    for images in (torch.zeros(2, 3, 4, 4, dtype=torch.float64), torch.zeros(2, 3, 4)):
        with pytest.raises(ValueError, match="uint8"):
            UInt8ImageDataset(images)
    # stored real-valued ciphertexts (orthomix .npy folders) keep their float dtype
    for dtype in (torch.float32, torch.float16):
        assert UInt8ImageDataset(torch.zeros(2, 3, 4, 4, dtype=dtype))[0]["image"].dtype == dtype
    with pytest.raises(ValueError, match="label"):
        UInt8ImageDataset(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), label=torch.zeros(3))
