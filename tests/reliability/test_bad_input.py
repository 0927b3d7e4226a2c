"""Bad input: one clear line naming the problem (and the fix), a non-zero exit, no partial
output. The Hydra apps are run through their console-script ``main`` in this process (what
the user sees); one slow test runs the installed script itself."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from hydra.core.global_hydra import GlobalHydra
from PIL import Image

from tests.helpers.hydra import composed
from tests.reliability.helpers import TINY, run_console, written_files
from vitlearnenc.ciphers import generate_key, save_key
from vitlearnenc.cli import train as train_cli
from vitlearnenc.cli.encrypt import main_decrypt, main_encrypt
from vitlearnenc.data import ImageFolderDataModule
from vitlearnenc.utils.imagefiles import TEMP_SUFFIX, list_images
from vitlearnenc.utils.markers import MARKER_NAME, read_marker

FAST = [*TINY, "trainer=fast_dev_run", "logger=none", "callbacks=none"]
#: FAST without the synthetic data's own settings, for runs on other datasets
FAST_OTHER_DATA = [a for a in FAST if not a.startswith(("data", "image_size", "model.patch_size"))]
HYDRA_OWN = (".hydra/", ".log")  # Hydra writes these before the task starts


@contextlib.contextmanager
def hydra_main_args(
    prog: str, args: list[str], monkeypatch: pytest.MonkeyPatch, full_error: bool = False
) -> Iterator[None]:
    """``sys.argv`` for a Hydra ``main`` run in this process; undoes Hydra's global state and
    the job-logging handlers it adds to the root logger."""
    monkeypatch.setattr(sys, "argv", [prog, *args])
    if full_error:
        monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    else:
        monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    GlobalHydra.instance().clear()
    try:
        yield
    finally:
        GlobalHydra.instance().clear()
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
                handler.close()
        root.setLevel(level)


def run_app(
    main: Callable[[], None],
    prog: str,
    args: list[str],
    log_dir: Path,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[int, str]:
    """Run a Hydra console-script ``main`` with ``args``; returns (exit status, stderr)."""
    capfd.readouterr()
    with hydra_main_args(prog, [*args, f"paths.log_dir={log_dir}"], monkeypatch):
        try:
            main()
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
    return code, capfd.readouterr().err


def ours(log_dir: Path) -> set[str]:
    """Files under ``log_dir`` that are not Hydra's own run records."""
    return {f for f in written_files(log_dir) if not f.endswith(HYDRA_OWN) and "/.hydra/" not in f}


