"""Image folders and archives: layout, labels, sizes, corrupt files, prediction inputs."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from vitlearnenc.data import DatasetNotFoundError, ImageFolderDataModule, PredictFolderDataModule

LAYOUT = {"train/cat": 3, "train/ant": 2, "train/dog": 4, "test/cat": 1, "test/ant": 2}


def folder_dm(root, **kwargs) -> ImageFolderDataModule:
    options = dict(batch_size=4, num_workers=0, val_fraction=0.0, block_size=4)
    options.update(kwargs)
    return ImageFolderDataModule(root=str(root), **options)


def stored(written, split):
    """The written images and labels of a split in the module's order (sorted paths)."""
    names = sorted(name for name in written if name.startswith(f"{split}/"))
    classes = ["ant", "cat", "dog"]
    images = torch.stack([torch.from_numpy(written[n]).permute(2, 0, 1) for n in names])
    labels = torch.tensor([classes.index(n.split("/")[1]) for n in names])
    return images, labels


@pytest.mark.parametrize("source", ["folder", "tar", "tar.gz", "wrapped tar.gz"])
def test_reads_folders_and_archives_alike(tmp_path, tree_writer, tar_maker, source):
    written = tree_writer(tmp_path / "data", LAYOUT)
    root = tmp_path / "data"
    if source != "folder":
        wrapper = "cifar" if source.startswith("wrapped") else None
        root = tar_maker(root, tmp_path / f"data.{source.split()[-1]}", wrapper=wrapper)
    dm = folder_dm(root)
    dm.setup("fit")
    dm.setup("test")
    assert dm.classes == ["ant", "cat", "dog"] and dm.num_classes == 3
    for split, dataset in (("train", dm.train_set.dataset), ("test", dm.test_set)):
        images, labels = stored(written, split)
        torch.testing.assert_close(dataset.images, images)
        torch.testing.assert_close(dataset.fields["label"], labels)


def test_train_val_split_of_a_folder_is_seeded(tmp_path, tree_writer):
    tree_writer(tmp_path, {"train/a": 10, "train/b": 10, "test/a": 1})
    first = folder_dm(tmp_path, val_fraction=0.25, split_seed=1)
    first.setup("fit")
    again = folder_dm(tmp_path, val_fraction=0.25, split_seed=1)
    again.setup("fit")
    assert len(first.val_set) == 5 and first.val_set.indices == again.val_set.indices


def test_corrupt_and_stray_files_are_skipped_with_one_warning_each(tmp_path, tree_writer, caplog):
    tree_writer(tmp_path, {"train/a": 2, "train/b": 2, "test/a": 1})
    for name in ("train/a/bad1.jpg", "train/b/bad2.png"):
        (tmp_path / name).write_bytes(b"not an image")
    (tmp_path / "train/b/notes.txt").write_text("ignored: not an image extension")
    (tmp_path / "train/.hidden.png").write_bytes(b"hidden files are not considered")
    tree_writer(tmp_path, {"train": 1}, seed=3)  # an image outside any class folder
    dm = folder_dm(tmp_path)
    with caplog.at_level(logging.WARNING, logger="vitlearnenc.data"):
        dm.setup("fit")
    assert len(dm.train_set) == 4
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "skipped 2 of 7 image files" in warnings[0] and "a/bad1.jpg" in warnings[0]
    assert "ignored 1 image files lying directly in" in warnings[1]


def test_a_class_with_only_corrupt_files_keeps_its_label(tmp_path, tree_writer):
    tree_writer(tmp_path, {"train/b": 2, "train/c": 2, "test/c": 1})
    (tmp_path / "train/a").mkdir()
    (tmp_path / "train/a/bad.png").write_bytes(b"corrupt")
    dm = folder_dm(tmp_path)
    dm.setup("fit")
    assert dm.classes == ["a", "b", "c"]
    assert dm.train_set.dataset.fields["label"].tolist() == [1, 1, 2, 2]


def test_mixed_sizes_name_the_file(tmp_path, tree_writer):
    tree_writer(tmp_path, {"train/a": 2, "test/a": 1}, size=16)
    tree_writer(tmp_path, {"train/b": 1}, size=(16, 20), seed=1)
    with pytest.raises(
        ValueError, match=r"train/b/000\.png is 16x20 but .*train/a/000\.png is 16x16"
    ):
        folder_dm(tmp_path).setup("fit")


