"""Determinism: the same config and seed give the same run; key=seed gives the same key
everywhere; key=random gives a new key each run, stored so that eval reuses it."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers.hydra import composed
from tests.reliability.helpers import TINY
from vitlearnenc.ciphers import CipherKey, generate_key
from vitlearnenc.cli.evaluate import evaluate
from vitlearnenc.cli.train import train
from vitlearnenc.runs.build import build_datamodule
from vitlearnenc.runs.keys import resolve_key_source

SHORT = [
    *TINY,
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=3",
    "+trainer.limit_val_batches=1",
    "logger=none",
    "callbacks=model_checkpoint",
]
#: fingerprints of keys derived from seeds: a property of the key derivation algorithm, the
#: same on every machine, rank and version; a change here breaks every key=seed experiment
GOLDEN = {
    ("proposed", 32, 4, 0, False): "517fcbda0208",
    ("proposed", 224, 16, 1, True): "f9676d4eb346",
}


def test_same_config_and_seed_give_identical_runs(tmp_path: Path) -> None:
    results = []
    for attempt in ("first", "second"):
        with composed("train", [*SHORT, "key=seed", "key.seed=5"], tmp_path / attempt) as cfg:
            metrics = train(cfg)
        ckpt = torch.load(
            tmp_path / attempt / "run" / "checkpoints" / "last.ckpt", weights_only=True
        )
        results.append((metrics, ckpt["state_dict"]))
    (metrics_a, weights_a), (metrics_b, weights_b) = results
    assert metrics_a == metrics_b and "test/acc" in metrics_a
    torch.testing.assert_close(weights_b, weights_a, rtol=0, atol=0)


def _seeded_key(tmp_path: Path, seed: int) -> CipherKey:
    with composed("train", [*TINY, "key=seed", f"key.seed={seed}"], tmp_path) as cfg:
        datamodule = build_datamodule(cfg, tmp_path / "run")
        return datamodule.cipher.key


def test_seed_key_ignores_global_rng_and_rank(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = []
    for global_seed, rank in ((0, "0"), (12345, "1"), (7, "3")):
        torch.manual_seed(global_seed)
        np.random.seed(global_seed)
        random.seed(global_seed)
        for name in ("RANK", "LOCAL_RANK", "NODE_RANK"):
            monkeypatch.setenv(name, rank)
        keys.append(_seeded_key(tmp_path, seed=11))
    assert keys[0] == keys[1] == keys[2]
    assert keys[0] == generate_key("proposed", 64, 8, seed=11)
    assert _seeded_key(tmp_path, seed=12) != keys[0]


def test_seed_key_golden_fingerprints_in_a_fresh_process() -> None:
    lines = [
        f"generate_key({m!r}, {s}, {b}, seed={seed}, channel_mix={mix}).fingerprint"
        for m, s, b, seed, mix in GOLDEN
    ]
    script = "from vitlearnenc.ciphers import generate_key\n" + "\n".join(
        f"print({line})" for line in lines
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "123"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == list(GOLDEN.values())
    for (method, size, block, seed, mix), fingerprint in GOLDEN.items():
        assert (
            generate_key(method, size, block, seed=seed, channel_mix=mix).fingerprint == fingerprint
        )


def test_random_keys_differ_per_run_and_are_reused_in_their_run(tmp_path: Path) -> None:
    keys = []
    for run in ("a", "b"):
        with composed("train", [*TINY, "key=random"], tmp_path) as cfg:
            source = resolve_key_source(cfg, tmp_path / run)
        keys.append(CipherKey.from_dict(json.loads(Path(source["key_file"]).read_text())))
    assert keys[0] != keys[1]
    key_file = tmp_path / "a" / "key.json"
    before = key_file.stat().st_mtime_ns, key_file.read_bytes()
    with composed("train", [*TINY, "key=random"], tmp_path) as cfg:
        assert resolve_key_source(cfg, tmp_path / "a") == {"key_file": str(key_file)}
    assert (key_file.stat().st_mtime_ns, key_file.read_bytes()) == before  # reused, not redrawn


def test_eval_with_the_stored_random_key_reproduces_the_test_metrics(tmp_path: Path) -> None:
    with composed("train", [*SHORT, "key=random"], tmp_path / "train") as cfg:
        trained = train(cfg)
    run = tmp_path / "train" / "run"
    eval_args = [a for a in TINY if not a.startswith("model")]
    eval_args += [
        "cipher.block_size=8",
        "logger=none",
        f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
    ]
    with composed(
        "eval", [*eval_args, "key=file", f"key.path={run / 'key.json'}"], tmp_path / "e1"
    ) as cfg:
        same_key = evaluate(cfg)
    with composed("eval", [*eval_args, "key=seed", "key.seed=1"], tmp_path / "e2") as cfg:
        other_key = evaluate(cfg)
    assert same_key["test/loss"] == trained["test/loss"]  # bit for bit: same key, same images
    assert other_key["test/loss"] != trained["test/loss"]
