"""Key secrecy audit: no entry point writes key material anywhere (files, logs, console).

Training, evaluation, prediction, the attacks and sweeps run with a key from a key file and
from a seed, every keyed cipher of ``conf/cipher`` trains once, and ``model.key_adapt=true`` runs
for the absorbable ciphers; then every file they wrote (Hydra's ``.hydra/`` configs and job logs, CSV,
TensorBoard events, wandb offline runs, checkpoints, metrics.json) and their stdout/stderr
are searched for the key's permutations (and inverses) in every plausible encoding. A seed is public by
design, but the permutations derived from it are key material all the same. The key file
itself (``key.json`` of ``key=random``, or the owner's file) is the only place allowed.
For the orthomix ciphers the matrix expanded from the secret is key material too and is searched
for as raw float bytes.

What no scanner can see: after ``model.key_adapt=true`` the saved weights are *key-equivalent*
(a keyed function of public weights; with those, K1 and A come back exactly, see
``tests/attacks/test_frontier_attacks.py``). The runs say so in their log, and the audit checks
that they do.
"""

from __future__ import annotations

import base64
import json
import logging
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers.hydra import composed
from tests.reliability.helpers import (
    REPO,
    TINY,
    KeyLeakScanner,
    key_arrays,
    run_console,
    written_files,
)
from vitlearnenc.ciphers import (
    CipherKey,
    LinearPatchCipher,
    build_cipher,
    generate_key,
    get_cipher_class,
    save_key,
)
from vitlearnenc.cli.common import close_wandb
from vitlearnenc.cli.evaluate import evaluate
from vitlearnenc.cli.train import train
from vitlearnenc.models.key_transform import absorbable_cipher_names

SEED = 4242  # key=seed's seed (public) and the owner key's seed (for a deterministic test)
SHORT = [
    *TINY,
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "+trainer.limit_val_batches=1",
    "+trainer.limit_test_batches=1",
    "trainer.log_every_n_steps=1",
    "logger=many",
    "callbacks.progress_bar=null",
]


@pytest.fixture
def owner_key(tmp_path: Path) -> tuple[Path, CipherKey]:
    """A proposed-cipher key for 64x64 images, block 8, in a 0600 key file outside the runs."""
    key = generate_key("proposed", 64, 8, seed=SEED + 1)
    path = save_key(key, tmp_path / "secret" / "owner.key")
    return path, key


