"""``vitlearnenc-pack``: folder/archive/CIFAR -> litdata shards, refusals and failures."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from litdata import StreamingDataset
from PIL import Image

from tests.helpers.trees import make_tar, write_tree
from vitlearnenc.ciphers import build_cipher, generate_key, save_key
from vitlearnenc.cli.encrypt import main_encrypt
from vitlearnenc.cli.pack import main as pack_main
from vitlearnenc.data.shards import METADATA_NAME, fit_size, read_metadata
from vitlearnenc.utils.image_ops import resize_uint8

LAYOUT = {"train/cat": 6, "train/dog": 6, "test/cat": 3, "test/dog": 3}


@pytest.fixture
def source(tmp_path: Path) -> Path:
    write_tree(tmp_path / "src", LAYOUT, size=16)
    return tmp_path / "src"


@pytest.fixture
def key32(tmp_path: Path) -> Path:
    return save_key(generate_key("proposed", 32, 8, seed=3), tmp_path / "owner.key")


def _items(root: Path, split: str) -> list[dict]:
    dataset = StreamingDataset(str(root / split))
    return [dataset[i] for i in range(len(dataset))]


def _leftovers(folder: Path, name: str) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.startswith(f".{name}.")]


def test_pack_encrypts_resized_images_as_vitlearnenc_encrypt_does(
    tmp_path: Path, source: Path, key32: Path
) -> None:
    """Every item is the encrypted uint8 CHW image at the key's size, with its label and name,
    byte-equal to ``vitlearnenc-encrypt --resize`` of the same file."""
    out = tmp_path / "shards"
    assert pack_main(["--key", str(key32), "--resize", "32", "--no-shuffle", "--quiet",
                      str(source), str(out)]) == 0  # fmt: skip
    assert main_encrypt(["--key", str(key32), "--resize", "32", "--quiet",
                         str(source), str(tmp_path / "enc")]) == 0  # fmt: skip
    meta = read_metadata(out)
    assert meta.counts == {"train": 12, "test": 6}
    assert meta.classes == ["cat", "dog"] and meta.image_size == (32, 32) and meta.keyed
    items = _items(out, "test")
    assert [item["name"] for item in items] == sorted(
        f"{c}/{i:03d}.png" for c in ("cat", "dog") for i in range(3)
    )
    for item in items:
        assert item["image"].dtype == torch.uint8 and item["image"].shape == (3, 32, 32)
        assert item["label"] == (0 if item["name"].startswith("cat") else 1)
        encrypted = np.asarray(Image.open(tmp_path / "enc" / "test" / item["name"]))
        assert torch.equal(item["image"], torch.from_numpy(encrypted).permute(2, 0, 1))


def test_seeded_shuffle_and_val_split(tmp_path: Path, source: Path, key32: Path) -> None:
    """The file list is shuffled once with the seed (classes mixed, same seed same order);
    the val split is a seeded, disjoint share of train."""
    orders = []
    for run in ("a", "b"):
        out = tmp_path / run
        args = ["--key", str(key32), "--resize", "32", "--val-fraction", "0.25", "--quiet"]
        assert pack_main([*args, str(source), str(out)]) == 0
        orders.append([item["name"] for item in _items(out, "train")])
        val = [item["name"] for item in _items(out, "val")]
        assert len(val) == 3 and not set(val) & set(orders[-1])
        assert sorted(val + orders[-1]) == sorted(
            f"{c}/{i:03d}.png" for c in ("cat", "dog") for i in range(6)
        )
        assert read_metadata(out).counts == {"train": 9, "val": 3, "test": 6}
    assert orders[0] == orders[1] and orders[0] != sorted(orders[0])


def test_archive_packs_like_the_folder(tmp_path: Path, source: Path, key32: Path) -> None:
    archive = make_tar(source, tmp_path / "src.tar.gz", wrapper="cifar")
    for name, src in (("from_folder", source), ("from_archive", archive)):
        assert pack_main(["--key", str(key32), "--resize", "32", "--workers", "2", "--quiet",
                          str(src), str(tmp_path / name)]) == 0  # fmt: skip
    for split in ("train", "test"):
        a, b = _items(tmp_path / "from_folder", split), _items(tmp_path / "from_archive", split)
        assert [i["name"] for i in a] == [i["name"] for i in b]
        assert all(torch.equal(x["image"], y["image"]) for x, y in zip(a, b, strict=True))


def test_plain_pack_keeps_pixels_and_records_no_key(tmp_path: Path, source: Path) -> None:
    out = tmp_path / "plain"
    assert pack_main(["--cipher", "plain", "--no-shuffle", "--quiet", str(source), str(out)]) == 0
    meta = read_metadata(out)
    assert not meta.keyed and meta.key_fingerprint is None and meta.image_size == (16, 16)
    item = _items(out, "train")[0]
    pixels = np.asarray(Image.open(source / "train" / item["name"]))
    assert torch.equal(item["image"], torch.from_numpy(pixels).permute(2, 0, 1))


def _fake_cifar(root: Path, monkeypatch: pytest.MonkeyPatch) -> np.ndarray:
    """torchvision's CIFAR-10 layout with random pixels (integrity check patched out)."""
    from torchvision.datasets import CIFAR10

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (12, 3072), dtype=np.uint8)
    labels = [i % 10 for i in range(12)]
    for name, start in [(n, 0) for n, _ in CIFAR10.train_list] + [("test_batch", 10)]:
        batch = {"data": data[start : start + 2], "labels": labels[start : start + 2]}
        (folder / name).write_bytes(pickle.dumps(batch))
    meta = {"label_names": [f"class{i}" for i in range(10)]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    monkeypatch.setattr(CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr("torchvision.datasets.cifar.check_integrity", lambda *args: True)
    return data.reshape(-1, 3, 32, 32)


def test_torchvision_cifar_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pixels = _fake_cifar(tmp_path / "cifar", monkeypatch)
    out = tmp_path / "shards"
    assert pack_main(["--cipher", "plain", "--no-shuffle", "--quiet",
                      str(tmp_path / "cifar"), str(out)]) == 0  # fmt: skip
    meta = read_metadata(out)
    assert meta.counts == {"train": 10, "test": 2} and len(meta.classes) == 10
    test = _items(out, "test")
    assert torch.equal(test[1]["image"], torch.from_numpy(pixels[11]))
    assert test[1]["label"] == 1


@pytest.mark.parametrize(
    ("size", "mode", "expected"),
    [
        ((16, 32), "shorter-center-crop", lambda im: im[:, :, 8:24]),
        ((32, 16), "shorter-center-crop", lambda im: im[:, 8:24, :]),
        ((16, 32), "resize", lambda im: resize_uint8(im[None], (16, 16))[0]),
    ],
)
def test_resize_modes(size: tuple[int, int], mode: str, expected) -> None:
    image = torch.randint(0, 256, (3, *size), dtype=torch.uint8)
    assert torch.equal(fit_size(image, (16, 16), mode), expected(image))


def test_shorter_center_crop_scales_then_crops() -> None:
    image = torch.randint(0, 256, (3, 32, 64), dtype=torch.uint8)
    out = fit_size(image, (16, 16), "shorter-center-crop")
    assert torch.equal(out, resize_uint8(image[None], (16, 32))[0, :, :, 8:24])


def _run_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert pack_main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vitlearnenc-pack: error: ")
    return lines[0]


def test_corrupt_image_fails_naming_it_or_is_skipped(
    tmp_path: Path, source: Path, key32: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (source / "train" / "dog" / "002.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"x" * 40)
    out = tmp_path / "shards"
    args = ["--key", str(key32), "--resize", "32", "--workers", "2", "--quiet"]
    error = _run_error([*args, str(source), str(out)], capsys)
    assert "train/dog/002.png" in error and "--skip-bad" in error
    assert not out.exists() and not _leftovers(tmp_path, "shards")
    assert pack_main([*args, "--skip-bad", str(source), str(out)]) == 0
    meta = read_metadata(out)
    assert meta.counts["train"] == 11 and meta.skipped == 1
    assert "dog/002.png" not in {item["name"] for item in _items(out, "train")}


def test_refusals(
    tmp_path: Path, source: Path, key32: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "shards"
    base = ["--key", str(key32), "--quiet"]
    # image size differs from the key's and no --resize
    assert "pass --resize" in _run_error([*base, str(source), str(out)], capsys)
    assert not out.exists() and not _leftovers(tmp_path, "shards")
    assert "key was made for 32x32" in _run_error(
        [*base, "--resize", "64", str(source), str(out)], capsys
    )
    assert "needs --key" in _run_error(["--cipher", "proposed", str(source), str(out)], capsys)
    assert "--cipher plain" in _run_error(
        ["--cipher", "pre_encrypted", str(source), str(out)], capsys
    )
    assert "inside the source" in _run_error(
        [*base, "--resize", "32", str(source), str(source / "out")], capsys
    )
    # a finished pack is not replaced without --overwrite; with it, it is
    assert pack_main([*base, "--resize", "32", str(source), str(out)]) == 0
    assert "--overwrite" in _run_error([*base, "--resize", "32", str(source), str(out)], capsys)
    assert pack_main([*base, "--resize", "32", "--overwrite", str(source), str(out)]) == 0
    # already encrypted sources: a packed output, a vitlearnenc-encrypt folder
    assert "already packed" in _run_error([*base, str(out), str(tmp_path / "again")], capsys)
    assert main_encrypt(["--key", str(key32), "--resize", "32", "--quiet",
                         str(source), str(tmp_path / "enc")]) == 0  # fmt: skip
    assert "already encrypted" in _run_error(
        ["--cipher", "plain", str(tmp_path / "enc"), str(tmp_path / "x")], capsys
    )
    # a folder that is not a pack is never clobbered
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    assert "not a finished" in _run_error(
        [*base, "--resize", "32", "--overwrite", str(source), str(tmp_path / "busy")], capsys
    )


def test_metadata_records_public_facts_only(tmp_path: Path, source: Path, key32: Path) -> None:
    out = tmp_path / "shards"
    assert pack_main(["--key", str(key32), "--resize", "32", "--quiet", str(source), str(out)]) == 0
    data = json.loads((out / METADATA_NAME).read_text())
    cipher = build_cipher("proposed", key=str(key32))
    assert data["key_fingerprint"] == cipher.key.fingerprint
    assert set(data) == {
        "packed_by", "version", "cipher", "keyed", "image_size", "block_size",
        "key_fingerprint", "counts", "classes", "resize_mode", "shuffle_seed",
        "compression", "skipped", "dtype",
    }  # fmt: skip
    assert data["dtype"] == "uint8"
