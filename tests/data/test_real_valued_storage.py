"""Real-valued ciphertexts (orthomix) on disk: ``.npy`` folders from ``vitlearnenc-encrypt`` and
float shards from ``vitlearnenc-pack`` feed the model exactly what on-device encryption feeds it,
in the key's storage dtype, and bad folders or shards are refused with one-line reasons."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from litdata import StreamingDataset

from tests.helpers.trees import write_tree
from vitlearnenc.ciphers import build_cipher, generate_key, load_key, save_key
from vitlearnenc.cli.encrypt import main_decrypt, main_encrypt
from vitlearnenc.cli.pack import main as pack_main
from vitlearnenc.data import ImageFolderDataModule, StreamingDataModule
from vitlearnenc.data.imagestore import MixedSizesError
from vitlearnenc.data.shards import METADATA_NAME, ShardMetadataError, read_metadata
from vitlearnenc.errors import InputError
from vitlearnenc.utils.image_ops import resize_uint8
from vitlearnenc.utils.imagefiles import (
    TEMP_SUFFIX,
    ImageReadError,
    read_array,
    read_array_header,
    read_image,
    write_array_atomic,
)
from vitlearnenc.utils.markers import MARKER_NAME, read_marker

LAYOUT = {"train/ant": 5, "train/bee": 4, "test/ant": 3, "test/bee": 3}
COMMON = {"block_size": 8, "batch_size": 4, "num_workers": 0, "augment": False}
STORAGES = ["float32", "float16"]


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("plain")
    write_tree(root, LAYOUT, size=16, suffix=".jpg")
    return root


def _key(tmp_path: Path, storage: str, method: str = "orthomix") -> Path:
    key = generate_key(method, 32, 8, seed=11, storage=storage)
    return save_key(key, tmp_path / f"{method}-{storage}.key")


def _encrypt(key: Path, source: Path, out: Path, *extra: str) -> int:
    return main_encrypt(
        ["--key", str(key), "--resize", "32", "--quiet", *extra, str(source), str(out)]
    )


def _pipeline(dm, loader) -> list[torch.Tensor]:
    return [dm.on_after_batch_transfer(dict(batch), 0)["image"] for batch in loader]


def _on_device(plain: Path, key: Path, split: str = "test") -> list[torch.Tensor]:
    """The reference: plain images encrypted on the device, resized 16 -> 32 first."""
    dm = ImageFolderDataModule(
        root=str(plain), cipher="orthomix", key_file=str(key), image_size=32, val_fraction=0,
        **COMMON,
    )  # fmt: skip
    dm.setup("test" if split == "test" else "fit")
    loader = dm.test_dataloader() if split == "test" else dm._loader(dm.train_set, "fit")
    return _pipeline(dm, loader)


def _assert_equal_batches(got: list[torch.Tensor], want: list[torch.Tensor]) -> None:
    assert len(got) == len(want) > 0
    for a, b in zip(got, want, strict=True):
        assert a.dtype == b.dtype == torch.float32
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # bit for bit


# ------------------------------------------------------------------------- array files
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_array_files_round_trip_bit_for_bit(tmp_path: Path, dtype: torch.dtype) -> None:
    values = (torch.randn(3, 8, 8) * 1e3).to(dtype)  # far outside [0, 1]: nothing is clipped
    path = write_array_atomic(values, tmp_path / "sub" / "x.npy")
    assert read_array_header(path) == ((3, 8, 8), str(dtype).removeprefix("torch."))
    loaded = read_array(path)
    assert loaded.dtype == dtype and torch.equal(loaded, values)
    assert not list(tmp_path.rglob(f"*{TEMP_SUFFIX}"))


def test_failed_array_write_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    def broken(handle, *args, **kwargs):
        handle.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(np.lib.format, "write_array", broken)
    with pytest.raises(OSError, match="disk full"):
        write_array_atomic(torch.zeros(3, 4, 4), tmp_path / "x.npy")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: np.save(p, np.zeros((3, 4, 4), np.int64)), "<i8 array"),
        (lambda p: np.save(p, np.asfortranarray(np.zeros((3, 4, 4), np.float32))), "Fortran"),
        (lambda p: p.write_bytes(b"not an array"), "cannot read array"),
        (lambda p: p.write_bytes(np.lib.format.magic(1, 0)[:4]), "cannot read array"),
    ],
)
def test_unusable_array_files_are_one_line_errors(tmp_path: Path, make, message: str) -> None:
    path = tmp_path / "x.npy"
    make(path)
    with pytest.raises(ImageReadError, match=message) as error:
        read_array(path)
    assert "\n" not in str(error.value)


# ------------------------------------------------------------------------------ folders
@pytest.mark.parametrize("storage", STORAGES)
def test_encrypt_writes_arrays_of_the_storage_dtype_and_decrypt_restores_the_images(
    tmp_path: Path, plain: Path, storage: str
) -> None:
    key = _key(tmp_path, storage)
    out = tmp_path / "enc"
    assert _encrypt(key, plain, out) == 0
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.npy"))
    assert files == sorted(f"{f}/{i:03d}.npy" for f, n in LAYOUT.items() for i in range(n))
    assert not list(out.rglob("*.png"))
    marker = read_marker(out)
    assert marker is not None and (marker.dtype, marker.shape) == (storage, (3, 32, 32))
    cipher = build_cipher("orthomix", key=load_key(key))
    image = resize_uint8(read_image(plain / "test/ant/001.jpg")[None], 32)
    stored = read_array(out / "test/ant/001.npy")
    assert stored.dtype == getattr(torch, storage)
    assert torch.equal(stored, cipher.encrypt(image)[0])
    assert main_decrypt(["--key", str(key), "--quiet", str(out), str(tmp_path / "dec")]) == 0
    assert torch.equal(read_image(tmp_path / "dec/test/ant/001.png"), image[0])  # exact


def test_encrypt_into_array_folder_resumes_and_refuses_another_dtype(
    tmp_path: Path, plain: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key32, key16 = _key(tmp_path, "float32"), _key(tmp_path, "float16")
    out = tmp_path / "enc"
    assert _encrypt(key32, plain, out) == 0
    first = (out / "train/bee/002.npy").read_bytes()
    (out / "train/ant/000.npy").unlink()
    (out / "train/ant" / f".001.npy.abcd{TEMP_SUFFIX}").write_bytes(b"half")  # a killed run
    capsys.readouterr()
    assert main_encrypt(["--key", str(key32), "--resize", "32", str(plain), str(out)]) == 0
    assert "encrypted 1 image(s)" in capsys.readouterr().err
    assert (out / "train/ant/000.npy").is_file() and not list(out.rglob(f"*{TEMP_SUFFIX}"))
    assert (out / "train/bee/002.npy").read_bytes() == first
    # a float16 key on a float32 folder would mix dtypes: refused even with --overwrite
    assert _encrypt(key16, plain, out, "--overwrite") == 2
    err = capsys.readouterr().err
    assert "holds float32 ciphertexts" in err and "float16" in err and err.count("\n") == 1
    # and an encrypted array folder is not encrypted again
    assert _encrypt(key32, out, tmp_path / "again") == 2
    assert "already encrypted" in capsys.readouterr().err


def test_decrypt_refuses_arrays_of_another_shape_or_dtype(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = _key(tmp_path, "float32")
    for name, values in {
        "small.npy": torch.zeros(3, 16, 16),
        "half.npy": torch.zeros(3, 32, 32, dtype=torch.float16),
    }.items():
        write_array_atomic(values, tmp_path / name)
        assert main_decrypt(["--key", str(key), str(tmp_path / name), str(tmp_path / "x.png")]) == 2
        err = capsys.readouterr().err
        assert "makes float32 3x32x32 ciphertexts" in err and err.count("\n") == 1
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("storage", STORAGES)
@pytest.mark.parametrize("method", ["orthomix", "orthomix_sub"])
def test_array_folder_batches_equal_on_device_encryption(
    tmp_path: Path, plain: Path, storage: str, method: str
) -> None:
    """cipher=pre_encrypted on the .npy folder gives the on-device batches bit for bit, for
    float16 too: both round to the storage dtype once, from the same float32 product."""
    key = save_key(generate_key(method, 32, 8, seed=11, storage=storage), tmp_path / "k.key")
    assert _encrypt(key, plain, tmp_path / "enc") == 0
    memory = ImageFolderDataModule(
        root=str(tmp_path / "enc"), cipher="pre_encrypted", val_fraction=0, **COMMON
    )
    memory.setup("test")
    assert memory.test_set.images.dtype == getattr(torch, storage)  # kept as stored
    reference = ImageFolderDataModule(
        root=str(plain), cipher=method, key_file=str(key), image_size=32, val_fraction=0,
        **COMMON,
    )  # fmt: skip
    reference.setup("test")
    _assert_equal_batches(
        _pipeline(memory, memory.test_dataloader()),
        _pipeline(reference, reference.test_dataloader()),
    )
    memory.setup("fit")  # the train split loads the same way
    assert memory.train_set.dataset.images.shape == (9, 3, 32, 32)
    assert memory.class_names == ["ant", "bee"]


def test_bad_array_folders_are_refused_before_loading(tmp_path: Path, plain: Path) -> None:
    key = _key(tmp_path, "float32")
    out = tmp_path / "enc"
    assert _encrypt(key, plain, out) == 0

    def load(**config):
        dm = ImageFolderDataModule(root=str(out), val_fraction=0, **{**COMMON, **config})
        dm.setup("test")
        return dm

    # uint8 pipelines on a float folder: plain images expected, keyed ciphers
    with pytest.raises(InputError, match="cipher=plain cannot use them") as error:
        load(cipher="plain")
    assert "\n" not in str(error.value)
    with pytest.raises(InputError, match="already encrypted"):
        load(cipher="orthomix", key_file=str(key))
    # a file of another dtype, then of another shape, than the marker records
    odd = out / "test/bee/000.npy"
    write_array_atomic(torch.zeros(3, 32, 32, dtype=torch.float16), odd)
    with pytest.raises(InputError, match="holds float16 3x32x32 but .* says float32 3x32x32"):
        load(cipher="pre_encrypted")
    write_array_atomic(torch.zeros(3, 16, 16), odd)
    with pytest.raises(InputError, match="holds float32 3x16x16"):
        load(cipher="pre_encrypted")
    # no shape recorded (an older marker): mixed shapes are still refused, from the headers
    marker = json.loads((out / MARKER_NAME).read_text())
    del marker["shape"]
    (out / MARKER_NAME).write_text(json.dumps(marker))
    with pytest.raises(MixedSizesError, match="one shape") as error:
        load(cipher="pre_encrypted")
    assert "\n" not in str(error.value)


def test_truncated_array_is_skipped_with_a_warning(tmp_path: Path, plain: Path) -> None:
    key = _key(tmp_path, "float16")
    out = tmp_path / "enc"
    assert _encrypt(key, plain, out) == 0
    path = out / "test/ant/002.npy"
    path.write_bytes(path.read_bytes()[:500])
    dm = ImageFolderDataModule(root=str(out), cipher="pre_encrypted", val_fraction=0, **COMMON)
    dm.setup("test")
    assert len(dm.test_set) == 5
    expected = read_array(out / "test/bee/000.npy")
    assert torch.equal(dm.test_set.images[2], expected)  # rows after the gap moved up


# ------------------------------------------------------------------------------- shards
@pytest.mark.parametrize(("storage", "compression"), [("float32", None), ("float16", "zstd")])
def test_float_shards_stream_the_on_device_batches(
    tmp_path: Path, plain: Path, storage: str, compression: str | None
) -> None:
    key = _key(tmp_path, storage)
    out = tmp_path / "shards"
    extra = ["--compression", compression] if compression else []
    argv = ["--key", str(key), "--resize", "32", "--no-shuffle", "--quiet", *extra]
    assert pack_main([*argv, str(plain), str(out)]) == 0
    meta = read_metadata(out)
    assert meta.dtype == storage and meta.keyed and meta.cipher == "orthomix"
    assert f"{storage}," in meta.describe()
    item = StreamingDataset(str(out / "test"))[0]
    assert item["image"].dtype == getattr(torch, storage) and item["image"].shape == (3, 32, 32)
    stream = StreamingDataModule(root=str(out), cipher="pre_encrypted", **COMMON)
    stream.setup("test")
    _assert_equal_batches(_pipeline(stream, stream.test_dataloader()), _on_device(plain, key))
    # the same values as the .npy folder of vitlearnenc-encrypt
    assert _encrypt(key, plain, tmp_path / "enc") == 0
    assert torch.equal(
        item["image"], read_array(tmp_path / "enc" / "test" / f"{item['name'][:-4]}.npy")
    )


def test_float_shards_refuse_uint8_pipelines_and_a_wrong_dtype(tmp_path: Path, plain: Path) -> None:
    key = _key(tmp_path, "float32")
    out = tmp_path / "shards"
    assert pack_main(["--key", str(key), "--resize", "32", "--quiet", str(plain), str(out)]) == 0
    for config in ({"cipher": "plain"}, {"cipher": "orthomix", "key_seed": 1}):
        dm = StreamingDataModule(root=str(out), **{**COMMON, **config})
        with pytest.raises(ShardMetadataError, match="real-valued float32 ciphertexts") as error:
            dm.setup("fit")
        assert "use cipher=pre_encrypted" in str(error.value) and "\n" not in str(error.value)
    data = json.loads((out / METADATA_NAME).read_text())
    data["dtype"] = "float16"
    (out / METADATA_NAME).write_text(json.dumps(data))
    dm = StreamingDataModule(root=str(out), cipher="pre_encrypted", **COMMON)
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    with pytest.raises(
        ShardMetadataError, match="streams float32 images but its metadata says float16"
    ):
        dm.on_after_batch_transfer(batch, 0)
    data["dtype"] = "float64"
    (out / METADATA_NAME).write_text(json.dumps(data))
    with pytest.raises(ShardMetadataError, match="not a metadata file"):
        read_metadata(out)


# ----------------------------------------------------------------- the provider's commands
@pytest.mark.parametrize("data", ["streaming", "image_folder"])
def test_vitlearnenc_train_on_float16_ciphertexts(tmp_path: Path, plain: Path, data: str) -> None:
    """``vitlearnenc-train data=streaming|image_folder cipher=pre_encrypted key=none`` on
    orthomix float16 shards / ``.npy`` folder: trains and tests (no key in the process)."""
    from tests.helpers.hydra import composed
    from vitlearnenc.cli.train import train

    key = _key(tmp_path, "float16")
    root = tmp_path / "stored"
    if data == "streaming":
        argv = ["--key", str(key), "--resize", "32", "--val-fraction", "0.25", "--quiet"]
        assert pack_main([*argv, str(plain), str(root)]) == 0
    else:
        assert _encrypt(key, plain, root) == 0
    overrides = [
        f"data={data}", f"data.root={root}", "data.batch_size=4", "data.num_workers=0",
        "cipher=pre_encrypted", "key=none", "model=vit_micro", "model.patch_size=8",
        "image_size=32", "trainer=fast_dev_run", "logger=csv", "callbacks=none",
    ]  # fmt: skip
    with composed("train", overrides, tmp_path / "run") as cfg:
        metrics = train(cfg)
    assert "test/acc" in metrics


def test_predict_folder_reads_arrays(tmp_path: Path, plain: Path) -> None:
    from vitlearnenc.data.folder import PredictFolderDataModule

    key = _key(tmp_path, "float32")
    assert _encrypt(key, plain, tmp_path / "enc") == 0
    dm = PredictFolderDataModule(root=str(tmp_path / "enc" / "test"), cipher="pre_encrypted",
                                 block_size=8, batch_size=4, num_workers=0)  # fmt: skip
    dm.setup("predict")
    assert dm.predict_files == [f"{c}/{i:03d}.npy" for c in ("ant", "bee") for i in range(3)]
    assert torch.equal(dm.predict_set.images[4], read_array(tmp_path / "enc/test/bee/001.npy"))