@pytest.fixture(autouse=True)
def _offline_wandb(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")


_SCAN_PREFIX = 64  # entries per field (and per inverse) that the per-cipher audit looks for


def _scan_view(key: CipherKey) -> CipherKey:
    """What the per-cipher audit searches for: the first 64 entries of every field with a
    large alphabet (permutations, secrets) and of every permutation's inverse.

    ELE's 24,576 key entries would otherwise make tens of thousands of patterns, and fields
    over 2-8 symbols (EtC's flip/negation/colour choices) match unrelated bytes by chance, so
    they are left out; a dump of any field also dumps its start, and truncated reprs show it.
    """
    material = {}
    for name, values in key_arrays(key).items():
        if np.unique(values).size > 8:
            material[name] = values[:_SCAN_PREFIX]
    return CipherKey(key.method, key.image_size, key.block_size, material, key.options)


def scanner_for(keys: list[CipherKey]) -> KeyLeakScanner:
    """A :class:`KeyLeakScanner` over :func:`_scan_view` of the keys that also looks for the
    matrices of linear patch ciphers (the start of their first row and column as
    float32/float64 bytes, both byte orders)."""
    scanner = KeyLeakScanner([_scan_view(key) for key in keys])
    for key in keys:
        cipher = get_cipher_class(key.method)(key)
        if not isinstance(cipher, LinearPatchCipher):
            continue
        matrix = cipher.mixing_matrix(3)
        for what, values in (("row", matrix[0, :4]), ("column", matrix[:4, 0])):
            for dtype in ("<f4", ">f4", "<f8", ">f8"):
                label = f"{key.fingerprint} matrix {what} as {dtype}"
                scanner.byte_patterns.append((label, values.astype(dtype).tobytes()))
    return scanner


def _conf_ciphers() -> list[str]:
    """Every keyed cipher of conf/cipher, also one that changes the image layout (etc_gray:
    one channel, H x 3W), whose model input the train app derives from the cipher."""
    names = sorted(p.stem for p in (REPO / "conf" / "cipher").glob("*.yaml"))
    return [name for name in names if get_cipher_class(name).keyed]


def _assert_no_leaks(scanner: KeyLeakScanner, root: Path, output: str, exclude: list[Path]) -> None:
    leaks = scanner.scan_tree(root, exclude=exclude)
    assert not leaks, f"key material written to: {json.dumps(leaks, indent=1)}"
    assert not scanner.scan_text(output), "key material printed on stdout/stderr"


# ------------------------------------------------------------------- the scanner itself
def test_scanner_finds_material_in_every_encoding(tmp_path: Path) -> None:
    """The audit can fail: each plausible way of writing a permutation is found."""
    key = generate_key("proposed", 64, 8, seed=1)
    perm = key["block_perm"]
    window = perm[5:30]
    writers = {
        "json": lambda p: p.write_text(json.dumps({"k": perm.tolist()})),
        "str_list": lambda p: p.write_text(str(window.tolist())),
        "numpy_repr": lambda p: p.write_text(repr(perm.reshape(8, 8))),
        "torch_repr": lambda p: p.write_text(str(torch.tensor(window.tolist()).float())),
        "csv": lambda p: p.write_text("\n".join(str(v) for v in window)),
        "yaml": lambda p: p.write_text("perm:\n" + "".join(f"  - {v}\n" for v in window)),
        "torch_save": lambda p: torch.save({"buf": torch.tensor(perm.tolist())}, p),
        "numpy_int32": lambda p: np.save(p.open("wb"), perm.astype(np.int32)),
        "uint8_bytes": lambda p: p.write_bytes(b"x" + perm.astype(np.uint8).tobytes()),
        "big_endian": lambda p: p.write_bytes(perm.astype(">i8").tobytes()),
        "base64": lambda p: p.write_bytes(base64.b64encode(perm.astype("<i8").tobytes())),
        "inverse": lambda p: p.write_text(str(np.argsort(key["pixel_perm"]).tolist())),
    }
    scanner = KeyLeakScanner([key])
    for name, write in writers.items():
        write(tmp_path / name)
    leaks = scanner.scan_tree(tmp_path)
    assert set(leaks) == set(writers)
    unrelated = generate_key("proposed", 64, 8, seed=2)
    assert KeyLeakScanner([unrelated]).scan_tree(tmp_path) == {}
    assert set(key_arrays(key)) == {
        "block_perm",
        "inverse block_perm",
        "pixel_perm",
        "inverse pixel_perm",
    }


def test_scanner_finds_a_saved_mixing_matrix(tmp_path: Path) -> None:
    key = generate_key("orthomix", 64, 8, seed=1)
    cipher = build_cipher("orthomix", key=key)
    assert isinstance(cipher, LinearPatchCipher)
    matrix = torch.from_numpy(cipher.mixing_matrix(3).copy())
    torch.save({"buffer": matrix.float()}, tmp_path / "f32.pt")
    (tmp_path / "f64t.bin").write_bytes(matrix.T.contiguous().numpy().tobytes())
    torch.save({"secret": torch.tensor(key["secret"].tolist(), dtype=torch.uint8)}, tmp_path / "s")
    assert set(scanner_for([key]).scan_tree(tmp_path)) == {"f32.pt", "f64t.bin", "s"}
    assert scanner_for([generate_key("orthomix", 64, 8, seed=2)]).scan_tree(tmp_path) == {}


# ---------------------------------------------------------------- in-process entry points
@pytest.mark.parametrize("cipher", _conf_ciphers())
def test_every_keyed_cipher_trains_without_writing_key_material(
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    cipher: str,
) -> None:
    caplog.set_level(logging.INFO)
    overrides = [*SHORT, f"cipher={cipher}", "key=seed", f"key.seed={SEED}", "logger=csv"]
    with composed("train", overrides, tmp_path) as cfg, close_wandb():
        options, block = dict(cfg.cipher.options), int(cfg.cipher.block_size)
        train(cfg)
    key = generate_key(cipher, 64, block, seed=SEED, **options)
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert summary["key_fingerprint"] == key.fingerprint  # the run used this very key
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    output = "".join(capfd.readouterr()) + caplog.text
    _assert_no_leaks(scanner_for([key]), tmp_path, output, exclude=[])


@pytest.mark.parametrize("cipher", absorbable_cipher_names())
def test_key_adapt_runs_write_no_key_material_and_say_the_weights_are_key_equivalent(
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    cipher: str,
) -> None:
    caplog.set_level(logging.INFO)
    key = generate_key(cipher, 64, 8, seed=SEED + 2)
    key_path = save_key(key, tmp_path / "secret" / "owner.key")
    overrides = [*SHORT, f"cipher={cipher}", "key=file", f"key.path={key_path}", "logger=csv"]
    with composed("train", [*overrides, "model.key_adapt=true"], tmp_path / "runs") as cfg:
        train(cfg)
    output = "".join(capfd.readouterr()) + caplog.text
    assert "key-equivalent" in output
    _assert_no_leaks(scanner_for([key]), tmp_path / "runs", output, exclude=[key_path])


@pytest.mark.parametrize("source", ["file", "seed"])
def test_train_and_eval_write_no_key_material(
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    owner_key: tuple[Path, CipherKey],
    source: str,
) -> None:
    caplog.set_level(logging.INFO)
    key_path, key = owner_key
    if source == "seed":
        key = generate_key("proposed", 64, 8, seed=SEED)
        key_args = ["key=seed", f"key.seed={SEED}"]
    else:
        key_args = ["key=file", f"key.path={key_path}"]
    runs = tmp_path / "runs"
    with composed("train", [*SHORT, *key_args], runs / "train") as cfg, close_wandb():
        train(cfg)
    run = runs / "train" / "run"
    eval_args = [*TINY, "cipher.block_size=8", "logger=many", *key_args]
    eval_args += [f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", "+trainer.limit_test_batches=1"]
    eval_args = [a for a in eval_args if not a.startswith("model")]
    with composed("eval", eval_args, runs / "eval") as cfg, close_wandb():
        evaluate(cfg)
    output = "".join(capfd.readouterr()) + caplog.text
    files = written_files(runs)
    # the audit looked at real logs of every kind, not at an empty folder
    for expected in ("metrics.csv", "events.out.tfevents", ".wandb", "last.ckpt", "metrics.json"):
        assert any(expected in name for name in files), f"no {expected} was written"
    summary = json.loads((run / "metrics.json").read_text())
    assert summary["key_fingerprint"] == key.fingerprint  # the run used this very key
    _assert_no_leaks(KeyLeakScanner([key]), runs, output, exclude=[key_path])


def test_key_file_with_loose_permissions_warns_through_train(
    tmp_path: Path, owner_key: tuple[Path, CipherKey]
) -> None:
    key_path, _ = owner_key
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    key_path.chmod(0o644)
    overrides = [*TINY, "trainer=fast_dev_run", "logger=none", "callbacks=none"]
    with (
        composed("train", [*overrides, "key=file", f"key.path={key_path}"], tmp_path) as cfg,
        pytest.warns(UserWarning, match=r"readable by other users \(mode 644\); run: chmod 600"),
    ):
        train(cfg)


def test_logged_sample_grid_is_no_known_plaintext_pair(
    tmp_path: Path, owner_key: tuple[Path, CipherKey]
) -> None:
    from vitlearnenc.attacks.kpa import KnownPlaintextError, recover_proposed_key

    key_path, key = owner_key
    overrides = [*TINY, "trainer=fast_dev_run", "logger=none", "callbacks=encrypted_samples"]
    with composed("train", [*overrides, "key=file", f"key.path={key_path}"], tmp_path) as cfg:
        train(cfg)
    grid = torch.from_numpy(np.array(Image.open(tmp_path / "run" / "samples.png"))).permute(2, 0, 1)
    size, pad = 64, 1  # make_grid(..., padding=1): rows of plain and encrypted images
    plain = grid[:, pad : pad + size, pad : pad + size]
    encrypted = grid[:, 2 * pad + size : 2 * pad + 2 * size, pad : pad + size]
    try:
        recovered = recover_proposed_key(plain[None], encrypted[None], block_size=8)
        revealed = bool(np.array_equal(recovered.block_perm, key["block_perm"]))
    except KnownPlaintextError:  # the two images are no plain/cipher pair: nothing to recover
        revealed = False
    assert not revealed, "the logged plain/encrypted grid reveals the key"  # names no material


# ------------------------------------------------------------------- console scripts (slow)
def _predict_inputs(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    for index in range(3):
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(
            folder / f"{index}.png"
        )
    return folder


@pytest.mark.slow
def test_console_scripts_write_and_print_no_key_material(
    tmp_path: Path, owner_key: tuple[Path, CipherKey]
) -> None:
    """train, eval, predict and a -m sweep, through the installed console scripts, with a key
    file (readable by others, to see the warning) and with seeds."""
    key_path, owner = owner_key
    key_path.chmod(0o640)
    logs = tmp_path / "logs"
    common = [*SHORT, f"paths.log_dir={logs}"]
    file_key = ["key=file", f"key.path={key_path}"]
    outputs = []

    def run(script: str, args: list[str]) -> str:
        result = run_console(script, args, cwd=tmp_path, timeout=400)
        assert result.returncode == 0, result.stderr[-3000:]
        outputs.append(result.stdout + result.stderr)
        return result.stdout + result.stderr

    out = run("vitlearnenc-train", [*common, *file_key, "run_name=file"])
    assert "chmod 600" in out  # the loose-permissions warning reaches the user
    ckpt = logs / "train" / "runs" / "file" / "checkpoints" / "last.ckpt"
    eval_common = [a for a in common if not a.startswith(("model", "trainer.max", "callbacks"))]
    run(
        "vitlearnenc-eval",
        [*eval_common, "cipher.block_size=8", *file_key, f"ckpt_path={ckpt}", "run_name=file"],
    )
    run(
        "vitlearnenc-predict",
        [
            f"ckpt_path={ckpt}",
            f"input_dir={_predict_inputs(tmp_path / 'inputs')}",
            "cipher=proposed",
            "cipher.block_size=8",
            "image_size=64",
            *file_key,
            "num_workers=0",
            f"paths.log_dir={logs}",
            "trainer.enable_progress_bar=false",
        ],
    )
    # the default job subfolders (override lists past 120 bytes end in a hash) are scanned too
    sweep = ["-m", *common, "key=seed"]
    run("vitlearnenc-train", [*sweep, f"key.seed={SEED},{SEED + 1}"])
    seeded = [generate_key("proposed", 64, 8, seed=s) for s in (SEED, SEED + 1)]
    files = written_files(logs)
    assert any("/.hydra/config.yaml" in f for f in files) and any(f.endswith(".log") for f in files)
    assert len([f for f in files if f.endswith("metrics.json")]) == 4  # train, eval, 2 sweep jobs
    assert any(f.endswith("predictions.csv") for f in files)
    _assert_no_leaks(KeyLeakScanner([owner, *seeded]), logs, "".join(outputs), exclude=[key_path])


def _attack_args(attack: str, key_args: list[str]) -> list[str]:
    data = [a for a in TINY if a.startswith(("data", "image_size"))]
    return [
        *data,
        "cipher.block_size=8",
        f"attack={attack}",
        "attack.num_victim_images=8",
        "logger=many",
        *key_args,
    ]


@pytest.mark.parametrize("source", ["file", "seed"])
def test_key_recovering_attack_writes_no_key_material(
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    owner_key: tuple[Path, CipherKey],
    source: str,
) -> None:
    """The known-plaintext attack recovers the whole victim key; it may report how much it got
    right, but neither the victim key nor the recovered one may be written."""
    attack_cli = pytest.importorskip("vitlearnenc.cli.attack", reason="no vitlearnenc-attack yet")
    caplog.set_level(logging.INFO)
    key_path, key = owner_key
    key_args = ["key=file", f"key.path={key_path}"]
    if source == "seed":
        key, key_args = generate_key("proposed", 64, 8, seed=SEED), ["key=seed", f"key.seed={SEED}"]
    with composed("attack", _attack_args("kpa", key_args), tmp_path) as cfg, close_wandb():
        summary = attack_cli.attack(cfg)
    assert summary["key_recovery"]["exact"]  # the attack really held the key's equivalent
    assert any(".wandb" in name for name in written_files(tmp_path))
    output = "".join(capfd.readouterr()) + caplog.text
    _assert_no_leaks(KeyLeakScanner([key]), tmp_path, output, exclude=[key_path])


@pytest.mark.slow
def test_attack_console_script_sweep_writes_no_key_material(
    tmp_path: Path, owner_key: tuple[Path, CipherKey]
) -> None:
    """``vitlearnenc-attack -m`` over the key-recovering attacks (kpa, jigsaw) with a key file."""
    pytest.importorskip("vitlearnenc.cli.attack", reason="no vitlearnenc-attack yet")
    key_path, key = owner_key
    logs = tmp_path / "logs"
    args = [
        "-m",
        *_attack_args("kpa,jigsaw", ["key=file", f"key.path={key_path}"]),
        f"paths.log_dir={logs}",
    ]
    result = run_console("vitlearnenc-attack", args, cwd=tmp_path, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    summaries = [json.loads(p.read_text()) for p in logs.rglob("metrics.json")]
    assert sorted(s["attack"] for s in summaries) == ["jigsaw", "kpa"]
    _assert_no_leaks(KeyLeakScanner([key]), logs, result.stdout + result.stderr, exclude=[key_path])


def test_random_key_is_only_in_its_key_file(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """key=random: the drawn key lives in <run>/key.json (0600) and nowhere else."""
    caplog.set_level(logging.INFO)
    overrides = [*SHORT, "logger=csv", "key=random"]
    with composed("train", overrides, tmp_path) as cfg:
        train(cfg)
    key_file = tmp_path / "run" / "key.json"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = CipherKey.from_dict(json.loads(key_file.read_text()))
    output = "".join(capfd.readouterr()) + caplog.text
    assert key.fingerprint in output  # the public fingerprint is what gets reported
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    _assert_no_leaks(KeyLeakScanner([key]), tmp_path, output, exclude=[key_file])


# ------------------------------------------------------------------------------- shards
def test_packed_shards_and_their_metadata_hold_no_key_material(
    tmp_path: Path, owner_key: tuple[Path, CipherKey]
) -> None:
    """``vitlearnenc-pack`` (as a console script, two workers) writes ciphertexts, labels,
    names and public metadata: no permutation in any chunk, index or the metadata file,
    nor on its console."""
    import subprocess
    import sys

    from tests.helpers.trees import write_tree

    key_path, key = owner_key
    write_tree(tmp_path / "src", {"train/a": 4, "train/b": 4, "test/a": 2, "test/b": 2}, size=64)
    out = tmp_path / "shards"
    command = [sys.executable, "-m", "vitlearnenc.cli.pack", "--key", str(key_path)]
    result = subprocess.run(
        [*command, "--workers", "2", "--val-fraction", "0.25", str(tmp_path / "src"), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == [
        "test",
        "train",
        "val",
        "vitlearnenc-shards.json",
    ]
    assert key.fingerprint in (out / "vitlearnenc-shards.json").read_text()
    _assert_no_leaks(KeyLeakScanner([key]), out, result.stdout + result.stderr, exclude=[])


@pytest.mark.parametrize("storage", ["float32", "float16"])
def test_real_valued_arrays_shards_and_their_metadata_hold_no_key_material(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], storage: str
) -> None:
    """An orthomix key through ``vitlearnenc-encrypt`` (``.npy`` ciphertexts and the folder
    marker), ``vitlearnenc-decrypt`` and ``vitlearnenc-pack`` (float shards and their metadata):
    no secret, K1 or matrix entries (also as float16 bytes) in any file or on the console."""
    from tests.helpers.trees import write_tree
    from vitlearnenc.cli.encrypt import main_decrypt, main_encrypt
    from vitlearnenc.cli.pack import main as pack_main

    key = generate_key("orthomix", 64, 8, seed=SEED + 2, storage=storage)
    key_path = save_key(key, tmp_path / "secret" / "owner.key")
    write_tree(tmp_path / "src", {"train/a": 3, "train/b": 3, "test/a": 2, "test/b": 2}, size=64)
    out = tmp_path / "out"
    args = ["--key", str(key_path)]
    assert main_encrypt([*args, str(tmp_path / "src"), str(out / "enc")]) == 0
    assert main_decrypt([*args, str(out / "enc"), str(out / "dec")]) == 0
    assert pack_main([*args, "--val-fraction", "0.25", str(tmp_path / "src"), str(out / "sh")]) == 0
    assert len(list((out / "enc").rglob("*.npy"))) == 10
    assert f'"dtype": "{storage}"' in (out / "enc" / ".vitlearnenc.json").read_text()
    assert f'"dtype": "{storage}"' in (out / "sh" / "vitlearnenc-shards.json").read_text()
    scanner = scanner_for([key])
    matrix = get_cipher_class("orthomix")(key).mixing_matrix(3)
    for dtype in ("<f2", ">f2"):
        scanner.byte_patterns.append(
            (f"matrix row as {dtype}", matrix[0, :4].astype(dtype).tobytes())
        )
    _assert_no_leaks(scanner, out, "".join(capfd.readouterr()), exclude=[])
