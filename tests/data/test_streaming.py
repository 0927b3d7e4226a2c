"""``data=streaming``: packed shards give the in-memory batches; bad shards are refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from tests.helpers.hydra import composed
from tests.helpers.trees import write_tree
from vitlearnenc.ciphers import generate_key, save_key
from vitlearnenc.cli.encrypt import main_encrypt
from vitlearnenc.cli.pack import main as pack_main
from vitlearnenc.cli.train import train
from vitlearnenc.data import ImageFolderDataModule, StreamingDataModule
from vitlearnenc.data.shards import METADATA_NAME, ShardMetadataError
from vitlearnenc.data.streaming import collate_items
from vitlearnenc.runs.build import build_datamodule

LAYOUT = {"train/ant": 6, "train/bee": 6, "test/ant": 5, "test/bee": 4}
COMMON = {"batch_size": 4, "num_workers": 0, "augment": False}


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Plain 16 px images; a 32 px block-8 key; its shards, plain shards and the
    ``vitlearnenc-encrypt --resize 32`` folder of the same images."""
    root = tmp_path_factory.mktemp("packed")
    write_tree(root / "src", LAYOUT, size=16, suffix=".jpg")
    key = save_key(generate_key("proposed", 32, 8, seed=7), root / "owner.key")
    src = str(root / "src")
    encrypted = ["--key", str(key), "--resize", "32", "--no-shuffle", "--quiet"]
    assert pack_main([*encrypted, "--val-fraction", "0.25", src, str(root / "enc")]) == 0
    assert (
        pack_main(["--cipher", "plain", "--no-shuffle", "--quiet", src, str(root / "plain")]) == 0
    )
    assert (
        main_encrypt(["--key", str(key), "--resize", "32", "--quiet", src, str(root / "folder")])
        == 0
    )
    return {"root": root, "key": key, "enc": root / "enc", "plain": root / "plain",
            "folder": root / "folder", "src": root / "src"}  # fmt: skip


def _pipeline_batches(dm, loader) -> list[dict[str, torch.Tensor]]:
    return [dm.on_after_batch_transfer(dict(batch), 0) for batch in loader]


def _assert_same_batches(a, b) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x["image"], y["image"]) and torch.equal(x["label"], y["label"])


def test_encrypted_shards_give_the_pre_encrypted_folder_batches(packed) -> None:
    """Bit for bit: cipher=pre_encrypted over the shards equals cipher=pre_encrypted over the
    vitlearnenc-encrypt folder (shuffle off; test split, and the whole train+val set)."""
    stream = StreamingDataModule(
        root=str(packed["enc"]), cipher="pre_encrypted", block_size=8, **COMMON
    )
    memory = ImageFolderDataModule(
        root=str(packed["folder"]), cipher="pre_encrypted", block_size=8, val_fraction=0, **COMMON
    )
    stream.setup("test")
    memory.setup("test")
    _assert_same_batches(
        _pipeline_batches(stream, stream.test_dataloader()),
        _pipeline_batches(memory, memory.test_dataloader()),
    )
    stream.setup("fit")
    train = memory.load_split("train")
    streamed = {}
    for split in ("train", "val"):
        dataset = getattr(stream, f"{split}_set")
        dataset.set_shuffle(False)
        for i in range(len(dataset)):
            item = dataset[i]
            streamed[item["name"]] = (item["image"], item["label"])
    assert len(streamed) == len(train) == 12
    names = sorted(streamed)  # the folder module's order
    assert torch.equal(torch.stack([streamed[n][0] for n in names]), train.images)
    assert [streamed[n][1] for n in names] == train.fields["label"].tolist()
    assert stream.class_names == memory.class_names == ["ant", "bee"]


def test_plain_shards_with_on_device_encryption_match_the_folder_module(packed) -> None:
    kwargs = {**COMMON, "cipher": "proposed", "block_size": 8, "key_file": str(packed["key"]),
              "image_size": 32}  # fmt: skip
    stream = StreamingDataModule(root=str(packed["plain"]), **kwargs)
    memory = ImageFolderDataModule(root=str(packed["src"]), val_fraction=0, **kwargs)
    stream.setup("test")
    memory.setup("test")
    _assert_same_batches(
        _pipeline_batches(stream, stream.test_dataloader()),
        _pipeline_batches(memory, memory.test_dataloader()),
    )


