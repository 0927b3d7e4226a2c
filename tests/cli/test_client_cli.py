"""The data owner's tools: vitlearnenc-keygen, vitlearnenc-encrypt, vitlearnenc-decrypt, and the
image-file helpers under them. Most tests call the ``main`` functions in-process; one runs the
installed console scripts."""

from __future__ import annotations

import argparse
import json
import os
import re
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from vitlearnenc.ciphers import (
    Cipher,
    CipherKey,
    build_cipher,
    generate_key,
    list_ciphers,
    load_key,
    save_key,
)
from vitlearnenc.ciphers import registry as cipher_registry
from vitlearnenc.cli import encrypt as encrypt_cli
from vitlearnenc.cli import keygen as keygen_cli
from vitlearnenc.cli.encrypt import main_decrypt, main_encrypt
from vitlearnenc.cli.keygen import main as main_keygen
from vitlearnenc.utils import folder_jobs
from vitlearnenc.utils.image_ops import resize_uint8
from vitlearnenc.utils.imagefiles import (
    TEMP_SUFFIX,
    ImageReadError,
    list_images,
    read_image,
    write_png_atomic,
)
from vitlearnenc.utils.markers import MARKER_NAME

SIZE, BLOCK = 16, 4
BIN = Path(sys.executable).parent


