"""Accuracy columns of the frontier table from the utility runs' JSON files.

Reads ``experiments/results/frontier/utility/*.json`` (written by
:mod:`experiments.frontier_utility.run`) and groups them into rows: one per (protocol,
cipher, key_adapt, storage). Each row gives the mean and sample standard deviation (ddof 1)
of the final test accuracy over its seeds, with n and the seeds listed, so that a row with
one seed shows no spread rather than a made-up one. Writes ``accuracy.json`` and
``accuracy.md`` beside the inputs.

    python -m experiments.frontier_utility.aggregate
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from experiments.frontier_utility.run import RESULTS

#: protocols as the table names them; key_adapt_source runs (plain pretraining) are not rows
PROTOCOLS = {"scratch": "from scratch, 10 classes", "key_adapt_target": "fine-tune, classes 5-9"}


def row_key(record: dict) -> tuple[str, str, bool, str]:
    return (
        record["group"],
        record["cipher"],
        bool(record.get("key_adapt")),
        record.get("storage") or "float32",
    )


def aggregate(records: list[dict]) -> list[dict]:
    """Rows ``{protocol, cipher, key_adapt, storage, n, seeds, mean, std}`` (accuracy in %)."""
    groups: dict[tuple[str, str, bool, str], dict[int, float]] = {}
    for record in records:
        if record["group"] not in PROTOCOLS or record.get("final_test_acc") is None:
            continue
        seeds = groups.setdefault(row_key(record), {})
        if record["seed"] in seeds:
            raise ValueError(f"two results for seed {record['seed']} of {row_key(record)}")
        seeds[record["seed"]] = 100.0 * float(record["final_test_acc"])
    rows = []
    for (group, cipher, key_adapt, storage), by_seed in sorted(groups.items()):
        values = [by_seed[seed] for seed in sorted(by_seed)]
        rows.append(
            {
                "protocol": group,
                "cipher": cipher,
                "key_adapt": key_adapt,
                "storage": storage,
                "n": len(values),
                "seeds": sorted(by_seed),
                "mean": statistics.fmean(values),
                "std": statistics.stdev(values) if len(values) > 1 else None,
                "values": values,
            }
        )
    return rows


def cell(row: dict) -> str:
    """``57.12 ± 0.85 (n=3)``; one seed shows no spread: ``57.12 (n=1)``."""
    spread = f" ± {row['std']:.2f}" if row["std"] is not None else ""
    return f"{row['mean']:.2f}{spread} (n={row['n']})"


def markdown(rows: list[dict]) -> str:
    lines = [
        "| protocol | cipher | key_adapt | storage | test accuracy % (mean ± std over seeds) |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {PROTOCOLS[row['protocol']]} | {row['cipher']} | "
            f"{'yes' if row['key_adapt'] else 'no'} | {row['storage']} | {cell(row)} |"
        )
    return "\n".join(lines) + "\n"


def load(folder: Path) -> list[dict]:
    return [
        json.loads(path.read_text())
        for path in sorted(folder.glob("*.json"))
        if path.name != "accuracy.json"
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    rows = aggregate(load(args.results))
    (args.results / "accuracy.json").write_text(json.dumps(rows, indent=2) + "\n")
    (args.results / "accuracy.md").write_text(markdown(rows))
    print(markdown(rows), end="")


if __name__ == "__main__":
    main()