def assert_one_line(err: str, prog: str, *fragments: str) -> None:
    lines = [line for line in err.splitlines() if line.startswith(f"{prog}: error: ")]
    assert len(lines) == 1, err[-2000:]
    assert "Traceback" not in err, err[-2000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture
def app(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[[list[str]], tuple[int, str]]:
    """``vitlearnenc-train`` with the given overrides, logging under ``tmp_path / "logs"``."""
    return lambda args: run_app(
        train_cli.main, "vitlearnenc-train", args, tmp_path / "logs", capfd, monkeypatch
    )


# --------------------------------------------------------------------- configs and keys
def _key_file(tmp_path: Path, name: str, method: str = "proposed", size: int = 64) -> Path:
    return save_key(
        generate_key(method, size, 8 if method == "proposed" else 4, seed=1), tmp_path / name
    )


def _tampered(path: Path) -> Path:
    data = json.loads(path.read_text())
    data["block_perm"][0], data["block_perm"][1] = data["block_perm"][1], data["block_perm"][0]
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    ("case", "fragments"),
    [
        ("not_divisible", ["cipher.block_size=8 does not fit image_size=60"]),
        ("key_other_size", ["was made for 32x32 images, not 64x64"]),
        ("key_other_method", ["is a 'le' key, but the 'proposed' cipher was asked for"]),
        ("key_garbage", ["not valid JSON; the key file is corrupt or truncated"]),
        ("key_truncated", ["not valid JSON; the key file is corrupt or truncated"]),
        ("key_tampered", ["checksum mismatch", "use an intact copy of the key"]),
        ("key_missing", ["does not exist; create one with vitlearnenc-keygen"]),
        ("cipher_name", ["unknown cipher 'rot13'", "proposed"]),
        ("model_name", ["vit_gigantic"]),
        ("key_path_unset", ["key.path"]),
    ],
)
def test_train_errors_are_one_line_with_no_output(
    tmp_path: Path, app: Callable[[list[str]], tuple[int, str]], case: str, fragments: list[str]
) -> None:
    key = _key_file(tmp_path, "owner.key")
    (tmp_path / "garbage.key").write_bytes(b"\x00\xff not a key")
    (tmp_path / "truncated.key").write_text(key.read_text()[:200])
    args = {
        "not_divisible": lambda: ["image_size=60", "key=seed"],
        "key_other_size": lambda: ["key=file", f"key.path={_key_file(tmp_path, 'k32', size=32)}"],
        "key_other_method": lambda: ["key=file", f"key.path={_key_file(tmp_path, 'le', 'le')}"],
        "key_garbage": lambda: ["key=file", f"key.path={tmp_path / 'garbage.key'}"],
        "key_truncated": lambda: ["key=file", f"key.path={tmp_path / 'truncated.key'}"],
        "key_tampered": lambda: ["key=file", f"key.path={_tampered(key)}"],
        "key_missing": lambda: ["key=file", f"key.path={tmp_path / 'nowhere.key'}"],
        "cipher_name": lambda: ["cipher.name=rot13", "key=seed"],
        "model_name": lambda: ["model.name=vit_gigantic", "key=seed"],
        "key_path_unset": lambda: ["key=file"],
    }[case]()
    code, err = app([*FAST, *args])
    assert code == 2
    assert_one_line(err, "vitlearnenc-train", *fragments)
    assert ours(tmp_path / "logs") == set()


@pytest.mark.parametrize(
    ("override", "named"),
    [("cipher=rot13", "cipher/rot13"), ("model=vit_gigantic", "model/vit_gigantic")],
)
def test_unknown_config_group_option_is_hydras_clear_error(
    tmp_path: Path, app: Callable[[list[str]], tuple[int, str]], override: str, named: str
) -> None:
    code, err = app([*FAST, override])
    assert code != 0
    assert f"Could not find '{named}'" in err and "Available options" in err
    assert "Traceback" not in err
    assert not (tmp_path / "logs").exists()


def test_full_traceback_on_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args = [*FAST, "image_size=60", "key=seed", f"paths.log_dir={tmp_path}"]
    with (
        hydra_main_args("vitlearnenc-train", args, monkeypatch, full_error=True),
        pytest.raises(ValueError, match="does not fit image_size=60"),
    ):
        train_cli.main()


# ---------------------------------------------------------------------------------- data
def test_missing_data_offline_leaves_no_key_behind(
    tmp_path: Path,
    app: Callable[[list[str]], tuple[int, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """CIFAR-10 to download with no network: one line saying where to point data.root, and
    the random key drawn for the run is not left behind (nothing was encrypted with it)."""

    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    code, err = app(
        [
            *FAST_OTHER_DATA,
            "data=cifar10",
            f"data.root={tmp_path / 'nothing'}",
            "key=random",
            "data.num_workers=0",
        ]
    )
    assert code == 2
    assert_one_line(
        err,
        "vitlearnenc-train",
        "CIFAR-10 not found under",
        "download failed (offline?)",
        "data.root",
    )
    assert ours(tmp_path / "logs") == set()  # no key.json, no checkpoints, no logs


def test_missing_folder_root(tmp_path: Path, app: Callable[[list[str]], tuple[int, str]]) -> None:
    code, err = app(
        [
            *FAST_OTHER_DATA,
            "data=image_folder",
            f"data.root={tmp_path / 'gone'}",
            "key=seed",
            "data.num_workers=0",
        ]
    )
    assert code == 2
    assert_one_line(err, "vitlearnenc-train", f"{tmp_path / 'gone'} does not exist", "data.root")
    assert ours(tmp_path / "logs") == set()


# ------------------------------------------------------------------- pre-encrypted folders
def _image_tree(root: Path, count: int = 4, size: int = 16) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for label in ("ant", "bee"):
            folder = root / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{index}.png")
    return root


@pytest.fixture
def encrypted_tree(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(plain folder, encrypted copy, key file) made with vitlearnenc-encrypt."""
    plain = _image_tree(tmp_path / "plain")
    key = save_key(generate_key("proposed", 16, 4, seed=3), tmp_path / "owner.key")
    out = tmp_path / "encrypted"
    assert main_encrypt(["--key", str(key), "--quiet", str(plain), str(out)]) == 0
    return plain, out, key


def test_encrypt_marks_its_output_with_public_facts_only(
    encrypted_tree: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    plain, out, key_path = encrypted_tree
    marker = json.loads((out / MARKER_NAME).read_text())
    key = generate_key("proposed", 16, 4, seed=3)
    assert marker == {
        "encrypted_by": "vitlearnenc-encrypt",
        "version": 1,
        "method": "proposed",
        "image_size": [16, 16],
        "block_size": 4,
        "key_fingerprint": key.fingerprint,
        "dtype": "uint8",  # PNG images (float32/float16 for .npy arrays of orthomix)
        "shape": [3, 16, 16],
    }
    # the marker is no image: decrypting gives back exactly the plain tree, without it
    assert main_decrypt(["--key", str(key_path), "--quiet", str(out), str(tmp_path / "dec")]) == 0
    assert written_files(tmp_path / "dec") == written_files(plain)
    for name in written_files(plain):
        assert np.array_equal(
            np.array(Image.open(tmp_path / "dec" / name)), np.array(Image.open(plain / name))
        )


def test_keyed_cipher_on_an_encrypted_folder_is_refused(
    encrypted_tree: tuple[Path, Path, Path],
    tmp_path: Path,
    app: Callable[[list[str]], tuple[int, str]],
) -> None:
    _, out, key = encrypted_tree
    code, err = app(
        [
            *FAST_OTHER_DATA,
            "data=image_folder",
            f"data.root={out}",
            "data.num_workers=0",
            "image_size=16",
            "model.patch_size=4",
            "key=file",
            f"key.path={key}",
        ]
    )
    assert code == 2
    assert_one_line(
        err,
        "vitlearnenc-train",
        "already encrypted by vitlearnenc-encrypt",
        "use cipher=pre_encrypted",
    )
    assert ours(tmp_path / "logs") == set()


def test_cipher_none_warns_only_without_the_marker(
    encrypted_tree: tuple[Path, Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    plain, out, _ = encrypted_tree
    for root, warned in ((out, False), (plain, True)):
        caplog.clear()
        module = ImageFolderDataModule(root=str(root), cipher="none", num_workers=0, batch_size=4)
        module.setup("fit")
        assert ("has no .vitlearnenc.json marker" in caplog.text) is warned
    caplog.clear()
    module = ImageFolderDataModule(root=str(out), cipher="plain", num_workers=0, batch_size=4)
    module.setup("fit")
    assert "use cipher=pre_encrypted for pre-encrypted data" in caplog.text


def test_prediction_folder_is_checked_too(encrypted_tree: tuple[Path, Path, Path]) -> None:
    from vitlearnenc.data import PredictFolderDataModule

    _, out, key = encrypted_tree
    module = PredictFolderDataModule(
        root=str(out / "test"), cipher="proposed", key_file=str(key), block_size=4, num_workers=0
    )
    with pytest.raises(ValueError, match="already encrypted by vitlearnenc-encrypt"):
        module.setup("predict")


def test_encrypt_refuses_to_mix_keys_or_encrypt_twice(
    encrypted_tree: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plain, out, key = encrypted_tree
    other = save_key(generate_key("proposed", 16, 4, seed=4), tmp_path / "other.key")
    marked = tmp_path / "marked"  # another encrypted folder, to decrypt into by mistake
    marked.mkdir()
    (marked / MARKER_NAME).write_text((out / MARKER_NAME).read_text())
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    capsys.readouterr()
    cases = [
        (main_encrypt, other, plain, out, "holds images encrypted with key"),
        (main_encrypt, key, out, tmp_path / "twice", "is already encrypted by vitlearnenc-encrypt"),
        (main_decrypt, other, out, tmp_path / "dec", "decrypt with the key that encrypted it"),
        (main_decrypt, key, out, marked, "holds encrypted images"),
    ]
    for main, key_path, source, target, expected in cases:
        assert main(["--key", str(key_path), str(source), str(target)]) == 2
        assert expected in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before  # nothing touched
    assert not (tmp_path / "twice").exists() and not (tmp_path / "dec").exists()
    assert written_files(marked) == {MARKER_NAME}
    # --overwrite re-encrypts everything with the new key and re-marks the folder
    assert main_encrypt(["--key", str(other), "--overwrite", "--quiet", str(plain), str(out)]) == 0
    assert read_marker(out).key_fingerprint == generate_key("proposed", 16, 4, seed=4).fingerprint


# ------------------------------------------------------------------------ corrupt images
def test_corrupt_images_are_skipped_with_a_counted_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = _image_tree(tmp_path / "data")
    (root / "train" / "ant" / "0.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    full = (root / "train" / "bee" / "1.png").read_bytes()
    (root / "train" / "bee" / "1.png").write_bytes(full[: len(full) // 2])
    module = ImageFolderDataModule(root=str(root), cipher="plain", num_workers=0, batch_size=2)
    module.setup("fit")
    assert "skipped 2 of 8 image files" in caplog.text and "ant/0.png" in caplog.text
    assert len(module.train_set) + len(module.val_set) == 6
    assert module.num_classes == 2  # a corrupt file cannot shift the labels


def test_encrypt_stops_at_a_corrupt_image_or_skips_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _image_tree(tmp_path / "data", count=2)
    (root / "test" / "bee" / "1.png").write_bytes(b"not an image at all")
    key = save_key(generate_key("proposed", 16, 4, seed=3), tmp_path / "k.key")
    out = tmp_path / "out"
    assert main_encrypt(["--key", str(key), "--quiet", str(root), str(out)]) == 2
    err = capsys.readouterr().err
    assert "test/bee/1.png" in err and "--skip-bad" in err and "Traceback" not in err
    assert not out.exists()  # found from the headers, before anything was written
    assert main_encrypt(["--key", str(key), "--skip-bad", "--quiet", str(root), str(out)]) == 0
    assert "skipped 1 unreadable image(s)" in capsys.readouterr().err
    assert len(list_images(out)) == 7 and not list(out.rglob(f"*{TEMP_SUFFIX}"))


# ------------------------------------------------------------------------ console script
@pytest.mark.slow
def test_installed_script_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    result = run_console(
        "vitlearnenc-train",
        [*FAST, "image_size=60", "key=seed", f"paths.log_dir={tmp_path}"],
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert_one_line(result.stderr, "vitlearnenc-train", "does not fit image_size=60")
    full = run_console(
        "vitlearnenc-train",
        [*FAST, "image_size=60", "key=seed", f"paths.log_dir={tmp_path}"],
        cwd=tmp_path,
        env={"HYDRA_FULL_ERROR": "1"},
    )
    assert full.returncode != 0 and "Traceback" in full.stderr and "ConfigError" in full.stderr


def test_one_line_errors_leave_multirun_jobs_to_hydra(tmp_path: Path) -> None:
    """In a sweep, a failing job is Hydra's to report (it stops the sweep with the job's
    error), so the wrapper re-raises instead of exiting the whole process."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import open_dict, read_write

    from vitlearnenc.cli.common import one_line_errors
    from vitlearnenc.runs.errors import ConfigError

    @one_line_errors("prog")
    def task(cfg: object) -> None:
        raise ConfigError("bad")

    with composed("train", [], tmp_path) as cfg:
        hydra_cfg = HydraConfig.get()
        with read_write(hydra_cfg), open_dict(hydra_cfg):
            hydra_cfg.mode = RunMode.MULTIRUN
        with pytest.raises(ConfigError, match="bad"):
            task(cfg)
        with read_write(hydra_cfg), open_dict(hydra_cfg):
            hydra_cfg.mode = RunMode.RUN
        with pytest.raises(SystemExit) as exit_:
            task(cfg)
        assert exit_.value.code == 2
