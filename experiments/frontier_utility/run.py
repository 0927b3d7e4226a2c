"""Utility runs of the frontier study (issue 16, item 4): one ``vitlearnenc-train`` at a time.

vit_mini from scratch on the CIFAR-10 JPEG copy with the timm-matched recipe
(``experiment=mini/vit_timm``): plain, proposed and orthomix with seeds 0-2, orthomix_sub with
seed 0; and the key-adaptation protocol of ``experiments/key_adapt`` (pretrain on plain images
of classes 0-4, fine-tune on classes 5-9) with seeds 0-2 for plain fine-tuning,
proposed + ``model.key_adapt=true`` and orthomix + ``model.key_adapt=true``. Seed s also draws
key s (``key=seed key.seed=s``: the spread over seeds includes the spread over keys).

Each finished run writes ``experiments/results/frontier/utility/<name>.json`` (final test
accuracy, the per-epoch test curve where recorded, epochs, seed, command, wall and CPU time).
Resumable: a run with its JSON is skipped; an interrupted run resumes where it stopped
(``ckpt_path=auto``) and its attempts' wall times add up. Besides the end-of-epoch
``checkpoints/last.ckpt`` (which the final test reads), every run writes a mid-epoch checkpoint
every ``STEP_CHECKPOINT`` steps as ``<run dir>/hpc_ckpt_1.ckpt``: the name under which the train
app's ``ckpt_path=auto`` already looks for SLURM requeue checkpoints, taking the newer of the
two; an epoch on the shared 2-core host takes up to 20 minutes, too much to lose. The most
informative runs come first (seed 0 of every row).

``--threads auto`` (default) gives each run 2 torch threads when the host's 1-minute load is
below 2.5 (the sweep's own previous run, or nothing else, on the 2 cores) and 1 otherwise:
two threads on cores that other jobs hold slow a run down.

    nohup nice -n 5 python -m experiments.frontier_utility.run \
        --data ../shared/data/cifar10-jpeg.tar.gz > frontier_utility.log 2>&1 &
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from experiments.recipes.test_curve import CURVE_FILE

RESULTS = Path(__file__).resolve().parents[1] / "results" / "frontier" / "utility"
EXPERIMENT = "mini/vit_timm"
SOURCE_CLASSES = [0, 1, 2, 3, 4]
TARGET_CLASSES = [5, 6, 7, 8, 9]
SOURCE_EPOCHS = 8
TARGET_EPOCHS = 3
STEP_CHECKPOINT = 50
TEST_CURVE = "+callbacks.test_curve._target_=experiments.recipes.test_curve.TestCurveCallback"


@dataclass
class Run:
    """One ``vitlearnenc-train`` call: ``name`` is its result file and run directory."""

    name: str
    group: str  # scratch | key_adapt_source | key_adapt_target
    cipher: str
    seed: int
    overrides: list[str]
    key_adapt: bool = False
    needs: str | None = None  # a key_adapt_source run whose exported weights this run starts from
    extra: dict = field(default_factory=dict)


def _key(cipher: str, seed: int) -> list[str]:
    if cipher == "plain":
        return ["cipher=plain", "key=none"]
    return [f"cipher={cipher}", "key=seed", f"key.seed={seed}"]


def scratch(cipher: str, seed: int, curve: bool = False, storage: str | None = None) -> Run:
    name = f"scratch-{cipher}{'-' + storage if storage else ''}-seed{seed}"
    overrides = [*_key(cipher, seed), f"seed={seed}"]
    if storage:
        overrides.append(f"cipher.options.storage={storage}")
    if curve:
        overrides.append(TEST_CURVE)
    return Run(
        name, "scratch", cipher, seed, overrides, extra={"storage": storage} if storage else {}
    )


def source(seed: int) -> Run:
    overrides = [
        *_key("plain", seed),
        f"seed={seed}",
        f"data.label_subset={SOURCE_CLASSES}",
        f"trainer.max_epochs={SOURCE_EPOCHS}",
    ]
    return Run(f"ka-source-plain-seed{seed}", "key_adapt_source", "plain", seed, overrides)


def target(cipher: str, seed: int) -> Run:
    adapt = cipher != "plain"
    overrides = [
        *_key(cipher, seed),
        f"seed={seed}",
        f"data.label_subset={TARGET_CLASSES}",
        f"trainer.max_epochs={TARGET_EPOCHS}",
        *(["model.key_adapt=true"] if adapt else []),
    ]
    name = f"ka-target-{cipher}{'-key_adapt' if adapt else ''}-seed{seed}"
    return Run(
        name,
        "key_adapt_target",
        cipher,
        seed,
        overrides,
        key_adapt=adapt,
        needs=f"ka-source-plain-seed{seed}",
    )


def plan() -> list[Run]:
    """All runs, most informative first: seed 0 of each row, then the other seeds."""
    runs = [scratch("plain", 0, curve=True)]
    runs += [scratch(c, 0) for c in ("proposed", "orthomix", "orthomix_sub")]
    runs += [source(0), *(target(c, 0) for c in ("plain", "proposed", "orthomix"))]
    for seed in (1, 2):
        runs += [scratch(c, seed) for c in ("plain", "proposed", "orthomix")]
    for seed in (1, 2):
        runs += [source(seed), *(target(c, seed) for c in ("plain", "proposed", "orthomix"))]
    runs.append(scratch("orthomix", 0, storage="float16"))
    return runs


def weights_path(source_name: str) -> Path:
    """Exported network of a key_adapt source run (``*.safetensors`` is git-ignored)."""
    return RESULTS / "runs" / f"{source_name}.safetensors"


def command(run: Run, data: Path) -> list[str]:
    overrides = list(run.overrides)
    if run.needs is not None:
        overrides.append(f"model.checkpoint={weights_path(run.needs)}")
    run_dir = RESULTS / "runs" / run.name
    step = "+callbacks.step_checkpoint"
    return [
        str(Path(sys.executable).parent / "vitlearnenc-train"),
        f"experiment={EXPERIMENT}",
        "data=cifar10_folder",
        f"data.root={data}",
        f"hydra.run.dir={run_dir}",
        "callbacks.progress_bar=null",
        "callbacks.encrypted_samples=null",
        f"{step}._target_=lightning.pytorch.callbacks.ModelCheckpoint",
        f"{step}.dirpath={run_dir}",
        f"{step}.filename=hpc_ckpt_1",
        f"{step}.every_n_train_steps={STEP_CHECKPOINT}",
        f"{step}.save_top_k=1",
        f"{step}.enable_version_counter=false",
        *overrides,
    ]


def test_curve(run_dir: Path) -> list[float | None]:
    """Per-epoch test accuracy (index 0 = after epoch 1; None where it was not recorded).

    From the CSV log, which holds only the epochs since the last resume, overlaid with the
    callback's ``test_curve.jsonl``, which keeps them all (a retrained epoch's later line wins).
    """
    by_epoch: dict[int, float] = {}
    if (run_dir / "csv" / "metrics.csv").exists():
        with (run_dir / "csv" / "metrics.csv").open() as handle:
            for row in csv.DictReader(handle):
                if row.get("test_curve/acc"):
                    by_epoch[int(row["epoch"]) + 1] = float(row["test_curve/acc"])
    jsonl = run_dir / CURVE_FILE
    if jsonl.exists():
        for line in jsonl.read_text().splitlines():
            if line.strip():
                entry = json.loads(line)
                by_epoch[int(entry["epoch"])] = float(entry["acc"])
    if not by_epoch:
        return []
    return [by_epoch.get(epoch) for epoch in range(1, max(by_epoch) + 1)]


def result(run: Run, cmd: list[str], attempts: list[dict]) -> dict:
    """The result record of a finished run, from its ``metrics.json``."""
    run_dir = RESULTS / "runs" / run.name
    summary = json.loads((run_dir / "metrics.json").read_text())
    metrics = summary["metrics"]
    curve = test_curve(run_dir)
    return {
        "name": run.name,
        "group": run.group,
        "cipher": run.cipher,
        "key_adapt": run.key_adapt,
        "seed": run.seed,
        "key_seed": None if run.cipher == "plain" else run.seed,
        "experiment": EXPERIMENT,
        **run.extra,
        "classes": TARGET_CLASSES
        if run.group == "key_adapt_target"
        else (SOURCE_CLASSES if run.group == "key_adapt_source" else list(range(10))),
        "epochs": summary["epochs"],
        "global_steps": summary["global_steps"],
        "final_test_acc": metrics.get("test/acc"),
        "final_train_acc": metrics.get("train/acc"),
        # no validation split in this recipe (all training images are used)
        "final_val_acc": metrics.get("val/acc"),
        "best_val_acc": None,
        # monitoring only, never used to pick a model: the reported number is final_test_acc
        "test_curve": curve,
        "best_test_curve_acc": max((v for v in curve if v is not None), default=None),
        "command": "vitlearnenc-train " + " ".join(cmd[1:]),
        "attempts": attempts,
        "wall_s": round(sum(a["wall_s"] for a in attempts), 1),
        "cpu_s": round(sum(a["cpu_s"] for a in attempts), 1),
        "key_fingerprint": summary.get("key_fingerprint"),
    }


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def threads(setting: str) -> str:
    """Torch threads for the next run: a number, or ``auto`` (2 on an idle host, else 1)."""
    if setting != "auto":
        return setting
    return "2" if os.getloadavg()[0] < 2.5 else "1"


def execute(run: Run, data: Path, thread_setting: str = "auto") -> dict | None:
    """Train (or resume) ``run`` and write its JSON; None when it is already done."""
    out = RESULTS / f"{run.name}.json"
    if out.exists():
        return None
    cmd = command(run, data)
    attempts_file = RESULTS / "runs" / run.name / "attempts.json"
    attempts = json.loads(attempts_file.read_text()) if attempts_file.exists() else []
    if run.needs is not None and not weights_path(run.needs).exists():
        from vitlearnenc.tasks.classifier import export_network_weights

        source_ckpt = RESULTS / "runs" / run.needs / "checkpoints" / "last.ckpt"
        export_network_weights(source_ckpt, weights_path(run.needs))
    if not (RESULTS / "runs" / run.name / "metrics.json").exists():
        print(" ".join(cmd[1:]), flush=True)
        # an attempt killed before it could record itself still left its checkpoints
        resumed = bool(attempts) or any((RESULTS / "runs" / run.name).rglob("*.ckpt"))
        start, cpu = time.time(), _children_cpu_seconds()
        env = {**os.environ, "OMP_NUM_THREADS": threads(thread_setting)}
        completed = subprocess.run(cmd, env=env)
        attempts.append(
            {
                "wall_s": round(time.time() - start, 1),
                "cpu_s": round(_children_cpu_seconds() - cpu, 1),
                "resumed": resumed,
                "returncode": completed.returncode,
                "ended": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
        )
        attempts_file.parent.mkdir(parents=True, exist_ok=True)
        attempts_file.write_text(json.dumps(attempts, indent=2) + "\n")
        if completed.returncode != 0:
            raise SystemExit(f"{run.name} failed (exit {completed.returncode}); rerun to resume it")
    record = result(run, cmd, attempts)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(out)
    return record


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True, help="CIFAR-10 archive or folder")
    parser.add_argument("--only", default="", help="run only runs whose name contains this")
    parser.add_argument("--threads", default="auto", help="torch threads per run, or auto")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and stop")
    args = parser.parse_args(argv)
    data = args.data.resolve()
    runs = [run for run in plan() if args.only in run.name]
    for run in runs:
        if args.dry_run:
            done = (RESULTS / f"{run.name}.json").exists()
            print(f"{'done' if done else 'todo'}  {run.name}")
            continue
        # a target needs its source run (trained first, also under --only)
        if run.needs is not None and not (RESULTS / f"{run.needs}.json").exists():
            execute(next(r for r in plan() if r.name == run.needs), data, args.threads)
        record = execute(run, data, args.threads)
        if record is not None:
            print(f"{run.name}: test acc {record['final_test_acc']:.4f}", flush=True)


if __name__ == "__main__":
    main()
