"""Multirun sweeps and DDP through the installed entry point, in subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.hydra import tiny_run

REPO = Path(__file__).resolve().parents[2]
TRAIN = str(Path(sys.executable).parent / "vitlearnenc-train")
TINY = tiny_run(num_train=128, num_test=32, batch_size=16)


def run_train(args: list[str], tmp_path: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    if not any(a.startswith("trainer=") for a in args):
        args = [*args, "trainer=fast_dev_run"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [TRAIN, *args, *TINY, f"paths.log_dir={tmp_path}"],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_multirun_basic_launcher(tmp_path: Path) -> None:
    run_train(["-m", "cipher=plain,proposed", "key=seed", "experiment_name=two"], tmp_path)
    summaries = sorted((tmp_path / "train" / "multiruns" / "two").glob("*/metrics.json"))
    ciphers = sorted(json.loads(p.read_text())["cipher"] for p in summaries)
    assert ciphers == ["plain", "proposed"]
    # the override lists of these jobs are longer than 120 bytes: shortened, with a hash
    names = [p.parent.name for p in summaries]
    assert all(len(name.encode()) == 120 and name.startswith("cipher=") for name in names)


def test_long_override_lists_get_short_unique_directory_names() -> None:
    from vitlearnenc.utils.paths import short_dirname

    assert short_dirname("cipher=plain,seed=0") == "cipher=plain,seed=0"
    long_a, long_b = "x=" + "a" * 300, "x=" + "a" * 299 + "b"
    assert len(short_dirname(long_a).encode()) == 120
    assert short_dirname(long_a) != short_dirname(long_b)  # the hash covers the whole name
    assert short_dirname(long_a) == short_dirname(long_a)  # deterministic: resumable
    assert len(short_dirname("é" * 200).encode()) <= 120  # never splits a character
    assert short_dirname("experiment=paper/vit_b16_plain") == "experiment=paper_vit_b16_plain"


def test_multirun_over_experiments_gives_each_its_own_directory(tmp_path: Path) -> None:
    # both experiments share every other override: the experiment must name the job directory,
    # or the second job would resume from the first one's checkpoint
    run_train(["-m", "experiment=mini/vit,mini/cnn"], tmp_path)  # both "mini"
    summaries = list((tmp_path / "train" / "multiruns").rglob("metrics.json"))
    assert len({p.parent for p in summaries}) == len(summaries) == 2


@pytest.mark.slow
def test_multirun_submitit_local(tmp_path: Path) -> None:
    run_train(
        [
            "-m",
            "hydra/launcher=submitit_local",
            "cipher=plain,proposed",
            "key=seed",
            "experiment_name=sub",
        ],
        tmp_path,
        timeout=600,
    )
    summaries = sorted((tmp_path / "train" / "multiruns" / "sub").glob("*/metrics.json"))
    assert len(summaries) == 2


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_encrypts_identically(tmp_path: Path) -> None:
    run_train(
        [
            "trainer=ddp",
            "trainer.accelerator=cpu",
            "trainer.devices=2",
            "trainer.precision=32-true",
            "+trainer.max_steps=2",
            "+trainer.limit_val_batches=1",
            "key=random",
            "run_name=ddp",
            "+callbacks.rank_probe._target_=tests.helpers.callbacks.RankProbe",
        ],
        tmp_path,
        timeout=600,
    )
    run = tmp_path / "train" / "runs" / "ddp"
    probes = [json.loads((run / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert probes[0]["world_size"] == 2
    assert probes[0]["fingerprint"] == probes[1]["fingerprint"]
    assert probes[0]["digest"] == probes[1]["digest"]
    assert (run / "metrics.json").exists()
