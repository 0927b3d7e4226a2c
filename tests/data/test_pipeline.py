"""The on-device pipeline of EncryptedDataModule: order, stages, key sources, early errors."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from vitlearnenc.ciphers import KeyMismatchError, UnknownCipherError, build_cipher, load_key
from vitlearnenc.data import SyntheticDataModule, random_crop_flip
from vitlearnenc.utils.image_ops import resize_uint8

MEAN, STD = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)


def synthetic(**kwargs) -> SyntheticDataModule:
    options = dict(num_train=40, num_test=12, native_size=16, batch_size=8, num_workers=0)
    options.update(kwargs)
    return SyntheticDataModule(**options)


def normalise(images: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (images.float() / 255 - mean) / std


def uint8_batch(size: int = 16, n: int = 6) -> torch.Tensor:
    return torch.randint(
        0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )


def test_output_is_normalise_encrypt_resize_without_augmentation():
    dm = synthetic(cipher="proposed", key_seed=4, image_size=32, block_size=8, mean=MEAN, std=STD)
    images = uint8_batch()
    expected = normalise(dm.cipher.encrypt(resize_uint8(images, 32)))
    for train in (False, True):  # augment is on, but only applies when train=True
        out = dm.transform_batch(images, train=train, generator=torch.Generator().manual_seed(0))
        assert out.dtype == torch.float32 and out.shape == (6, 3, 32, 32)
    torch.testing.assert_close(dm.transform_batch(images, train=False), expected)
    dm_off = synthetic(
        cipher="proposed",
        key_seed=4,
        image_size=32,
        block_size=8,
        mean=MEAN,
        std=STD,
        augment=False,
    )
    torch.testing.assert_close(dm_off.transform_batch(images, train=True), expected)


def test_order_is_augment_resize_encrypt_normalise(monkeypatch):
    dm = synthetic(cipher="proposed", key_seed=4, image_size=32, block_size=8, mean=MEAN, std=STD)
    seen = []
    encrypt = dm.cipher.encrypt

    def spy(images):
        seen.append((images.dtype, tuple(images.shape)))
        return encrypt(images)

    monkeypatch.setattr(dm.cipher, "encrypt", spy)
    images = uint8_batch()
    out = dm.transform_batch(images, train=True, generator=torch.Generator().manual_seed(9))
    assert seen == [(torch.uint8, (6, 3, 32, 32))]  # the cipher sees resized uint8
    augmented = random_crop_flip(images, 4, True, generator=torch.Generator().manual_seed(9))
    torch.testing.assert_close(out, normalise(encrypt(resize_uint8(augmented, 32))))
    # augmenting after the resize (padding at 32 px) would be another image
    late = random_crop_flip(
        resize_uint8(images, 32), 4, True, generator=torch.Generator().manual_seed(9)
    )
    assert not torch.equal(out, normalise(encrypt(late)))


def test_hook_keeps_plain_only_when_asked():
    images = uint8_batch()
    batch = {"image": images.clone(), "label": torch.zeros(6, dtype=torch.long)}
    dm = synthetic(cipher="proposed", key_seed=1, image_size=32, block_size=8, keep_plain=True)
    out = dm.on_after_batch_transfer(batch, 0)
    torch.testing.assert_close(out["plain"], resize_uint8(images, 32))
    torch.testing.assert_close(out["image"], dm.encrypt_and_normalize(out["plain"]))
    no_plain = synthetic(cipher="proposed", key_seed=1, image_size=32, block_size=8)
    assert "plain" not in no_plain.on_after_batch_transfer({"image": images.clone()}, 0)


def test_pipeline_rejects_float_input():
    with pytest.raises(TypeError, match="uint8"):
        synthetic().transform_batch(torch.rand(2, 3, 16, 16), train=False)


class Recorder(L.LightningModule):
    """A linear classifier that records, per trainer stage, the batches it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(3 * 16 * 16, 4)

    def forward(self, images):
        return self.net(images.flatten(1))

    def training_step(self, batch, _):
        return torch.nn.functional.cross_entropy(self(batch["image"]), batch["label"])

    def validation_step(self, batch, _):
        self(batch["image"])

    def test_step(self, batch, _):
        self(batch["image"])

    def predict_step(self, batch, _):
        return batch["index"]

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_encryption_in_every_stage_augmentation_only_in_training(monkeypatch):
    dm = synthetic(num_classes=4, cipher="proposed", key_seed=2)
    calls: list[tuple[str, bool]] = []
    encrypted: list[str] = []
    augment_and_resize = dm.augment_and_resize

    def record_augment(images, train, generator=None):
        calls.append((dm.trainer.state.stage.value, train))
        return augment_and_resize(images, train, generator)

    monkeypatch.setattr(dm, "augment_and_resize", record_augment)
    encrypt = dm.cipher.encrypt
    monkeypatch.setattr(
        dm.cipher,
        "encrypt",
        lambda images: (encrypted.append(dm.trainer.state.stage.value), encrypt(images))[1],
    )
    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=1,
        num_sanity_val_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    model = Recorder()
    trainer.fit(model, dm)
    trainer.test(model, dm, verbose=False)
    indices = torch.cat(trainer.predict(model, dm))
    stages = {stage for stage, _ in calls}
    assert stages == {"sanity_check", "train", "validate", "test", "predict"}
    assert all(train == (stage == "train") for stage, train in calls)
    assert set(encrypted) == stages and len(encrypted) == len(calls)
    torch.testing.assert_close(indices, torch.arange(12))


