"""Mini reproduction of Table I on this machine: every (model, cipher, seed) run in sequence,
each a plain ``vitlearnenc-train`` call into ``experiments/results/mini/runs``.

Resumable: a run whose ``metrics.json`` exists is skipped, and an interrupted run resumes from
its ``last.ckpt`` (the run directory is a function of the config), so the sweep can span
several sessions. Wall-clock and CPU time per run are appended to ``timings.jsonl`` (CPU time of
the run and its loader workers, all cores: unlike wall time it does not grow when the run
waits for a core or is paused).

    python -m experiments.mini.run_mini --data ../shared/data/cifar10-jpeg.tar.gz [--only vit]
        [--minutes 150]   # start no run that would not finish within 150 minutes from now
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "results" / "mini"
# (experiment, cipher, seeds): seed 0 of every row first, so that a sweep cut short by the end of
# a session still fills the whole table; then seeds 1 and 2 for plain and proposed.
RUNS: list[tuple[str, str, list[int]]] = [
    ("mini/vit", "plain", [0]),
    ("mini/vit", "proposed", [0]),
    ("mini/cnn", "plain", [0]),
    ("mini/cnn", "proposed", [0]),
    ("mini/vit", "le", [0]),
    ("mini/vit", "ele", [0]),
    ("mini/vit", "etc", [0]),
    ("mini/vit", "pe", [0]),
    ("mini/cnn_le_adapt", "le", [0]),
    ("mini/cnn_ele_adapt", "ele", [0]),
    ("mini/cnn", "etc", [0]),
    ("mini/cnn", "pe", [0]),
    ("mini/vit", "plain", [1, 2]),
    ("mini/vit", "proposed", [1, 2]),
    ("mini/cnn", "plain", [1, 2]),
    ("mini/cnn", "proposed", [1, 2]),
]


def run_dir(experiment: str, cipher: str, seed: int) -> Path:
    """The run directory the train config picks for these settings (see conf/experiment/mini)."""
    model = "vit_mini" if experiment == "mini/vit" else "resnet20"
    suffix = {"mini/cnn_le_adapt": "-adapt_le", "mini/cnn_ele_adapt": "-adapt_ele"}.get(
        experiment, ""
    )
    return RESULTS / "runs" / "train" / "runs" / f"cifar10-{cipher}-{model}{suffix}-seed{seed}"


def _children_cpu_seconds() -> float:
    """User + system CPU seconds of all finished child processes (and theirs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _expected_run_seconds(experiment: str, default: float = 20 * 60) -> float:
    """Expected wall time of the next ``experiment`` run: the slowest of its latest three runs
    in ``timings.jsonl`` (recent runs, so that one run slowed by a paused box does not hold the
    whole sweep back), else the slowest run of any experiment, else ``default``."""
    path = RESULTS / "timings.jsonl"
    if not path.exists():
        return default
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    same = [row["wall_s"] for row in rows if row["experiment"] == experiment][-3:]
    return max(same or [row["wall_s"] for row in rows] or [default])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", required=True, help="CIFAR-10 archive or folder of class folders")
    parser.add_argument("--only", default="", help="run only experiments containing this text")
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument(
        "--minutes",
        type=float,
        help="time available: start a run only if it should finish in time (expected duration: "
        "the slowest of the experiment's latest three runs, else 20 minutes), so that a "
        "session ends between runs",
    )
    args = parser.parse_args(argv)
    deadline = None if args.minutes is None else time.time() + 60 * args.minutes
    failed = run_sweep(Path(args.data), args.only, args.dry_run, deadline)
    if failed:
        raise SystemExit(f"failed runs (see their train.log): {', '.join(failed)}")


def run_sweep(data: Path, only: str, dry_run: bool, deadline: float | None) -> list[str]:
    """Run every unfinished run in order until ``deadline``; returns the runs that failed."""
    train = str(Path(sys.executable).parent / "vitlearnenc-train")
    failed: list[str] = []
    for experiment, cipher, seeds in RUNS:
        if only not in experiment:
            continue
        for seed in seeds:
            target = run_dir(experiment, cipher, seed)
            if (target / "metrics.json").exists():
                continue
            command = [
                train,
                f"experiment={experiment}",
                "data=cifar10_folder",
                f"data.root={data.resolve()}",
                f"cipher={cipher}",
                "key=seed",
                f"key.seed={seed}",
                f"seed={seed}",
                f"paths.log_dir={RESULTS / 'runs'}",
                "callbacks.progress_bar=null",
            ]
            if deadline is not None and time.time() + _expected_run_seconds(experiment) > deadline:
                print(f"stopping: {target.name} would not finish in the time given", flush=True)
                return failed
            print(" ".join(command[1:]), flush=True)
            if dry_run:
                continue
            start, cpu_start = time.time(), _children_cpu_seconds()
            if subprocess.run(command).returncode != 0:  # go on with the other runs
                failed.append(target.name)
                continue
            with (RESULTS / "timings.jsonl").open("a") as handle:
                handle.write(
                    json.dumps(
                        {
                            "experiment": experiment,
                            "cipher": cipher,
                            "seed": seed,
                            "wall_s": round(time.time() - start, 1),
                            "cpu_s": round(_children_cpu_seconds() - cpu_start, 1),
                            "command": "vitlearnenc-train " + " ".join(command[1:]),
                        }
                    )
                    + "\n"
                )
    return failed


if __name__ == "__main__":
    main()
