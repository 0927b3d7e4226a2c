"""The benchmark scripts run and their summary reads their JSON (no timing is asserted)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from experiments.benchmarks import bench_switches
from experiments.benchmarks.bench_storage import extract_per_class
from experiments.benchmarks.bench_streaming import extract_subset
from experiments.benchmarks.bench_train_step import step_ratio
from experiments.benchmarks.common import interleaved_best_times, machine_info, write_results
from experiments.benchmarks.run_all import summarize
from tests.helpers.trees import make_tar, write_tree


def test_switch_benchmark_times_every_switch_and_is_summarised(tmp_path: Path) -> None:
    cpu = torch.device("cpu")
    rows = bench_switches.switch_rows("vit_micro", 32, 4, batch=8, repeats=1, device=cpu)
    variants = [row["variant"] for row in rows]
    assert variants == ["fp32", "bf16-mixed", "channels_last", "no fused attention", "compile"]
    assert all(row["step_ms"] > 0 and row["images_per_s"] > 0 for row in rows)
    assert next(row for row in rows if row["variant"] == "fp32")["speedup_vs_fp32"] == 1.0
    transfer = bench_switches.pinned_transfer(2, 32, 1, cpu)
    assert "CUDA" in transfer["skipped"]
    payload = {"machine": machine_info(cpu), "rows": rows, "pinned_transfer": transfer}
    write_results("switches_cpu", payload, out_dir=tmp_path)
    summary = summarize(tmp_path)
    assert "## Speed switches (switches_cpu.json" in summary
    assert summary.count("| vit_micro | 32 | 8 |") == 5
    assert "not measured (pinned memory needs a CUDA device)" in summary


def test_step_ratio_times_both_pipelines_on_one_model() -> None:
    row = step_ratio("vit_micro", 32, 4, batch=8, repeats=2, device=torch.device("cpu"))
    assert row["plain_step_ms"] > 0 and row["encrypted_step_ms"] > 0
    assert row["ratio"] == pytest.approx(row["encrypted_step_ms"] / row["plain_step_ms"])
    assert row["train_images_per_s"] == pytest.approx(8e3 / row["plain_step_ms"])


def test_interleaved_best_times_round_robin_after_warmup_and_keep_the_minimum() -> None:
    calls: list[str] = []
    # each call advances a fake clock by its own cost; round 2 of "b" is slowed by "load"
    costs = {"a": iter([9.0, 3.0, 2.0, 4.0]), "b": iter([9.0, 5.0, 8.0, 6.0])}
    now = [0.0]

    def work(name: str) -> None:
        calls.append(name)
        now[0] += next(costs[name])

    best = interleaved_best_times(
        {"a": lambda: work("a"), "b": lambda: work("b")},
        repeats=3,
        warmup=1,
        clock=lambda: now[0],
    )
    assert calls == ["a", "b", "a", "b", "a", "b", "a", "b"]  # warm-up each, then alternate
    assert best == {"a": 2.0, "b": 5.0}  # warm-up (9.0) not counted, slowest rounds discarded


def _cifar_like_archive(tmp_path: Path) -> Path:
    """A wrapped ``cifar/{train,test}/<class>/`` archive: 3 + 2 training and 2 + 2 test images."""
    write_tree(tmp_path / "tree", {"train/a": 3, "train/b": 2, "test/a": 2, "test/b": 2})
    return make_tar(tmp_path / "tree", tmp_path / "cifar.tar.gz", wrapper="cifar")


def test_extract_per_class_caps_every_class_of_both_splits(tmp_path: Path) -> None:
    target = tmp_path / "out"
    assert extract_per_class(_cifar_like_archive(tmp_path), target, 2, 1) == 4
    files = sorted(p.relative_to(target).as_posix() for p in target.rglob("*.png"))
    assert files == [
        "test/a/000.png", "test/b/000.png",
        "train/a/000.png", "train/a/001.png", "train/b/000.png", "train/b/001.png",
    ]  # fmt: skip
    original = (tmp_path / "tree" / "train/a/001.png").read_bytes()
    assert (target / "train/a/001.png").read_bytes() == original


def test_extract_subset_borrows_renamed_test_images_past_the_training_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from experiments.benchmarks import bench_streaming

    monkeypatch.setattr(bench_streaming, "ARCHIVE_TRAIN", 5)  # this archive's training split
    target = tmp_path / "out"
    assert extract_subset(_cifar_like_archive(tmp_path), target, 7, 1) == 7
    train = sorted(
        p.relative_to(target / "train").as_posix() for p in (target / "train").rglob("*.png")
    )
    assert len(train) == 7 and sum(name.split("/")[1].startswith("t") for name in train) == 2
    assert len(list((target / "test").rglob("*.png"))) == 1
