"""Pre-encrypted data (``vitlearnenc-encrypt``, then ``cipher=pre_encrypted`` with no key in the
process) gives exactly the batches, training and predictions of on-the-fly encryption."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from vitlearnenc.cli.encrypt import main_encrypt
from vitlearnenc.data import ImageFolderDataModule

LAYOUT = {"train/ant": 5, "train/bee": 6, "test/ant": 3, "test/bee": 2}


class Linear(L.LightningModule):
    def __init__(self, pixels: int) -> None:
        super().__init__()
        self.net = torch.nn.Linear(pixels, 2)

    def training_step(self, batch, _):
        return torch.nn.functional.cross_entropy(
            self.net(batch["image"].flatten(1)), batch["label"]
        )

    def predict_step(self, batch, _):
        return self.net(batch["image"].flatten(1))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def batches(loader, dm, seed=0):
    torch.manual_seed(seed)  # the same shuffling order for both modules
    return [dm.on_after_batch_transfer(batch, 0) for batch in loader]


def fit_and_predict(dm, pixels):
    L.seed_everything(0)
    model = Linear(pixels)
    trainer = L.Trainer(
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, dm)
    return model.net.weight.detach().clone(), torch.cat(trainer.predict(model, dm))


@pytest.mark.parametrize("resize", [None, 32])
@pytest.mark.parametrize("plain_source", ["folder", "tar.gz"])
def test_pre_encrypted_folder_equals_on_the_fly_encryption(
    tmp_path, tree_writer, tar_maker, key_file, resize, plain_source
):
    plain = tmp_path / "plain"
    tree_writer(plain, LAYOUT, size=16, suffix=".jpg")  # JPEG: both sides must decode alike
    key = key_file("proposed", image_size=resize or 16, block_size=4, seed=5)
    encrypted = tmp_path / "encrypted"
    resize_args = ["--resize", str(resize)] if resize else []
    assert (
        main_encrypt(["--key", str(key), *resize_args, "--quiet", str(plain), str(encrypted)]) == 0
    )
    source = plain if plain_source == "folder" else tar_maker(plain, tmp_path / "plain.tar.gz")

    common = dict(
        image_size=resize,
        block_size=4,
        batch_size=4,
        num_workers=0,
        val_fraction=0.25,
        augment=False,
    )
    on_the_fly = ImageFolderDataModule(
        root=str(source),
        cipher="proposed",
        key_file=str(key),
        predict_dir=str(plain / "test"),
        **common,
    )
    provider = ImageFolderDataModule(
        root=str(encrypted), cipher="none", predict_dir=str(encrypted / "test"), **common
    )
    for dm in (on_the_fly, provider):
        dm.setup("fit")
        dm.setup("test")
        dm.setup("predict")
    assert provider.hparams.key_file is None and provider.hparams.key_seed is None
    assert provider.classes == on_the_fly.classes == ["ant", "bee"]
    assert [f.removesuffix(".png") for f in provider.predict_files] == [
        f.removesuffix(".jpg") for f in on_the_fly.predict_files
    ]
    for loader in ("train_dataloader", "val_dataloader", "test_dataloader", "predict_dataloader"):
        expected = batches(getattr(on_the_fly, loader)(), on_the_fly)
        got = batches(getattr(provider, loader)(), provider)
        assert len(got) == len(expected) > 0
        for mine, theirs in zip(got, expected, strict=True):
            assert mine.keys() == theirs.keys()
            for name in mine:
                torch.testing.assert_close(mine[name], theirs[name], rtol=0, atol=0)
    # the encryption is real: the ciphertexts are not the (resized) plain images
    plain_view = on_the_fly.augment_and_resize(on_the_fly.test_set.images, train=False)
    assert not torch.equal(provider.test_set.images, plain_view)

    pixels = 3 * (resize or 16) ** 2
    weights, predictions = fit_and_predict(on_the_fly, pixels)
    weights_provider, predictions_provider = fit_and_predict(provider, pixels)
    torch.testing.assert_close(weights_provider, weights, rtol=0, atol=0)
    torch.testing.assert_close(predictions_provider, predictions, rtol=0, atol=0)