def test_seeded_training_augmentation_is_reproducible():
    dm = synthetic(cipher="proposed", key_seed=2)
    images = uint8_batch()
    L.seed_everything(7)
    first = dm.transform_batch(images, train=True)
    L.seed_everything(7)
    torch.testing.assert_close(dm.transform_batch(images, train=True), first)


def test_key_file_and_key_seed_give_the_cipher_of_that_key(key_file):
    path = key_file("proposed", image_size=32, block_size=8, seed=11)
    images = uint8_batch()
    from_file = synthetic(
        cipher="proposed", key_file=str(path), image_size=32, block_size=8, augment=False
    )
    from_seed = synthetic(
        cipher="proposed", key_seed=11, image_size=32, block_size=8, augment=False
    )
    assert from_file.cipher.key == load_key(path) == from_seed.cipher.key
    reference = build_cipher("proposed", key=load_key(path))
    expected = reference.encrypt(resize_uint8(images, 32))
    torch.testing.assert_close(from_file.cipher.encrypt(resize_uint8(images, 32)), expected)
    other_seed = synthetic(cipher="proposed", key_seed=12, image_size=32, block_size=8)
    assert other_seed.cipher.key != from_seed.cipher.key


def test_key_file_must_fit_size_and_options(key_file):
    path = str(key_file("proposed", image_size=16, block_size=4))
    with pytest.raises(KeyMismatchError, match="16x16"):
        synthetic(cipher="proposed", key_file=path, image_size=32, block_size=4).setup("fit")
    with pytest.raises(KeyMismatchError, match="channel_mix"):
        synthetic(
            cipher="proposed", key_file=path, block_size=4, cipher_options={"channel_mix": True}
        ).setup("fit")
    ok = synthetic(
        cipher="proposed", key_file=path, block_size=4, cipher_options={"channel_mix": False}
    )
    ok.setup("fit")


