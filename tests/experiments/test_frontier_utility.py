"""The utility sweep's plan, skip/resume bookkeeping and the accuracy aggregation (synthetic
JSONs and a fake trainer: no training here)."""

from __future__ import annotations

import json
import statistics
import subprocess
from pathlib import Path

import pytest

from experiments.frontier_utility import aggregate as agg
from experiments.frontier_utility import run as sweep
from tests.helpers.hydra import composed, tiny_run


def record(group: str, cipher: str, seed: int, acc: float, **extra) -> dict:
    return {"group": group, "cipher": cipher, "seed": seed, "final_test_acc": acc, **extra}


def test_mean_std_and_n_over_seeds() -> None:
    records = [
        record("scratch", "plain", 0, 0.50),
        record("scratch", "plain", 1, 0.52),
        record("scratch", "plain", 2, 0.57),
        record("scratch", "orthomix_sub", 0, 0.40),
        record("key_adapt_source", "plain", 0, 0.90),  # pretraining: not a table row
        record("key_adapt_target", "orthomix", 1, 0.61, key_adapt=True),
        record("key_adapt_target", "orthomix", 0, 0.63, key_adapt=True),
        record("scratch", "orthomix", 0, 0.45, storage="float16"),
        record("scratch", "orthomix", 0, 0.47),
    ]
    rows = {
        (r["protocol"], r["cipher"], r["key_adapt"], r["storage"]): r
        for r in agg.aggregate(records)
    }
    assert len(rows) == 5
    plain = rows["scratch", "plain", False, "float32"]
    assert plain["n"] == 3 and plain["seeds"] == [0, 1, 2]
    assert plain["mean"] == pytest.approx(53.0)
    assert plain["std"] == pytest.approx(statistics.stdev([50.0, 52.0, 57.0]))
    assert plain["std"] == pytest.approx(3.6055512754639896)  # sample std (ddof 1), not ddof 0
    single = rows["scratch", "orthomix_sub", False, "float32"]
    assert single["n"] == 1 and single["std"] is None
    assert agg.cell(single) == "40.00 (n=1)"
    adapted = rows["key_adapt_target", "orthomix", True, "float32"]
    assert adapted["seeds"] == [0, 1] and adapted["values"] == pytest.approx([63.0, 61.0])
    assert agg.cell(adapted) == f"62.00 ± {statistics.stdev([63.0, 61.0]):.2f} (n=2)"
    # float16 storage is its own row, not mixed into the float32 one
    assert rows["scratch", "orthomix", False, "float16"]["mean"] == pytest.approx(45.0)
    assert rows["scratch", "orthomix", False, "float32"]["mean"] == pytest.approx(47.0)


def test_a_seed_counted_twice_is_an_error() -> None:
    with pytest.raises(ValueError, match="two results for seed 0"):
        agg.aggregate([record("scratch", "plain", 0, 0.5), record("scratch", "plain", 0, 0.6)])


def test_main_writes_table_from_folder(tmp_path: Path) -> None:
    for seed, acc in enumerate([0.6, 0.62]):
        (tmp_path / f"scratch-plain-seed{seed}.json").write_text(
            json.dumps(record("scratch", "plain", seed, acc))
        )
    agg.main(["--results", str(tmp_path)])
    rows = json.loads((tmp_path / "accuracy.json").read_text())
    assert [r["n"] for r in rows] == [2]
    assert "61.00 ± 1.41 (n=2)" in (tmp_path / "accuracy.md").read_text()
    agg.main(["--results", str(tmp_path)])  # its own output is not read back as a result
    assert json.loads((tmp_path / "accuracy.json").read_text()) == rows


def test_plan_order_and_coverage() -> None:
    runs = sweep.plan()
    names = [run.name for run in runs]
    assert len(set(names)) == len(names)
    assert names[:4] == [
        f"scratch-{c}-seed0" for c in ("plain", "proposed", "orthomix", "orthomix_sub")
    ]
    seeds = {}
    for run in runs:
        seeds.setdefault((run.group, run.cipher, run.key_adapt, bool(run.extra)), []).append(
            run.seed
        )
    for cipher in ("plain", "proposed", "orthomix"):
        assert sorted(seeds["scratch", cipher, False, False]) == [0, 1, 2]
        assert sorted(seeds["key_adapt_target", cipher, cipher != "plain", False]) == [0, 1, 2]
    assert seeds["scratch", "orthomix_sub", False, False] == [0]
    for index, run in enumerate(runs):  # a target's source comes before it
        if run.needs is not None:
            assert run.needs in names[:index]
            assert any(o.startswith("data.label_subset=[5") for o in run.overrides)


def test_commands_select_cipher_key_and_adaptation() -> None:
    target = sweep.target("orthomix", 2)
    cmd = sweep.command(target, Path("/data.tar.gz"))
    assert "experiment=mini/vit_timm" in cmd
    assert {"cipher=orthomix", "key=seed", "key.seed=2", "seed=2", "model.key_adapt=true"} <= set(
        cmd
    )
    assert f"model.checkpoint={sweep.weights_path('ka-source-plain-seed2')}" in cmd
    run_dir = sweep.RESULTS / "runs" / target.name
    # mid-epoch checkpoints where ckpt_path=auto looks for them
    assert f"+callbacks.step_checkpoint.dirpath={run_dir}" in cmd
    assert "+callbacks.step_checkpoint.filename=hpc_ckpt_1" in cmd
    plain = sweep.command(sweep.scratch("plain", 1), Path("/d"))
    assert "key=none" in plain and not any(c.startswith("model.key_adapt") for c in plain)


@pytest.fixture
def results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(sweep, "RESULTS", tmp_path)
    return tmp_path


