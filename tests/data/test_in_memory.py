"""The in-memory path: per-rank augmentation streams, prepare_data in turn, the sample grid
without loader workers, and no cached full split behind a label subset."""

from __future__ import annotations

import gc
import multiprocessing
import time
import weakref
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from tests.helpers.trees import write_tree
from vitlearnenc.callbacks.samples import EncryptedSamplesCallback
from vitlearnenc.data import ImageFolderDataModule, SyntheticDataModule
from vitlearnenc.runs.train import prepare_data_in_turn


def _augmented(rank: int, batches: int = 2, seed: int = 5) -> list[torch.Tensor]:
    dm = SyntheticDataModule(num_train=32, num_test=8, batch_size=8, num_workers=0,
                             augment_seed=seed, crop_padding=4)  # fmt: skip
    dm.trainer = SimpleNamespace(training=True, global_rank=rank)  # type: ignore[assignment]
    images = torch.full((8, 3, 32, 32), 7, dtype=torch.uint8)
    images[:, :, 8:24, 8:24] = 200  # a square, so that every crop offset shows
    return [
        dm.on_after_batch_transfer({"image": images.clone()}, 0)["image"] for _ in range(batches)
    ]


def test_ranks_draw_different_augmentation_and_a_rerun_repeats_it() -> None:
    rank0, rank1 = _augmented(0), _augmented(1)
    assert not torch.equal(rank0[0], rank1[0])  # image i of each rank gets its own crop/flip
    assert not torch.equal(rank0[0], rank0[1])  # and the stream moves on per batch
    for a, b in zip(rank0, _augmented(0), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(_augmented(0, seed=6)[0], rank0[0])


def test_augmentation_stream_continues_from_the_checkpointed_count() -> None:
    dm = SyntheticDataModule(num_train=32, num_test=8, batch_size=8, augment_seed=5)
    dm.train_batches = 7
    resumed = SyntheticDataModule(num_train=32, num_test=8, batch_size=8, augment_seed=5)
    resumed.load_state_dict(dm.state_dict())
    assert resumed.train_batches == 7 and dm.state_dict() == {"train_batches": 7}
    a, b = dm.augmentation_generator(7), resumed.augmentation_generator(resumed.train_batches)
    assert torch.equal(torch.rand(4, generator=a), torch.rand(4, generator=b))


class _Downloads:
    """A DataModule stand-in whose prepare_data downloads (slowly) only what is missing."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def prepare_data(self) -> None:
        if not (self.folder / "data.bin").exists():
            with open(self.folder / "downloads.log", "a") as log:
                log.write("download\n")
            time.sleep(0.5)
            (self.folder / "data.bin").write_bytes(b"x")


def _rank(folder: Path) -> None:
    prepare_data_in_turn(_Downloads(folder), folder / "run")  # type: ignore[arg-type]


def test_ranks_prepare_data_in_turn_so_one_downloads(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    ranks = [context.Process(target=_rank, args=(tmp_path,)) for _ in range(3)]
    for process in ranks:
        process.start()
    for process in ranks:
        process.join(timeout=60)
        assert process.exitcode == 0
    assert (tmp_path / "downloads.log").read_text() == "download\n"


def test_sample_grid_reads_the_val_set_without_starting_loader_workers(tmp_path: Path) -> None:
    dm = SyntheticDataModule(num_train=64, num_test=8, batch_size=8, num_workers=2,
                             cipher="proposed", key_seed=0)  # fmt: skip
    dm.setup("fit")

    def no_loader() -> None:
        raise AssertionError("val_dataloader() would start persistent workers")

    dm.val_dataloader = no_loader  # type: ignore[method-assign]
    trainer = SimpleNamespace(datamodule=dm, default_root_dir=str(tmp_path), loggers=[])
    EncryptedSamplesCallback(num_images=3).on_fit_start(trainer, None)  # type: ignore[arg-type]
    assert (tmp_path / "samples.png").stat().st_size > 0


def test_label_subset_keeps_no_full_copy_of_the_split(tmp_path: Path) -> None:
    write_tree(tmp_path, {"train/ant": 4, "train/bee": 4, "train/cat": 4, "test/ant": 2})
    dm = ImageFolderDataModule(root=str(tmp_path), label_subset=[2, 0], val_fraction=0,
                               num_workers=0, block_size=4)  # fmt: skip
    full: list[weakref.ref] = []
    decode = dm._load_labelled

    def decode_and_watch() -> dict:
        splits = decode()
        full.append(weakref.ref(splits["train"]))
        return splits

    dm._load_labelled = decode_and_watch  # type: ignore[method-assign]
    dm.setup("fit")
    gc.collect()
    assert len(dm.train_set) == 8 and full[0]() is None  # the 12-image split is gone
    assert len(dm.load_split("train")) == 12  # asked again, it is decoded again


def test_headers_first_mixed_sizes_are_refused_before_any_decoding(tmp_path, monkeypatch):
    from vitlearnenc.data import imagestore

    write_tree(tmp_path, {"train/ant": 3})
    write_tree(tmp_path, {"train/bee": 1}, size=24, seed=1)
    decoded: list[object] = []
    monkeypatch.setattr(imagestore, "_decode", lambda job: decoded.append(job))
    with pytest.raises(imagestore.MixedSizesError, match=r"train/bee/000.png is 24x24 but"):
        imagestore.load_tree(tmp_path, ["train"])
    assert decoded == []


@pytest.mark.parametrize("archive", [False, True])
def test_load_tree_decodes_into_one_tensor_and_closes_up_failed_rows(tmp_path, archive):
    from tests.helpers.trees import make_tar
    from vitlearnenc.data.imagestore import decode_tree, load_tree

    written = write_tree(tmp_path / "src", {"train/ant": 3, "train/bee": 3})
    broken = tmp_path / "src/train/ant/001.png"  # its header reads, its pixels do not
    broken.write_bytes(broken.read_bytes()[:60])
    source = make_tar(tmp_path / "src", tmp_path / "src.tar.gz") if archive else tmp_path / "src"
    tree = load_tree(source, ["train"])["train"]
    expected = decode_tree(source, ["train"])["train"]
    kept = sorted(name.removeprefix("train/") for name in written if name != "train/ant/001.png")
    assert tree.names == expected.names == kept
    assert [name for name, _ in tree.failures] == ["ant/001.png"]
    assert tree.images.shape == (5, 3, 16, 16) and tree.images.is_contiguous()
    assert torch.equal(tree.images, torch.stack(expected.images))