def test_hyperparameters_hold_the_key_source_not_the_key(key_file):
    path = str(key_file("proposed", image_size=16, block_size=4))
    dm = synthetic(cipher="proposed", key_file=path, block_size=4)
    dm.setup("fit")
    assert dm.hparams.key_file == path and dm.hparams.num_train == 40
    text = repr(dict(dm.hparams))
    assert "block_perm" not in text and str(dm.cipher.key["block_perm"].tolist()) not in text


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cipher": "proposed"}, "needs exactly one key source, but neither"),
        ({"cipher": "proposed", "key_seed": 1, "key_file": "k.json"}, "both were set"),
        ({"cipher": "proposed", "key_seed": -1}, "key_seed"),
        (
            {"cipher": "proposed", "key_seed": 1, "image_size": 30, "block_size": 4},
            "30x30, which is not a multiple of the block size 4",
        ),
        (
            {"cipher": "plain", "block_size": 5},
            "16x16, which is not a multiple of the block size 5",
        ),
        ({"batch_size": 0}, "batch_size"),
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"mean": (0.5, 0.5), "std": (0.5, 0.5, 0.5)}, "mean and data.std"),
    ],
)
def test_bad_configs_fail_in_init_before_any_data(monkeypatch, kwargs, message):
    def no_loading(*args, **kw):
        raise AssertionError("data was loaded before the configuration was checked")

    monkeypatch.setattr(SyntheticDataModule, "load_split", no_loading)
    with pytest.raises(ValueError, match=message):
        synthetic(**kwargs)


def test_unknown_cipher_lists_the_known_ones():
    with pytest.raises(UnknownCipherError, match="proposed"):
        synthetic(cipher="rot13")


def test_pre_encrypted_turns_augmentation_off_and_refuses_resizing(caplog):
    with caplog.at_level(logging.WARNING, logger="vitlearnenc.data"):
        dm = synthetic(cipher="none")
    assert not dm.augment and "augmentation is switched off" in caplog.text
    images = uint8_batch()
    torch.testing.assert_close(
        dm.transform_batch(images, train=True), dm.transform_batch(images, train=False)
    )
    assert synthetic(cipher="none", image_size=16).cipher.image_size == (16, 16)  # no-op resize
    with pytest.raises(ValueError, match="vitlearnenc-encrypt --resize 32"):
        synthetic(cipher="none", image_size=32)


def test_per_device_batch_size_divides_the_global_one():
    dm = synthetic(batch_size=8)
    dm.trainer = SimpleNamespace(world_size=2, training=False)
    dm.setup("fit")
    assert dm.batch_size_per_device == 4
    assert next(iter(dm.train_dataloader()))["image"].shape[0] == 4
    dm = synthetic(batch_size=8)
    dm.trainer = SimpleNamespace(world_size=3, training=False)
    with pytest.raises(ValueError, match="does not divide among 3 devices"):
        dm.setup("fit")


def test_loaders_give_uint8_batches_and_a_held_out_val_split():
    dm = synthetic(cipher="proposed", key_seed=0)
    dm.setup("fit")
    dm.setup("test")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].dtype == torch.uint8 and batch["label"].dtype == torch.int64
    assert len(dm.train_set) == 36 and len(dm.val_set) == 4 and len(dm.test_set) == 12
    assert set(dm.train_set.indices).isdisjoint(dm.val_set.indices)
    assert synthetic(val_fraction=0.0).val_dataloader() == []
    with pytest.raises(RuntimeError, match="setup"):
        synthetic().test_dataloader()


def test_hydra_instantiation_with_omegaconf_containers():
    cfg = OmegaConf.create(
        {
            "_target_": "vitlearnenc.data.SyntheticDataModule",
            "num_train": 16,
            "native_size": 16,
            "mean": [0.5, 0.5, 0.5],
            "cipher": "proposed",
            "cipher_options": {"channel_mix": False},
            "key_seed": 3,
            "num_workers": 0,
        }
    )
    dm = instantiate(cfg)
    assert dm.cipher.image_size == (16, 16) and dm.mean == (0.5, 0.5, 0.5)


@pytest.mark.gpu
def test_cuda_pipeline_matches_cpu():
    # no resize: bilinear interpolation may round differently on the two devices
    dm = synthetic(cipher="proposed", key_seed=4, block_size=8)
    images = uint8_batch()
    for train in (False, True):
        cpu = dm.transform_batch(images, train, generator=torch.Generator().manual_seed(1))
        cuda = dm.transform_batch(images.cuda(), train, generator=torch.Generator().manual_seed(1))
        assert cuda.is_cuda
        torch.testing.assert_close(cuda.cpu(), cpu)
