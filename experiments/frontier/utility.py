"""The cost side of the frontier: test accuracy per cipher and encryption throughput.

Accuracy comes from two committed sets of vit_mini runs on the CIFAR-10 JPEG copy, never mixed:
the frontier utility runs (``experiments/results/frontier/utility/*.json``, aggregated with
:func:`experiments.frontier_utility.aggregate.aggregate`) and the mini Table I runs
(``experiments/results/mini/runs/**/metrics.json``). Each value carries its recipe, n and
seeds.

Throughput is the committed cipher benchmark (``experiments/results/bench/ciphers_cpu.json``;
for ciphers it has no row for, ``ciphers_linear_cpu.json``, the later run that added the
orthomix rows beside the proposed cipher's), else the frontier study's one-batch measurement,
with its source and the load it ran under named.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from experiments.frontier_utility.aggregate import aggregate

FRONTIER_UTILITY = Path("experiments/results/frontier/utility")
MINI_RUNS = Path("experiments/results/mini/runs")
#: cipher benchmarks, later ones taking precedence for the ciphers they measure
BENCHES = (
    Path("experiments/results/bench/ciphers_linear_cpu.json"),
    Path("experiments/results/bench/ciphers_cpu.json"),
)
FRONTIER_RESULTS = Path("experiments/results/frontier/results.json")
MODEL = "vit_mini"
#: the benchmark row that measures a cipher as the project trains with it (PE: a fresh key per
#: image)
BENCH_ROW = {"pe": "pe-per-image"}


@dataclass(frozen=True)
class Accuracy:
    """Test accuracy in % over seeds; ``std`` is None for one seed (no spread is shown)."""

    mean: float
    std: float | None
    n: int
    seeds: list[int]
    recipe: str
    source: str

    def describe(self) -> str:
        spread = f" ± {self.std:.2f}" if self.std is not None else ""
        return f"{self.mean:.2f}{spread} (n={self.n})"


def _records(folder: Path) -> list[dict[str, Any]]:
    return [
        json.loads(p.read_text())
        for p in sorted(folder.glob("*.json"))
        if p.name != "accuracy.json"
    ]


def frontier_accuracy(root: Path) -> tuple[dict[str, Accuracy], list[dict[str, Any]]]:
    """(cipher -> accuracy from scratch on 10 classes with float32 storage, every other row of
    the utility runs: key adaptation, float16 storage)."""
    records = _records(root / FRONTIER_UTILITY)
    recipes = {
        (r["group"], r["cipher"]): f"{MODEL}, experiment={r.get('experiment')}, "
        f"{r.get('epochs')} epochs, final epoch"
        for r in records
    }
    headline, others = {}, []
    for row in aggregate(records):
        recipe = recipes[row["protocol"], row["cipher"]]
        if row["protocol"] == "scratch" and not row["key_adapt"] and row["storage"] == "float32":
            headline[row["cipher"]] = Accuracy(
                row["mean"], row["std"], row["n"], row["seeds"],
                f"{recipe}, from scratch", str(FRONTIER_UTILITY),
            )  # fmt: skip
        else:
            others.append(row | {"recipe": recipe})
    return headline, others


def table_i_accuracy(root: Path) -> dict[str, Accuracy]:
    """cipher -> the mini Table I vit_mini accuracy (CIFAR-10, no adaptation network), from the
    runs' ``metrics.json`` as :func:`experiments.aggregate.collect` reads them."""
    runs: dict[str, dict[int, float]] = {}
    epochs: dict[str, set[int]] = {}
    for path in sorted((root / MINI_RUNS).rglob("metrics.json")):
        summary = json.loads(path.read_text())
        accuracy = summary.get("metrics", {}).get("test/acc")
        if (
            accuracy is None
            or summary.get("model") != MODEL
            or summary.get("data") != "cifar10"
            or summary.get("adapt")
        ):
            continue
        runs.setdefault(summary["cipher"], {})[int(summary.get("seed", 0))] = 100 * accuracy
        epochs.setdefault(summary["cipher"], set()).add(int(summary["epochs"]))
    out = {}
    for cipher, by_seed in runs.items():
        values = list(by_seed.values())
        out[cipher] = Accuracy(
            statistics.fmean(values),
            statistics.stdev(values) if len(values) > 1 else None,
            len(values),
            sorted(by_seed),
            f"{MODEL}, mini Table I recipe (experiment=mini/vit, "
            f"{'/'.join(map(str, sorted(epochs[cipher])))} epochs, best-validation checkpoint)",
            str(MINI_RUNS),
        )
    return out


@dataclass(frozen=True)
class Throughput:
    """Encryption speed against ``clone()`` of the same batch (higher is faster)."""

    ratio_vs_clone: float
    images_per_s: float
    setting: str
    source: str

    def describe(self) -> str:
        return f"{self.ratio_vs_clone:.2f}x ({self.images_per_s:,.0f} images/s)"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def throughputs(root: Path) -> dict[str, Throughput]:
    """cipher -> throughput: the cipher benchmark's uint8 row, else the frontier study's."""
    out: dict[str, Throughput] = {}
    path = root / FRONTIER_RESULTS
    if path.exists():
        for cipher, bench in json.loads(path.read_text()).get("throughput", {}).items():
            out[cipher] = Throughput(
                bench["ratio_vs_clone"],
                bench["images_per_s"],
                f"frontier study: one batch of {bench['batch']} x 3 x 224 x 224 uint8, best of "
                f"3, {bench['threads']} threads (clone() time noise-dominated)",
                str(FRONTIER_RESULTS),
            )
    for bench_path in BENCHES:
        path = root / bench_path
        if not path.exists():
            continue
        bench = json.loads(path.read_text())
        shape = " x ".join(str(d) for d in bench["batch_shape"])
        threads = bench["machine"]["torch_threads"]
        load = bench["machine"].get("load_average_1_5_15min", ["?"])[0]
        cipher_of = {label: cipher for cipher, label in BENCH_ROW.items()}
        for row in bench["rows"]:
            label = row["cipher"]
            if row.get("dtype") == "uint8" and label not in BENCH_ROW:  # pe: the one-key row
                out[cipher_of.get(label, label)] = Throughput(
                    row["encrypt_ratio_to_clone"],
                    row["encrypt_images_per_s"],
                    f"cipher benchmark, row {label}: {shape} uint8, best of "
                    f"{bench['repeats']}, {threads} threads, load average {load}",
                    str(bench_path),
                )
    return out