@pytest.mark.parametrize(
    ("shards", "config", "message"),
    [
        ("enc", {"cipher": "proposed", "key_seed": 1}, "use cipher=pre_encrypted"),
        ("enc", {"cipher": "plain"}, "use cipher=pre_encrypted"),
        ("plain", {"cipher": "pre_encrypted"}, "would train on them unencrypted"),
        ("enc", {"cipher": "pre_encrypted", "block_size": 4}, "block size 8"),
        ("enc", {"cipher": "pre_encrypted", "image_size": 64}, "resizing a ciphertext"),
        ("enc", {"cipher": "pre_encrypted", "key_fingerprint": "0123456789ab"}, "not the expected"),
    ],
)
def test_metadata_that_disagrees_with_the_config_is_refused(packed, shards, config, message):
    kwargs = {**COMMON, "block_size": 8, **config}
    dm = StreamingDataModule(root=str(packed[shards]), **kwargs)
    with pytest.raises(ShardMetadataError, match=message) as error:
        dm.setup("fit")
    assert "\n" not in str(error.value)


def test_matching_fingerprint_is_accepted(packed) -> None:
    fingerprint = json.loads((packed["enc"] / METADATA_NAME).read_text())["key_fingerprint"]
    dm = StreamingDataModule(
        root=str(packed["enc"]),
        cipher="pre_encrypted",
        block_size=8,
        key_fingerprint=fingerprint,
        **COMMON,
    )
    dm.setup("fit")
    # training drops the last partial batch (9 images, batches of 4)
    assert sum(len(b["label"]) for b in dm.train_dataloader()) == 8


@pytest.mark.parametrize("damage", ["missing_chunk", "truncated_chunk", "no_metadata"])
def test_damaged_shards_fail_before_the_first_batch(packed, tmp_path: Path, damage: str) -> None:
    copy = tmp_path / "shards"
    shutil.copytree(packed["enc"], copy)
    chunk = sorted((copy / "train").glob("chunk-*.bin"))[0]
    if damage == "missing_chunk":
        chunk.unlink()
    elif damage == "truncated_chunk":
        chunk.write_bytes(chunk.read_bytes()[:-10])
    else:
        (copy / METADATA_NAME).unlink()
    dm = StreamingDataModule(root=str(copy), cipher="pre_encrypted", block_size=8, **COMMON)
    expected = {"missing_chunk": "is missing", "truncated_chunk": "is truncated",
                "no_metadata": "not a finished vitlearnenc-pack output"}  # fmt: skip
    with pytest.raises(ShardMetadataError, match=expected[damage]) as error:
        dm.setup("fit")
    assert "\n" not in str(error.value)


def _collate_and_report_sharing(items: list) -> dict:
    batch = collate_items(items)
    return batch | {"built_in_shared_memory": batch["image"].is_shared()}


def test_workers_build_batches_in_shared_memory(packed) -> None:
    """In a loader worker the batch is stacked straight into shared memory (no batch-sized
    heap buffer per batch, which grew the workers' memory with N), with the same content as
    a collate in the main process."""
    from litdata import StreamingDataLoader, StreamingDataset

    dataset = StreamingDataset(str(packed["enc"] / "test"))
    loader = StreamingDataLoader(
        dataset, batch_size=4, num_workers=1, collate_fn=_collate_and_report_sharing
    )
    batches = list(loader)
    assert batches and all(b["built_in_shared_memory"] for b in batches)
    inline = collate_items([dataset[i] for i in range(4)])
    assert inline["image"].dtype == torch.uint8 and inline["label"].dtype == torch.int64
    assert torch.equal(batches[0]["image"], inline["image"])
    assert batches[0]["name"] == inline["name"] and torch.equal(
        batches[0]["label"], inline["label"]
    )