def test_test_split_of_another_size_is_refused_without_resize(tmp_path, tree_writer):
    tree_writer(tmp_path, {"train/a": 2}, size=16)
    tree_writer(tmp_path, {"test/a": 1}, size=8, seed=1)
    with pytest.raises(ValueError, match="test images reach the cipher as 8x8"):
        folder_dm(tmp_path).setup("fit")
    both = folder_dm(tmp_path, image_size=32)  # a resize target makes both fit
    both.setup("fit")
    both.setup("test")
    assert both.test_set.image_size == (8, 8)


def test_layout_errors_are_clear(tmp_path, tree_writer):
    with pytest.raises(DatasetNotFoundError, match="does not exist; set data.root"):
        folder_dm(tmp_path / "missing").setup("fit")
    tree_writer(tmp_path / "flat", {"": 2})
    with pytest.raises(FileNotFoundError, match="no readable image files"):
        folder_dm(tmp_path / "flat").setup("fit")
    tree_writer(tmp_path / "extra", {"train/a": 2, "test/a": 1, "test/zebra": 1})
    with pytest.raises(ValueError, match="zebra is not a class of the training split"):
        folder_dm(tmp_path / "extra").setup("fit")
    tree_writer(tmp_path / "notest", {"train/a": 2})
    dm = folder_dm(tmp_path / "notest")
    dm.setup("fit")
    with pytest.raises(DatasetNotFoundError, match="notest/test"):
        dm.setup("test")


def test_predict_folder_yields_images_indices_and_files(tmp_path, tree_writer):
    written = tree_writer(tmp_path / "inbox", {"": 2, "day1": 2, "day2/x": 1})
    dm = PredictFolderDataModule(root=str(tmp_path / "inbox"), batch_size=4, num_workers=0)
    dm.setup("predict")
    batches = list(dm.predict_dataloader())
    assert [set(b) for b in batches] == [{"image", "index"}] * 2
    assert dm.predict_files == [
        "000.png",
        "001.png",
        "day1/000.png",
        "day1/001.png",
        "day2/x/000.png",
    ]
    indices = torch.cat([b["index"] for b in batches])
    images = torch.cat([b["image"] for b in batches])
    for index, image in zip(indices.tolist(), images, strict=True):
        expected = written[dm.predict_files[index]]
        torch.testing.assert_close(image, torch.from_numpy(expected).permute(2, 0, 1))
    with pytest.raises(RuntimeError, match="no labelled splits"):
        dm.setup("fit")


def test_predict_inputs_of_mixed_sizes_are_resized_on_load_only_with_a_target(
    tmp_path, tree_writer
):
    tree_writer(tmp_path, {"a": 1}, size=16)
    tree_writer(tmp_path, {"b": 1}, size=24, seed=1)
    dm = PredictFolderDataModule(root=str(tmp_path), image_size=32, batch_size=2, num_workers=0)
    dm.setup("predict")
    assert dm.predict_set.image_size == (32, 32)
    with pytest.raises(ValueError, match="b/000.png is 24x24"):
        PredictFolderDataModule(root=str(tmp_path), batch_size=2, num_workers=0).setup("predict")


def test_folder_predict_dir_beside_the_labelled_data(tmp_path, tree_writer):
    tree_writer(tmp_path / "data", {"train/a": 2, "test/a": 1})
    tree_writer(tmp_path / "new", {"": 3})
    dm = folder_dm(tmp_path / "data", predict_dir=str(tmp_path / "new"))
    dm.setup("predict")
    assert len(dm.predict_set) == 3 and dm.predict_files == ["000.png", "001.png", "002.png"]
    with pytest.raises(ValueError, match="predict_dir is not set"):
        folder_dm(tmp_path / "data").setup("predict")


@pytest.mark.data
@pytest.mark.slow
def test_real_cifar10_archive(cifar10_jpeg):
    dm = ImageFolderDataModule(root=str(cifar10_jpeg), num_workers=0, block_size=4)
    dm.setup("fit")
    dm.setup("test")
    full = dm.train_set.dataset
    assert len(full) == 50000 and len(dm.test_set) == 10000
    assert len(dm.train_set) == 45000 and len(dm.val_set) == 5000
    assert dm.num_classes == 10 and dm.classes[0] == "airplane" and dm.classes[-1] == "truck"
    assert full.images.shape == (50000, 3, 32, 32) and full.images.dtype == torch.uint8
    assert torch.bincount(full.fields["label"]).tolist() == [5000] * 10
    assert torch.bincount(dm.test_set.fields["label"]).tolist() == [1000] * 10
    assert 0.3 < full.images[:1000].float().mean().item() / 255 < 0.7  # real photos, not blank
    assert np.unique(full.images[:100].numpy()).size > 200