def _pixels(seed: int, height: int = SIZE, width: int = SIZE, channels: int = 3) -> np.ndarray:
    shape = (height, width, channels) if channels > 1 else (height, width)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _save(path: Path, array: np.ndarray, **kwargs: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A nested folder of 16x16 images: RGB PNG and JPEG, grayscale, RGBA, plus a non-image."""
    root = tmp_path / "plain"
    _save(root / "a.png", _pixels(0))
    _save(root / "cats" / "b.jpg", _pixels(1), quality=90)
    _save(root / "cats" / "small" / "c.png", _pixels(2, channels=1))
    _save(root / "dogs" / "d.png", _pixels(3, channels=4))
    _save(root / "dogs" / "e.bmp", _pixels(4))
    (root / "dogs" / "notes.txt").write_text("not an image")
    return root


@pytest.fixture
def key_path(tmp_path: Path) -> Path:
    path = tmp_path / "owner.key"
    save_key(generate_key("proposed", SIZE, BLOCK, seed=7), path)
    return path


def _files(root: Path) -> set[str]:
    return (
        {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != MARKER_NAME}
        if root.exists()
        else set()
    )


def _error_line(err: str, prog: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{prog}: error: "), err
    assert "Traceback" not in err
    return lines[0]


# ----------------------------------------------------------------------------- keygen


def test_keygen_writes_private_key_and_prints_no_material(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "keys" / "k.json"
    assert (
        main_keygen(
            ["--cipher", "proposed", "--image-size", "32", "--block-size", "4", "--out", str(out)]
        )
        == 0
    )
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    key = load_key(out, method="proposed", image_size=32, block_size=4)
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert key.fingerprint in captured.out
    bits = build_cipher("proposed", key=key).key_space_bits()
    assert f"{bits:.1f} bits" in captured.out
    assert "seed" not in text.lower()  # no reproducibility warning for a CSPRNG key
    # no run of numbers that could be a permutation, and no field names of the material
    assert not re.search(r"(\d+\s*,\s*){4}", text)
    assert "block_perm" not in text and "pixel_perm" not in text


def test_keygen_seed_is_reproducible_and_warned(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--cipher", "proposed", "--image-size", "16x32", "--block-size", "4", "--seed", "3"]
    assert main_keygen([*args, "--out", str(tmp_path / "a.key")]) == 0
    assert main_keygen([*args, "--out", str(tmp_path / "b.key")]) == 0
    err = capsys.readouterr().err
    assert "not secret" in err.lower()
    first, second = load_key(tmp_path / "a.key"), load_key(tmp_path / "b.key")
    assert first == second
    assert first.image_size == (16, 32)


def test_keygen_cipher_options(tmp_path: Path) -> None:
    out = tmp_path / "mix.key"
    args = ["--cipher", "proposed", "--image-size", "8", "--block-size", "4", "--channel-mix"]
    assert main_keygen([*args, "--option", "channels=1", "--out", str(out)]) == 0
    key = load_key(out)
    assert key.options == {"channel_mix": True, "channels": 1}
    assert key["pixel_perm"].size == 4  # (4/2)^2 positions x 1 channel


def test_keygen_refuses_to_overwrite(key_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = key_path.read_bytes()
    args = [
        "--cipher",
        "proposed",
        "--image-size",
        "16",
        "--block-size",
        "4",
        "--out",
        str(key_path),
    ]
    assert main_keygen(args) == 2
    assert "refusing to overwrite" in _error_line(capsys.readouterr().err, "vitlearnenc-keygen")
    assert key_path.read_bytes() == before


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--image-size", "30", "--block-size", "4"], "not a multiple of the block size 4"),
        (["--image-size", "30", "--block-size", "3"], "must be even"),
        (["--image-size", "16", "--block-size", "4", "--option", "colour=1"], "unknown option"),
    ],
)
def test_keygen_bad_geometry_or_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], expected: str
) -> None:
    out = tmp_path / "k.key"
    assert main_keygen(["--cipher", "proposed", *extra, "--out", str(out)]) == 2
    assert expected in _error_line(capsys.readouterr().err, "vitlearnenc-keygen")
    assert not out.exists()


@pytest.mark.parametrize("bad", [["--image-size", "0"], ["--image-size", "3x"], ["--seed", "-1"]])
def test_keygen_usage_errors_exit_2(tmp_path: Path, bad: list[str]) -> None:
    args = {"--cipher": "proposed", "--image-size": "16", "--block-size": "4"}
    args.update(dict(zip(bad[::2], bad[1::2], strict=True)))
    argv = [item for pair in args.items() for item in pair] + ["--out", str(tmp_path / "k")]
    assert main_keygen(argv) == 2
    assert not (tmp_path / "k").exists()


# ------------------------------------------------------------------ encrypt / decrypt


def test_folder_round_trip_is_exact_and_mirrors_the_tree(
    tree: Path, key_path: Path, tmp_path: Path
) -> None:
    enc, dec = tmp_path / "enc", tmp_path / "dec"
    assert main_encrypt(["--key", str(key_path), "--batch-size", "2", str(tree), str(enc)]) == 0
    expected = {"a.png", "cats/b.png", "cats/small/c.png", "dogs/d.png", "dogs/e.png"}
    assert _files(enc) == expected
    assert main_decrypt(["--key", str(key_path), str(enc), str(dec)]) == 0
    assert _files(dec) == expected
    cipher = build_cipher("proposed", key=load_key(key_path))
    for source in list_images(tree):
        relative = source.relative_to(tree).with_suffix(".png")
        plain = read_image(source)
        encrypted = read_image(enc / relative)
        # the tool's output is exactly the cipher applied to the decoded RGB image
        torch.testing.assert_close(encrypted, cipher.encrypt(plain[None])[0], rtol=0, atol=0)
        assert not torch.equal(encrypted, plain)
        torch.testing.assert_close(read_image(dec / relative), plain, rtol=0, atol=0)


def test_single_file_to_file_and_to_folder(tree: Path, key_path: Path, tmp_path: Path) -> None:
    source = tree / "cats" / "b.jpg"
    cipher = build_cipher("proposed", key=load_key(key_path))
    expected = cipher.encrypt(read_image(source)[None])[0]
    out_file = tmp_path / "one.png"
    assert main_encrypt(["--key", str(key_path), str(source), str(out_file)]) == 0
    torch.testing.assert_close(read_image(out_file), expected, rtol=0, atol=0)
    folder = tmp_path / "outdir"
    folder.mkdir()
    assert main_encrypt(["--key", str(key_path), str(source), str(folder)]) == 0
    torch.testing.assert_close(read_image(folder / "b.png"), expected, rtol=0, atol=0)
    back = tmp_path / "back.png"
    assert main_decrypt(["--key", str(key_path), str(out_file), str(back)]) == 0
    torch.testing.assert_close(read_image(back), read_image(source), rtol=0, atol=0)


def test_resize_equals_resize_uint8_then_encrypt(key_path: Path, tmp_path: Path) -> None:
    root = tmp_path / "mixed"
    sources = [
        _save(root / "big.png", _pixels(10, 40, 24)),
        _save(root / "odd.png", _pixels(11, 30, 30)),
        _save(root / "same.png", _pixels(12)),
        _save(root / "zbig.png", _pixels(13, 40, 24)),
    ]
    out = tmp_path / "enc"
    assert (
        main_encrypt(
            ["--key", str(key_path), "--resize", "16", "--batch-size", "3", str(root), str(out)]
        )
        == 0
    )
    cipher = build_cipher("proposed", key=load_key(key_path))
    for source in sources:
        expected = cipher.encrypt(resize_uint8(read_image(source)[None], SIZE))[0]
        torch.testing.assert_close(read_image(out / source.name), expected, rtol=0, atol=0)


@pytest.mark.parametrize(
    "case",
    [
        "not_multiple",
        "other_size",
        "corrupt_key",
        "missing_key",
        "unreadable",
        "truncated",
        "out_in_in",
        "out_is_in",
        "missing_in",
        "resize_mismatch",
        "name_clash",
        "no_images",
    ],
)
def test_encrypt_errors_are_one_line_and_write_nothing(
    case: str, key_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, out = tmp_path / "in", tmp_path / "out"
    _save(root / "ok.png", _pixels(0))
    args = ["--key", str(key_path)]
    expected = {
        "not_multiple": "in/sub/x.png is 18x18 (not a multiple of the block size 4), but key",
        "other_size": "in/sub/x.png is 32x32, but key",
        "corrupt_key": "checksum mismatch",
        "missing_key": "does not exist",
        "unreadable": "in/sub/x.png: cannot read image",
        "truncated": "in/sub/x.png: cannot read image",
        "out_in_in": "is inside IN",
        "out_is_in": "is inside IN",
        "missing_in": "does not exist",
        "resize_mismatch": "--resize 8x8 differs from the key's image size 16x16",
        "name_clash": "would both become",
        "no_images": "no images found",
    }[case]
    if case == "not_multiple":
        _save(root / "sub" / "x.png", _pixels(1, 18, 18))
    elif case == "other_size":
        _save(root / "sub" / "x.png", _pixels(1, 32, 32))
    elif case == "corrupt_key":
        data = json.loads(key_path.read_text())
        data["pixel_perm"] = data["pixel_perm"][::-1]
        key_path.write_text(json.dumps(data))
    elif case == "missing_key":
        args = ["--key", str(tmp_path / "nope.key")]
    elif case == "unreadable":
        (root / "sub").mkdir()
        (root / "sub" / "x.png").write_bytes(b"definitely not a png")
    elif case == "truncated":
        full = _save(tmp_path / "full.png", _pixels(1), compress_level=0).read_bytes()
        (root / "sub").mkdir()
        (root / "sub" / "x.png").write_bytes(full[: len(full) // 2])
    elif case == "out_in_in":
        out = root / "enc"
    elif case == "out_is_in":
        out = root
    elif case == "missing_in":
        root = tmp_path / "absent"
    elif case == "resize_mismatch":
        args += ["--resize", "8"]
    elif case == "name_clash":
        _save(root / "ok.jpg", _pixels(1))
    elif case == "no_images":
        (root / "ok.png").unlink()
    before = _files(tmp_path)
    assert main_encrypt([*args, str(root), str(out)]) == 2
    line = _error_line(capsys.readouterr().err, "vitlearnenc-encrypt")
    assert expected in line
    if case in ("not_multiple", "other_size"):
        assert "--resize 16x16" in line
    assert _files(tmp_path) == before  # nothing written, no temporary files


def test_bad_image_in_a_later_batch_keeps_finished_batches(
    key_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, out = tmp_path / "in", tmp_path / "out"
    for index in range(6):
        _save(root / f"{index}.png", _pixels(index))
    good = (root / "3.png").read_bytes()
    (root / "3.png").write_bytes(good[:60])  # header intact, pixel data cut short
    args = ["--key", str(key_path), "--batch-size", "2", str(root), str(out)]
    assert main_encrypt(args) == 2
    line = _error_line(capsys.readouterr().err, "vitlearnenc-encrypt")
    assert "3.png" in line and "--skip-bad" in line
    assert _files(out) == {"0.png", "1.png"}  # the failing batch (2, 3) wrote nothing
    assert main_encrypt([*args[:-2], "--skip-bad", *args[-2:]]) == 0
    err = capsys.readouterr().err
    assert "skipped 1 unreadable image(s)" in err and "3.png" in err
    assert _files(out) == {"0.png", "1.png", "2.png", "4.png", "5.png"}


def test_rerun_skips_existing_and_overwrite_redoes(
    tree: Path, key_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "enc"
    args = ["--key", str(key_path), str(tree), str(out)]
    assert main_encrypt(args) == 0
    old = 1_000_000_000
    for path in out.rglob("*.png"):
        os.utime(path, ns=(old, old))
    capsys.readouterr()
    assert main_encrypt(args) == 0
    assert "kept 5 existing" in capsys.readouterr().err
    assert all(path.stat().st_mtime_ns == old for path in out.rglob("*.png"))
    assert main_encrypt(["--overwrite", *args]) == 0
    assert all(path.stat().st_mtime_ns != old for path in out.rglob("*.png"))


def test_interrupted_run_resumes_to_the_same_result(
    tree: Path,
    key_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    reference, out = tmp_path / "reference", tmp_path / "enc"
    assert main_encrypt(["--key", str(key_path), str(tree), str(reference)]) == 0
    written = []

    def write_then_interrupt(image: torch.Tensor, path: Path) -> Path:
        if len(written) == 2:
            raise KeyboardInterrupt
        written.append(path)
        return write_png_atomic(image, path)

    monkeypatch.setattr(folder_jobs, "write_png_atomic", write_then_interrupt)
    args = ["--key", str(key_path), str(tree), str(out)]
    assert main_encrypt(args) == 130
    assert "rerun the same command" in capsys.readouterr().err
    assert _files(out) == {str(p.relative_to(out)) for p in written}
    monkeypatch.undo()
    # a killed process can also leave a temporary file behind
    stale = out / "dogs" / f".d.png.1234abcd{TEMP_SUFFIX}"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"half a png")
    assert main_encrypt(args) == 0
    assert "removed 1 temporary file" in capsys.readouterr().err
    assert _files(out) == _files(reference)
    for name in _files(reference):
        assert (out / name).read_bytes() == (reference / name).read_bytes()


def test_decrypt_errors(key_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "enc"
    _save(root / "x.png", _pixels(0, 32, 32))
    assert main_decrypt(["--key", str(key_path), str(root), str(tmp_path / "dec")]) == 2
    assert "makes 16x16 encrypted images" in _error_line(
        capsys.readouterr().err, "vitlearnenc-decrypt"
    )
    none_key = tmp_path / "none.key"
    save_key(generate_key("none", 32, 4), none_key)
    assert main_decrypt(["--key", str(none_key), str(root), str(tmp_path / "dec")]) == 2
    assert "cannot be decrypted" in _error_line(capsys.readouterr().err, "vitlearnenc-decrypt")
    assert not (tmp_path / "dec").exists()


def test_decrypt_refuses_per_image_pe_keys(
    key_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if "pe" not in list_ciphers():
        pytest.skip("the pe cipher is not registered")
    pe_key = tmp_path / "pe.key"
    save_key(generate_key("pe", SIZE, BLOCK, seed=0), pe_key)
    root = tmp_path / "plain"
    _save(root / "x.png", _pixels(0))
    assert main_encrypt(["--key", str(pe_key), "--quiet", str(root), str(tmp_path / "enc")]) == 0
    assert main_decrypt(["--key", str(pe_key), str(tmp_path / "enc"), str(tmp_path / "dec")]) == 2
    assert "cannot be decrypted" in _error_line(capsys.readouterr().err, "vitlearnenc-decrypt")
    assert not (tmp_path / "dec").exists()


@pytest.mark.parametrize(
    ("out_name", "expected"), [("x.jpg", "must be a .png file"), ("in/x.png", "is IN itself")]
)
def test_single_file_bad_out(
    key_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], out_name: str, expected: str
) -> None:
    source = _save(tmp_path / "in" / "x.png", _pixels(0))
    before = _files(tmp_path)
    assert main_encrypt(["--key", str(key_path), str(source), str(tmp_path / out_name)]) == 2
    assert expected in _error_line(capsys.readouterr().err, "vitlearnenc-encrypt")
    assert _files(tmp_path) == before


def test_readable_key_file_is_warned_about_not_fatal(
    tree: Path, key_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key_path.chmod(0o644)
    assert main_encrypt(["--key", str(key_path), "--quiet", str(tree), str(tmp_path / "enc")]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vitlearnenc-encrypt: warning: key file")
    assert "chmod 600" in err[0]


class _SideBySide(Cipher):
    """Test cipher whose output shape differs from its input: RGB (3, H, W) -> (1, H, 3W) with
    the colour planes side by side, the layout of grayscale-based EtC."""

    name = "test_side_by_side"

    @classmethod
    def generate_key(
        cls, image_size: tuple[int, int], block_size: int, rng: Any, **options: Any
    ) -> CipherKey:
        return CipherKey(cls.name, image_size, block_size, {})

    @classmethod
    def validate_key(cls, key: CipherKey) -> None:
        return None

    def output_shape(self, channels: int) -> tuple[int, int, int]:
        height, width = self.image_size
        return (1, height, channels * width)

    def encrypt(self, images: torch.Tensor) -> torch.Tensor:
        self.check_input(images)
        batch, channels, height, width = images.shape
        return images.permute(0, 2, 1, 3).reshape(batch, 1, height, channels * width)

    def decrypt(self, images: torch.Tensor) -> torch.Tensor:
        height, width = self.image_size
        self.check_input(images, self.output_shape(3)[1:])
        return images.reshape(images.shape[0], height, 3, width).permute(0, 2, 1, 3).contiguous()

    def key_space_bits(self) -> float:
        return 0.0

    def is_patch_aligned(self, patch_size: int) -> bool:
        return False


def test_cipher_with_other_output_shape(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(cipher_registry._REGISTRY, _SideBySide.name, _SideBySide)
    key_path = tmp_path / "side.key"
    save_key(generate_key(_SideBySide.name, SIZE, BLOCK), key_path)
    enc, dec = tmp_path / "enc", tmp_path / "dec"
    assert main_encrypt(["--key", str(key_path), str(tree), str(enc)]) == 0
    with Image.open(enc / "a.png") as image:
        assert (image.mode, image.size) == ("L", (3 * SIZE, SIZE))
    assert main_decrypt(["--key", str(key_path), str(enc), str(dec)]) == 0
    for source in list_images(tree):
        decrypted = read_image(dec / source.relative_to(tree).with_suffix(".png"))
        torch.testing.assert_close(decrypted, read_image(source), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("main", "parser"),
    [
        (main_keygen, keygen_cli.build_parser()),
        (main_encrypt, encrypt_cli.build_parser("encrypt")),
        (main_decrypt, encrypt_cli.build_parser("decrypt")),
    ],
    ids=["keygen", "encrypt", "decrypt"],
)
def test_help_explains_every_option(
    main: Any, parser: argparse.ArgumentParser, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for action in parser._actions:
        assert action.help, f"{action.dest} has no help text"
        assert " ".join(action.help.split()[:3]) in text  # shown (argparse rewraps lines)
        assert all(option in text for option in action.option_strings)


def test_installed_console_script(tree: Path, key_path: Path, tmp_path: Path) -> None:
    """The entry point in pyproject works as an installed script, exit status and all (one run:
    torch's import costs seconds; every other path is covered in-process above)."""
    out = tmp_path / "enc"
    argv = [str(BIN / "vitlearnenc-encrypt"), "--key", str(key_path), str(tree), str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == f"vitlearnenc-encrypt: encrypted 5 image(s) into {out}"
    cipher = build_cipher("proposed", key=load_key(key_path))
    expected = cipher.encrypt(read_image(tree / "a.png")[None])[0]
    torch.testing.assert_close(read_image(out / "a.png"), expected, rtol=0, atol=0)


# ---------------------------------------------------------------------- image files


def test_read_image_converts_to_rgb(tmp_path: Path) -> None:
    gray = _pixels(0, channels=1)
    rgba = _pixels(1, channels=4)
    image = read_image(_save(tmp_path / "g.png", gray))
    assert image.shape == (3, SIZE, SIZE) and image.dtype == torch.uint8
    for channel in image:
        torch.testing.assert_close(channel, torch.from_numpy(gray), rtol=0, atol=0)
    image = read_image(_save(tmp_path / "rgba.png", rgba))
    torch.testing.assert_close(
        image, torch.from_numpy(rgba[..., :3]).permute(2, 0, 1), rtol=0, atol=0
    )
    single = read_image(tmp_path / "g.png", mode="L")
    torch.testing.assert_close(single, torch.from_numpy(gray)[None], rtol=0, atol=0)


def test_read_image_refuses_16_bit_and_garbage(tmp_path: Path) -> None:
    wide = _save(tmp_path / "wide.png", np.full((4, 4), 1000, dtype=np.uint16))
    with pytest.raises(ImageReadError, match="16-bit or float"):
        read_image(wide)
    (tmp_path / "junk.jpg").write_bytes(b"\xff\xd8 junk")
    with pytest.raises(ImageReadError, match="junk.jpg: cannot read image"):
        read_image(tmp_path / "junk.jpg")


def test_list_images_is_sorted_recursive_and_skips_hidden(tree: Path) -> None:
    _save(tree / ".hidden" / "x.png", _pixels(0))
    _save(tree / "cats" / "._b.jpg", _pixels(0))
    _save(tree / "UPPER.PNG", _pixels(0))
    found = [str(p.relative_to(tree)) for p in list_images(tree)]
    assert found == [
        "UPPER.PNG",
        "a.png",
        "cats/b.jpg",
        "cats/small/c.png",
        "dogs/d.png",
        "dogs/e.bmp",
    ]


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_write_png_atomic_round_trips(tmp_path: Path, channels: int) -> None:
    image = (
        torch.from_numpy(_pixels(5, 6, 10, channels=4))[..., :channels]
        .permute(2, 0, 1)
        .contiguous()
    )
    path = write_png_atomic(image, tmp_path / "deep" / "x.png")
    with Image.open(path) as written:
        array = np.array(written)
    torch.testing.assert_close(
        torch.from_numpy(array.reshape(6, 10, channels)).permute(2, 0, 1), image, rtol=0, atol=0
    )
    assert _files(tmp_path) == {"deep/x.png"}


def test_write_png_atomic_leaves_nothing_when_encoding_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def half_write(self: Image.Image, handle: Any, **kwargs: Any) -> None:
        handle.write(b"\x89PNG partial")
        raise OSError("disk full")

    target = tmp_path / "x.png"
    target.write_bytes(b"previous complete file")
    monkeypatch.setattr(Image.Image, "save", half_write)
    with pytest.raises(OSError, match="disk full"):
        write_png_atomic(torch.zeros(3, 4, 4, dtype=torch.uint8), target)
    assert _files(tmp_path) == {"x.png"}
    assert target.read_bytes() == b"previous complete file"


# ------------------------------------------------------------------------------ slow


@pytest.mark.slow
def test_20000_images_stream_in_bounded_memory(key_path: Path, tmp_path: Path) -> None:
    """Peak RSS growth while encrypting 20,000 images stays far below holding them in memory.

    32x32 images (not 8x8) so that the data itself (20,000 x 3 KiB = 59 MiB as tensors, more as
    decoded PIL images) would clearly exceed the bound if the tool kept them; torch's own
    ~0.8 GB import is excluded by measuring after a warm-up run in the same process.
    """
    key_32 = tmp_path / "k32.key"
    save_key(generate_key("proposed", 32, 4, seed=1), key_32)
    root = tmp_path / "many"
    pixels = _pixels(0, 32, 32)
    encoded = _save(tmp_path / "one.png", pixels, compress_level=0).read_bytes()
    for folder in range(20):
        (root / f"{folder:02d}").mkdir(parents=True)
        for index in range(1000):
            (root / f"{folder:02d}" / f"{index:04d}.png").write_bytes(encoded)
    _save(tmp_path / "warm" / "w.png", pixels)
    script = textwrap.dedent(
        f"""
        import resource, sys
        from vitlearnenc.cli.encrypt import main_encrypt
        key = {str(key_32)!r}
        assert main_encrypt(["--key", key, "--quiet", {str(tmp_path / "warm")!r}, {str(tmp_path / "warm_out")!r}]) == 0
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        assert main_encrypt(["--key", key, "--quiet", {str(root)!r}, {str(tmp_path / "out")!r}]) == 0
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print((after - before) / 1024)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr
    growth_mib = float(result.stdout.strip().splitlines()[-1])
    assert growth_mib < 40, f"peak RSS grew by {growth_mib:.1f} MiB"
    assert len(list_images(tmp_path / "out")) == 20_000


def test_keygen_old_method_flag_names_its_new_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--method`` became ``--cipher`` (the apps' ``cipher=``): the old flag is refused with a
    line that names the new one, and the flag it suggests works."""
    geometry = ["--image-size", "16", "--block-size", "4"]
    out = tmp_path / "k.key"
    assert main_keygen(["--method", "le", *geometry, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "error: --method is now --cipher: say --cipher le" in err
    assert not out.exists()
    assert main_keygen(["--cipher", "le", *geometry, "--out", str(out)]) == 0
    assert load_key(out).method == "le"
