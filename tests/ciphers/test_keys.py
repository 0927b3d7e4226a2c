"""Key files: round trip, mode 0600, and every rejection path."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path

import pytest

from vitlearnenc.ciphers import (
    KeyFileError,
    KeyMismatchError,
    UnknownCipherError,
    build_cipher,
    generate_key,
    load_key,
    save_key,
)


@pytest.fixture
def key_path(tmp_path: Path) -> Path:
    return save_key(generate_key("proposed", 32, 4, seed=0), tmp_path / "key.json")


def _rewrite(path: Path, edit) -> None:
    """Edit a key file's JSON and re-sign it, so only the edited field is wrong."""
    data = json.loads(path.read_text())
    edit(data)
    data.pop("checksum", None)
    body = json.dumps(data, sort_keys=True, separators=(",", ":"))
    data["checksum"] = "sha256:" + hashlib.sha256(body.encode()).hexdigest()
    path.write_text(json.dumps(data))


def test_round_trip_and_mode(key_path: Path) -> None:
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    key = load_key(key_path)
    assert key == generate_key("proposed", 32, 4, seed=0)
    data = json.loads(key_path.read_text())
    assert data["format"] == "vitlearnenc-key" and data["version"] == 1
    assert (
        data["method"] == "proposed" and data["image_size"] == [32, 32] and data["block_size"] == 4
    )
    assert sorted(data["block_perm"]) == list(range(64)) and sorted(data["pixel_perm"]) == list(
        range(4)
    )


def test_file_key_encrypts_like_the_original(key_path: Path) -> None:
    import torch

    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    a = build_cipher("proposed", key=generate_key("proposed", 32, 4, seed=0))
    b = build_cipher("proposed", image_size=32, block_size=4, key=key_path)
    assert torch.equal(a.encrypt(images), b.encrypt(images))


def test_refuses_to_overwrite(key_path: Path) -> None:
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        save_key(generate_key("proposed", 32, 4, seed=1), key_path)
    assert load_key(key_path) == generate_key("proposed", 32, 4, seed=0)


def test_loose_permissions_warn(key_path: Path) -> None:
    key_path.chmod(0o644)
    with pytest.warns(UserWarning, match="chmod 600"):
        load_key(key_path)


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda p: p.write_text(p.read_text()[:40]), "not valid JSON"),
        (lambda p: p.write_bytes(b"\xff\xfe\x00garbage"), "not valid JSON"),
        (lambda p: p.write_text("[1, 2, 3]"), "not a vitlearnenc key file"),
        (lambda p: p.write_text(p.read_text().replace("[0", "[1", 1)), "checksum mismatch"),
    ],
)
def test_corrupt_files_rejected(key_path: Path, corrupt, message: str) -> None:
    corrupt(key_path)
    with pytest.raises(KeyFileError, match=message):
        load_key(key_path)


@pytest.mark.parametrize(
    ("edit", "error", "message"),
    [
        (lambda d: d.update(format="other"), KeyFileError, "not a vitlearnenc key file"),
        (lambda d: d.update(version=2), KeyFileError, "version 2 is not supported"),
        (lambda d: d.pop("block_size"), KeyFileError, "lacks the field 'block_size'"),
        (lambda d: d.update(image_size=[32]), KeyFileError, r"image_size must be \[H, W\]"),
        (
            lambda d: d.update(block_perm=d["block_perm"][:-1]),
            KeyFileError,
            "block_perm must have length 64",
        ),
        (
            lambda d: d["block_perm"].__setitem__(0, d["block_perm"][1]),
            KeyFileError,
            "repeated values",
        ),
        (lambda d: d["pixel_perm"].__setitem__(0, 9), KeyFileError, "out of range"),
        (lambda d: d.update(pixel_perm="abc"), KeyFileError, "list of integers"),
        (lambda d: d.update(extra=[1]), KeyFileError, "unexpected: \\['extra'\\]"),
        (lambda d: d.update(block_size=5), KeyFileError, "do not fit together"),
        (lambda d: d.update(method="nope"), UnknownCipherError, "unknown cipher 'nope'"),
    ],
)
def test_invalid_fields_rejected(key_path: Path, edit, error, message: str) -> None:
    _rewrite(key_path, edit)
    with pytest.raises(error, match=message):
        load_key(key_path)


def test_key_for_other_geometry_or_method(key_path: Path) -> None:
    with pytest.raises(KeyMismatchError, match="made for 32x32 images, not 64x64"):
        load_key(key_path, image_size=64)
    with pytest.raises(KeyMismatchError, match="block size 4, not 8"):
        load_key(key_path, block_size=8)
    with pytest.raises(KeyMismatchError, match="'proposed' key, but the 'plain' cipher"):
        load_key(key_path, method="plain")
    with pytest.raises(KeyMismatchError, match="not 'plain'"):
        from vitlearnenc.ciphers import PlainCipher

        PlainCipher(load_key(key_path))


def test_missing_key_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="does not exist; create one with vitlearnenc-keygen"):
        load_key(tmp_path / "nope.json")


def test_errors_never_contain_key_material(key_path: Path) -> None:
    data = json.loads(key_path.read_text())
    secret = json.dumps(data["block_perm"])
    _rewrite(key_path, lambda d: d["block_perm"].__setitem__(0, d["block_perm"][1]))
    with pytest.raises(KeyFileError) as info:
        load_key(key_path)
    assert secret not in str(info.value) and str(data["block_perm"][:5])[1:-1] not in str(
        info.value
    )


def test_unknown_cipher_lists_choices() -> None:
    with pytest.raises(UnknownCipherError, match="choose one of: .*proposed"):
        build_cipher("rot13", image_size=32, block_size=4)


def test_seed_must_be_non_negative_int() -> None:
    with pytest.raises(ValueError, match="non-negative integer"):
        generate_key("proposed", 32, 4, seed=-1)
