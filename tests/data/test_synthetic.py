"""Synthetic data: deterministic, balanced, and learnable after encryption."""

from __future__ import annotations

import torch

from vitlearnenc.data import SyntheticDataModule, make_synthetic_images


def test_deterministic_balanced_and_splits_differ():
    images, labels = make_synthetic_images(60, 6, 16, seed=0, split="train")
    again, labels_again = make_synthetic_images(60, 6, 16, seed=0, split="train")
    assert images.dtype == torch.uint8 and images.shape == (60, 3, 16, 16)
    torch.testing.assert_close(images, again)
    torch.testing.assert_close(labels, labels_again)
    assert torch.bincount(labels).tolist() == [10] * 6
    test, _ = make_synthetic_images(60, 6, 16, seed=0, split="test")
    other_seed, _ = make_synthetic_images(60, 6, 16, seed=1, split="train")
    assert not torch.equal(images, test) and not torch.equal(images, other_seed)


def test_a_linear_model_learns_encrypted_synthetic_images_in_a_few_steps():
    torch.manual_seed(0)
    dm = SyntheticDataModule(
        num_train=256, num_test=128, cipher="proposed", key_seed=0, val_fraction=0.0, num_workers=0
    )
    dm.setup("fit")
    dm.setup("test")
    train = dm.train_set.dataset
    x = dm.transform_batch(train.images, train=True).flatten(1)
    y = train.fields["label"]
    model = torch.nn.Linear(x.shape[1], 10)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(30):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    x_test = dm.transform_batch(dm.test_set.images, train=False).flatten(1)
    accuracy = (model(x_test).argmax(1) == dm.test_set.fields["label"]).float().mean().item()
    assert accuracy > 0.5  # chance is 0.1


def test_label_subset_keeps_and_renumbers_classes() -> None:
    full = SyntheticDataModule(
        num_classes=6, num_train=120, num_test=60, batch_size=8, num_workers=0
    )
    subset = SyntheticDataModule(
        num_classes=6, num_train=120, num_test=60, batch_size=8, num_workers=0, label_subset=[4, 1]
    )
    for dm in (full, subset):
        dm.setup("test")
    assert subset.num_classes == 2 and full.num_classes == 6
    full_labels = full.test_set.fields["label"]
    kept = (full_labels == 4) | (full_labels == 1)
    torch.testing.assert_close(subset.test_set.images, full.test_set.images[kept])
    expected = torch.where(full_labels[kept] == 4, 0, 1)
    torch.testing.assert_close(subset.test_set.fields["label"], expected)
