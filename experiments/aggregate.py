"""Aggregate training runs into Table I's layout, beside the paper's numbers, plus plots.

Reads every ``metrics.json`` under the given run roots (written by ``vitlearnenc-train``),
groups runs by (dataset, cipher, network, adaptation network), and writes

- ``table.md`` / ``table.csv``: mean ± std of test accuracy over seeds, the number of runs,
  the paper's number for the matching Table I row and the difference, and (with
  ``--attacks``) the strongest ciphertext-only attack on the cipher with its mean SSIM;
  below the table, the proposed-minus-plain gap per network (of the means, and paired by
  seed);
- ``accuracy.png``: accuracy per method and network;
- ``privacy_utility.png`` (with ``--attacks``): accuracy against the best attack's mean SSIM
  per cipher — the privacy/utility picture.

    python -m experiments.aggregate experiments/results/mini/runs --out experiments/results/mini
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# Qi et al. 2022, Table I (accuracy %, CIFAR-10 / CIFAR-100), keyed by (encryption, the
# paper's network, adaptation network); None = not reported
PAPER: dict[tuple[str, str, str | None], tuple[float | None, float | None]] = {
    ("le", "ShakeDrop", "le"): (94.49, 75.48),
    ("etc", "ShakeDrop", None): (85.94, 61.90),
    ("ele", "ShakeDrop", "ele"): (83.06, 62.97),
    ("pe", "ResNet-18", None): (92.03, None),
    ("proposed", "ViT-B/16", None): (96.64, 84.42),
    ("plain", "ResNet-18", None): (95.53, None),
    ("plain", "ShakeDrop", None): (96.70, 83.59),
    ("plain", "ViT-B/16", None): (99.11, 92.48),
}
#: model-name prefixes of the paper's own networks (full-scale runs)
PAPER_NETWORK_OF_MODEL = {
    "vit": "ViT-B/16",
    "pyramidnet": "ShakeDrop",
    "resnet18": "ResNet-18",
}
METHOD_ORDER = ["plain", "proposed", "le", "ele", "etc", "pe", "none"]


@dataclass
class Row:
    """All seeds of one (data, cipher, network, adapt) combination."""

    data: str
    cipher: str
    model: str
    adapt: str | None
    accuracies: list[float] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)

    @property
    def paper_network(self) -> str:
        """The network of the paper's matching row: the paper's own network for full-scale
        runs; for a small stand-in CNN (ResNet-20), ResNet-18 for PE (its only network there)
        and ShakeDrop for every other method."""
        for prefix, network in PAPER_NETWORK_OF_MODEL.items():
            if self.model.startswith(prefix):
                return network
        return "ResNet-18" if self.cipher == "pe" else "ShakeDrop"

    @property
    def family(self) -> str:
        """``vit`` or ``cnn``, with the adaptation network appended (``cnn+le``)."""
        base = "vit" if self.model.startswith("vit") else "cnn"
        return f"{base}+{self.adapt}" if self.adapt else base

    @property
    def mean(self) -> float:
        return statistics.fmean(self.accuracies)

    @property
    def std(self) -> float:
        return statistics.stdev(self.accuracies) if len(self.accuracies) > 1 else 0.0

    def paper(self) -> float | None:
        numbers = PAPER.get((self.cipher, self.paper_network, self.adapt))
        if numbers is None:
            return None
        return numbers[0] if self.data == "cifar10" else numbers[1]


def _adapt_of(summary: dict, path: Path) -> str | None:
    if summary.get("adapt"):
        return summary["adapt"]
    for name in ("le", "ele"):
        if f"adapt_{name}" in path.parent.name:
            return name
    return None


def collect(roots: list[Path]) -> list[Row]:
    """One :class:`Row` per combination, from every ``metrics.json`` under ``roots``."""
    rows: dict[tuple, Row] = {}
    for root in roots:
        for path in sorted(root.rglob("metrics.json")):
            summary = json.loads(path.read_text())
            accuracy = summary.get("metrics", {}).get("test/acc")
            if accuracy is None or "cipher" not in summary:
                continue
            key = (summary["data"], summary["cipher"], summary["model"], _adapt_of(summary, path))
            row = rows.setdefault(key, Row(*key))
            row.accuracies.append(100 * float(accuracy))
            row.seeds.append(int(summary.get("seed", 0)))
    order = {name: i for i, name in enumerate(METHOD_ORDER)}
    return sorted(
        rows.values(),
        key=lambda r: (r.data, r.family.split("+")[0], order.get(r.cipher, 99), r.family),
    )


@dataclass(frozen=True)
class Gap:
    """Encrypted (proposed) minus plain accuracy on one (data, network).

    Two readings, since the seeds may not all pair up while a sweep is under way: the
    difference of the two rows' means, and the per-seed differences of runs that share a seed
    (same weights init, data order and augmentation; only the key's effect differs), whose
    spread says whether the gap stands out from seed noise.
    """

    plain: Row
    proposed: Row

    @property
    def of_means(self) -> float:
        return self.proposed.mean - self.plain.mean

    @property
    def per_seed(self) -> dict[int, float]:
        plain = dict(zip(self.plain.seeds, self.plain.accuracies, strict=True))
        return {
            seed: accuracy - plain[seed]
            for seed, accuracy in sorted(
                zip(self.proposed.seeds, self.proposed.accuracies, strict=True)
            )
            if seed in plain
        }

    def describe(self) -> str:
        """One Markdown line: the gap of the means and the paired per-seed gaps."""
        line = (
            f"Encrypted (proposed) minus plain, {self.plain.model} on {self.plain.data}: "
            f"{self.of_means:+.2f} points (difference of the means of "
            f"{len(self.proposed.accuracies)} proposed and {len(self.plain.accuracies)} plain runs)"
        )
        per_seed = self.per_seed
        paired = list(per_seed.values())
        if len(paired) > 1:
            seeds = ", ".join(f"{s}: {g:+.2f}" for s, g in per_seed.items())
            line += (
                f"; per seed {seeds}; paired {statistics.fmean(paired):+.2f} ± "
                f"{statistics.stdev(paired):.2f} over {len(paired)} seeds"
            )
        return line


def gaps(rows: list[Row]) -> dict[tuple[str, str], Gap]:
    """The proposed cipher's :class:`Gap` per (data, network) that has a plain row."""
    plain = {(r.data, r.model): r for r in rows if r.cipher == "plain" and not r.adapt}
    return {
        (r.data, r.model): Gap(plain[(r.data, r.model)], r)
        for r in rows
        if r.cipher == "proposed" and (r.data, r.model) in plain
    }


def write_table(
    rows: list[Row], out: Path, attacks: dict[str, tuple[float, str]] | None = None
) -> None:
    """``table.md`` and ``table.csv`` in the paper's layout; ``attacks`` (cipher -> best mean
    SSIM and the attack) adds a column."""
    header = ["data", "encryption", "network", "accuracy (%)", "runs", "paper (%)", "ours - paper"]
    if attacks is not None:
        header.append("best attack SSIM (32 px)")
    records = []
    for row in rows:
        paper = row.paper()
        network = row.model + (f" + {row.adapt.upper()}-AdaptNet" if row.adapt else "")
        records.append(
            [
                row.data,
                row.cipher + ("*" if row.adapt else ""),
                network,
                f"{row.mean:.2f} ± {row.std:.2f}" if len(row.accuracies) > 1 else f"{row.mean:.2f}",
                str(len(row.accuracies)),
                "—" if paper is None else f"{paper:.2f} ({row.paper_network})",
                "—" if paper is None else f"{row.mean - paper:+.2f}",
            ]
        )
        if attacks is not None:
            best = attacks.get(row.cipher)
            records[-1].append("—" if best is None else f"{best[0]:.3f} ({best[1]})")
    out.mkdir(parents=True, exist_ok=True)
    with (out / "table.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([header, *records])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in records]
    lines += ["\n" + gap.describe() for _, gap in sorted(gaps(rows).items())]
    (out / "table.md").write_text("\n".join(lines) + "\n")


def plot_accuracy(rows: list[Row], out: Path) -> Path:
    """Bar chart of accuracy per method, one colour per (dataset, network) with a legend.

    Ticks carry the method and its run count; error bars (std over seeds) are drawn only
    where there is more than one run, so a single run does not look like a zero-spread one.
    """
    fig, axis = plt.subplots(figsize=(8, 3.5))
    groups = list(dict.fromkeys((r.data, r.model) for r in rows))
    colours = plt.get_cmap("tab10")
    for index, group in enumerate(groups):
        members = [(i, r) for i, r in enumerate(rows) if (r.data, r.model) == group]
        axis.bar(
            [i for i, _ in members],
            [r.mean for _, r in members],
            color=colours(index % 10),
            label=f"{group[1]} ({group[0]})",
        )
    spread = [(i, r) for i, r in enumerate(rows) if len(r.accuracies) > 1]
    axis.errorbar(
        [i for i, _ in spread],
        [r.mean for _, r in spread],
        yerr=[r.std for _, r in spread],
        fmt="none",
        ecolor="black",
        capsize=3,
    )
    labels = [f"{r.cipher}{'*' if r.adapt else ''}\nn={len(r.accuracies)}" for r in rows]
    axis.set_xticks(range(len(rows)), labels, fontsize=7)
    axis.set_ylabel("test accuracy (%)")
    axis.grid(axis="y", alpha=0.3)
    axis.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    path = out / "accuracy.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def read_attack_ssim(path: Path, image_size: int = 32) -> dict[str, tuple[float, str]]:
    """Best (highest) mean SSIM of any ciphertext-only attack per cipher, with that attack's
    name, from an attack ``table.csv`` (columns ``cipher``, ``attack``, ``ssim_mean``,
    optionally ``image_size``); reference rows and the known-plaintext attacks (``kpa``,
    ``frontier_kpa``) are ignored."""
    best: dict[str, tuple[float, str]] = {}
    with path.open() as handle:
        for record in csv.DictReader(handle):
            attack = record.get("attack", "")
            if (
                attack.startswith("reference")
                or attack.endswith("kpa")
                or not record.get("ssim_mean")
            ):
                continue
            if record.get("image_size") and int(record["image_size"]) != image_size:
                continue
            score = float(record["ssim_mean"])
            if score > best.get(record["cipher"], (-1.0, ""))[0]:
                best[record["cipher"]] = (score, attack)
    return best


def plot_privacy_utility(rows: list[Row], attacks: dict[str, tuple[float, str]], out: Path) -> Path:
    """Accuracy against the strongest attack's SSIM: top-left is private and useful."""
    fig, axis = plt.subplots(figsize=(5, 4))
    for row in rows:
        if row.cipher in attacks:
            ssim = attacks[row.cipher][0]
            axis.scatter(ssim, row.mean, marker="o" if row.family.startswith("vit") else "s")
            axis.annotate(f"{row.cipher} ({row.family})", (ssim, row.mean), fontsize=7)
    axis.set_xlabel("best attack mean SSIM (lower = more private)")
    axis.set_ylabel("test accuracy (%)")
    axis.grid(alpha=0.3)
    fig.tight_layout()
    path = out / "privacy_utility.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("roots", nargs="+", type=Path, help="folders to search for metrics.json")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--attacks", type=Path, help="attack table.csv for the privacy/utility plot"
    )
    args = parser.parse_args(argv)
    rows = collect(args.roots)
    if not rows:
        raise SystemExit(f"no finished runs (metrics.json with test/acc) under {args.roots}")
    attacks = read_attack_ssim(args.attacks) if args.attacks and args.attacks.exists() else None
    write_table(rows, args.out, attacks)
    plot_accuracy(rows, args.out)
    if attacks is not None:
        plot_privacy_utility(rows, attacks, args.out)
    print((args.out / "table.md").read_text())


if __name__ == "__main__":
    main()
