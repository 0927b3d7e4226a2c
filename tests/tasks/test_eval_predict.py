"""Owner encrypts a folder, researcher trains with the key, provider evaluates and predicts
on the pre-encrypted folder with no key: all three agree."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers.hydra import composed, tiny_run
from vitlearnenc.cli.encrypt import main_encrypt
from vitlearnenc.cli.evaluate import evaluate
from vitlearnenc.cli.keygen import main as keygen
from vitlearnenc.cli.predict import predict
from vitlearnenc.cli.train import train
from vitlearnenc.data.synthetic import make_synthetic_images

CLASSES = ["a", "b", "c", "d"]


def write_folder(root: Path, split: str, count: int) -> None:
    images, labels = make_synthetic_images(count, len(CLASSES), 16, seed=0, split=split)
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        path = root / split / CLASSES[int(label)] / f"{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("owner")
    plain, encrypted, key = root / "plain", root / "encrypted", root / "owner.key"
    write_folder(plain, "train", 160)
    write_folder(plain, "test", 48)
    assert (
        keygen(
            ["--cipher", "proposed", "--image-size", "16", "--block-size", "4", "--out", str(key)]
        )
        == 0
    )
    assert main_encrypt(["--key", str(key), "--quiet", str(plain), str(encrypted)]) == 0
    overrides = [
        *tiny_run("image_folder", callbacks="model_checkpoint", root=plain, batch_size=16),
        "image_size=16",
        "key=file",
        f"key.path={key}",
        "trainer.max_epochs=2",
        "optim.lr=3e-3",
    ]
    run = root / "train"
    with composed("train", overrides, run) as cfg:
        metrics = train(cfg)
    return {
        "plain": plain,
        "encrypted": encrypted,
        "key": key,
        "run": run / "run",
        "acc": metrics["test/acc"],
    }


def test_eval_reproduces_the_test_accuracy(trained: dict, tmp_path: Path) -> None:
    ckpt = trained["run"] / "checkpoints"
    best = next(p for p in sorted(ckpt.glob("epoch*.ckpt")))
    overrides = [
        f"ckpt_path={best}",
        "data=image_folder",
        f"data.root={trained['plain']}",
        "data.num_workers=0",
        "image_size=16",
        "cipher.block_size=4",
        f"key.path={trained['key']}",
        "logger=none",
        "trainer.enable_progress_bar=false",
    ]
    with composed("eval", overrides, tmp_path) as cfg:
        metrics = evaluate(cfg)
    assert metrics["test/acc"] == pytest.approx(trained["acc"], abs=1e-6)
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["metrics"]["test/acc"] == pytest.approx(trained["acc"], abs=1e-6)


def test_eval_on_pre_encrypted_data_without_key_matches(trained: dict, tmp_path: Path) -> None:
    best = next(iter(sorted((trained["run"] / "checkpoints").glob("epoch*.ckpt"))))
    overrides = [
        f"ckpt_path={best}",
        "data=image_folder",
        f"data.root={trained['encrypted']}",
        "data.num_workers=0",
        "image_size=16",
        "cipher=pre_encrypted",
        "key=none",
        "logger=none",
        "trainer.enable_progress_bar=false",
    ]
    with composed("eval", overrides, tmp_path) as cfg:
        metrics = evaluate(cfg)
    assert metrics["test/acc"] == pytest.approx(trained["acc"], abs=1e-6)


def test_predict_on_encrypted_folder_matches_on_the_fly_encryption(
    trained: dict, tmp_path: Path
) -> None:
    from vitlearnenc.ciphers import build_cipher, load_key
    from vitlearnenc.tasks.classifier import ClassifierModule
    from vitlearnenc.utils.imagefiles import read_image

    best = next(iter(sorted((trained["run"] / "checkpoints").glob("epoch*.ckpt"))))
    overrides = [
        f"ckpt_path={best}",
        f"input_dir={trained['encrypted'] / 'test'}",
        "image_size=16",
        "num_workers=0",
    ]
    with composed("predict", overrides, tmp_path) as cfg:
        path = predict(cfg)
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 48
    # the researcher's path: plain files, encrypted on the fly with the owner's key
    task = ClassifierModule.load_from_checkpoint(best, map_location="cpu").eval()
    cipher = build_cipher("proposed", key=load_key(trained["key"]))
    files = [trained["plain"] / "test" / Path(r["file"]).with_suffix(".png") for r in rows]
    plain = torch.stack([read_image(f) for f in files])
    with torch.no_grad():
        logits = task(cipher.encrypt(plain).float().div(255).sub(0.5).div(0.5))
    expected = logits.argmax(-1).numpy()
    np.testing.assert_array_equal(np.array([int(r["label"]) for r in rows]), expected)
    assert {r["class"] for r in rows} <= set(CLASSES)