def test_data_set_up_before_ddp_starts_streams_only_its_ranks_share(
    packed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """vitlearnenc-train sets the data up before the Trainer starts DDP; the loaders, made
    after, must see the rank's share (before the fix rank 0 streamed every image, its epoch
    was longer than rank 1's and trainer=ddp hung at the first epoch end)."""
    kwargs = {**COMMON, "batch_size": 2, "cipher": "plain", "block_size": 4}
    dm = StreamingDataModule(root=str(packed["plain"]), **kwargs)
    dm.setup("fit")  # one process, no DDP yet
    alone = [n for batch in dm.train_dataloader() for n in batch["name"]]
    assert len(alone) == 12
    seen = []
    for rank in (0, 1):  # litdata reads the world from these when torch.distributed is not up
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("GLOBAL_RANK", str(rank))
        loader = dm.train_dataloader()
        seen.append([n for batch in loader for n in batch["name"]])
        assert len(seen[-1]) == len(loader) * 2 == 6
    assert set(seen[0]).isdisjoint(seen[1]) and set(seen[0] + seen[1]) == set(alone)


def test_val_fraction_and_label_subset_are_refused(packed) -> None:
    with pytest.raises(ValueError, match="packed val split"):
        StreamingDataModule(root=str(packed["enc"]), val_fraction=0.1, cipher="pre_encrypted")
    with pytest.raises(ValueError, match="label_subset"):
        StreamingDataModule(root=str(packed["enc"]), label_subset=[0], cipher="pre_encrypted")


def test_vitlearnenc_train_on_shards(packed, tmp_path: Path) -> None:
    """The provider's command: data=streaming over encrypted shards, cipher=pre_encrypted, no key."""
    overrides = [
        "data=streaming",
        f"data.root={packed['enc']}",
        "data.batch_size=4",
        "data.num_workers=0",
        "cipher=pre_encrypted",
        "key=none",
        "model=vit_micro",
        "model.patch_size=8",
        "image_size=32",
        "trainer=fast_dev_run",
        "logger=csv",
        "callbacks=none",
    ]
    with composed("train", overrides, tmp_path) as cfg:
        dm = build_datamodule(cfg, tmp_path)
        assert isinstance(dm, StreamingDataModule)
        metrics = train(cfg)
    assert "test/acc" in metrics


def test_readme_provider_command_composes(packed, tmp_path: Path) -> None:
    overrides = ["experiment=paper/vit_b16_proposed", "data=streaming",
                 f"data.root={packed['enc']}", "cipher=pre_encrypted", "key=none"]  # fmt: skip
    with composed("train", overrides, tmp_path) as cfg:
        dm = build_datamodule(cfg, tmp_path)
    assert isinstance(dm, StreamingDataModule) and dm.image_size == 224 and dm.block_size == 16


class _Linear(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(3 * 32 * 32, 2)

    def training_step(self, batch, _):
        return torch.nn.functional.cross_entropy(
            self.net(batch["image"].flatten(1)), batch["label"]
        )

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(root: Path, run: Path, max_steps: int, ckpt: str | None = None) -> torch.Tensor:
    L.seed_everything(0)
    model = _Linear()
    dm = StreamingDataModule(
        root=str(root),
        cipher="pre_encrypted",
        block_size=8,
        batch_size=2,
        num_workers=2,
        augment=False,
    )
    every = ModelCheckpoint(dirpath=run, every_n_train_steps=1, save_top_k=-1, filename="{step}")
    trainer = L.Trainer(
        max_epochs=2, max_steps=max_steps, logger=False, callbacks=[every],
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        limit_val_batches=0,
    )  # fmt: skip
    trainer.fit(model, dm, ckpt_path=ckpt)
    return model.net.weight.detach().clone()


@pytest.mark.slow
def test_mid_epoch_resume_with_workers_replays_the_same_batches(packed, tmp_path: Path) -> None:
    """Stopped after 3 of the 4 steps of epoch 1 (loader state in the step checkpoint, two
    workers) and resumed: the same final weights as the uninterrupted run."""
    full = _fit(packed["enc"], tmp_path / "a", max_steps=-1)
    _fit(packed["enc"], tmp_path / "b", max_steps=3)
    resumed = _fit(packed["enc"], tmp_path / "c", -1, ckpt=str(tmp_path / "b" / "step=3.ckpt"))
    torch.testing.assert_close(resumed, full, rtol=0, atol=0)