def fake_train(calls: list[list[str]], returncode: int = 0):
    """Stands in for vitlearnenc-train: writes metrics.json and a test curve, or fails."""

    def run(cmd: list[str], *args, **kwargs) -> subprocess.CompletedProcess:
        calls.append(cmd)
        run_dir = Path(next(c for c in cmd if c.startswith("hydra.run.dir=")).split("=", 1)[1])
        if returncode == 0:
            (run_dir / "csv").mkdir(parents=True)
            (run_dir / "csv" / "metrics.csv").write_text(
                "epoch,step,test_curve/acc,train/acc\n0,9,0.3,\n0,9,,0.2\n1,19,0.45,\n"
            )
            summary = {"epochs": 2, "global_steps": 20, "metrics": {"test/acc": 0.45}}
            (run_dir / "metrics.json").write_text(json.dumps(summary))
        return subprocess.CompletedProcess(cmd, returncode)

    return run


def test_finished_runs_are_skipped_and_results_recorded(
    results: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(sweep.subprocess, "run", fake_train(calls))
    run = sweep.scratch("plain", 0, curve=True)
    written = sweep.execute(run, Path("/d"))
    assert written is not None and len(calls) == 1
    saved = json.loads((results / "scratch-plain-seed0.json").read_text())
    assert saved["final_test_acc"] == 0.45 and saved["seed"] == 0 and saved["epochs"] == 2
    assert saved["test_curve"] == [0.3, 0.45] and saved["best_test_curve_acc"] == 0.45
    assert saved["command"].startswith("vitlearnenc-train experiment=mini/vit_timm")
    assert len(saved["attempts"]) == 1 and "wall_s" in saved
    assert sweep.execute(run, Path("/d")) is None and len(calls) == 1  # skipped


def test_test_curve_survives_a_resume(tmp_path: Path) -> None:
    # the CSV log of a resumed run starts afresh; the callback's JSONL file keeps every epoch
    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "metrics.csv").write_text("epoch,step,test_curve/acc\n2,29,0.5\n")
    assert sweep.test_curve(tmp_path) == [None, None, 0.5]
    lines = [{"epoch": 1, "acc": 0.3}, {"epoch": 2, "acc": 0.35}, {"epoch": 2, "acc": 0.4}]
    (tmp_path / "test_curve.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    # a retrained epoch: the later line wins; epochs only in the CSV are kept
    assert sweep.test_curve(tmp_path) == [0.3, 0.4, 0.5]


def test_failed_run_is_resumed_in_its_run_directory(
    results: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[list[str]] = []
    run = sweep.scratch("orthomix", 1)
    monkeypatch.setattr(sweep.subprocess, "run", fake_train(calls, returncode=1))
    with pytest.raises(SystemExit, match="rerun to resume"):
        sweep.execute(run, Path("/d"))
    assert not (results / f"{run.name}.json").exists()
    monkeypatch.setattr(sweep.subprocess, "run", fake_train(calls))
    saved = sweep.execute(run, Path("/d"))
    assert calls[0] == calls[1]  # same command, same run dir: ckpt_path=auto resumes there
    assert [a["resumed"] for a in saved["attempts"]] == [False, True]
    assert [a["returncode"] for a in saved["attempts"]] == [1, 0]


def test_attempt_killed_before_recording_counts_as_resumed(
    results: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sweep killed mid-run records no attempt, but its step checkpoint is there: the next
    attempt resumes from it and must say so."""
    run = sweep.scratch("orthomix", 2)
    run_dir = results / "runs" / run.name
    run_dir.mkdir(parents=True)
    (run_dir / "hpc_ckpt_1.ckpt").write_bytes(b"step checkpoint")
    monkeypatch.setattr(sweep.subprocess, "run", fake_train([]))
    saved = sweep.execute(run, Path("/d"))
    assert [a["resumed"] for a in saved["attempts"]] == [True]


def test_timm_recipe_config(tmp_path: Path) -> None:
    overrides = ["experiment=mini/vit_timm", "data=cifar10_folder"]
    with composed("train", overrides, tmp_path) as cfg:
        assert cfg.model.kwargs.depth == 4 and cfg.model.kwargs.mlp_ratio == 4.0
        assert cfg.data.val_fraction == 0.0 and cfg.trainer.gradient_clip_val is None
        assert cfg.optim.warmup_fraction == 0.1 and cfg.trainer.max_epochs == 8
        assert cfg.callbacks.get("model_checkpoint") is None
        assert cfg.callbacks.last_checkpoint is not None  # what resuming and testing use


def test_threads_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert sweep.threads("3") == "3"
    monkeypatch.setattr(sweep.os, "getloadavg", lambda: (1.2, 0.0, 0.0))
    assert sweep.threads("auto") == "2"
    monkeypatch.setattr(sweep.os, "getloadavg", lambda: (7.0, 0.0, 0.0))
    assert sweep.threads("auto") == "1"


def test_curve_callback_records_the_final_models_test_accuracy(tmp_path: Path) -> None:
    from vitlearnenc.cli.train import train

    overrides = [
        *tiny_run(num_train=96, num_test=40),
        "cipher=orthomix",
        "key=seed",
        "trainer.max_epochs=2",
        "+callbacks.last._target_=lightning.pytorch.callbacks.ModelCheckpoint",
        "+callbacks.curve._target_=experiments.recipes.test_curve.TestCurveCallback",
        "+callbacks.curve.batch_size=16",
    ]
    with composed("train", overrides, tmp_path) as cfg:
        metrics = train(cfg)
        run_dir = Path(cfg.paths.output_dir)
    curve = sweep.test_curve(run_dir)
    assert len(curve) == 2
    # the last epoch's curve value is the test accuracy of the final model (encrypted inputs)
    assert curve[-1] == pytest.approx(metrics["test/acc"], abs=1e-6)
