"""Training-curve plots from the CSV logger's metrics.csv."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _read_epoch_metrics(metrics_csv: Path) -> dict[str, list[tuple[float, float]]]:
    series: dict[str, list[tuple[float, float]]] = defaultdict(list)
    with metrics_csv.open() as handle:
        for row in csv.DictReader(handle):
            epoch = row.get("epoch")
            if not epoch:
                continue
            for name, value in row.items():
                if value and name.startswith(("train/", "val/")) and not name.endswith("_step"):
                    series[name].append((float(epoch), float(value)))
    return series


def plot_training_curves(run_dir: Path) -> Path | None:
    """Plot loss and accuracy per epoch (train and val) to ``<run_dir>/curves.png``.

    Returns None when the run has no CSV log (e.g. ``logger=none``).
    """
    metrics_csv = next(iter(sorted(Path(run_dir).glob("csv/**/metrics.csv"))), None)
    if metrics_csv is None:
        return None
    series = _read_epoch_metrics(metrics_csv)
    if not series:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for axis, kind in zip(axes, ("loss", "acc"), strict=True):
        for name in sorted(series):
            if name.split("/", 1)[1] == kind:
                epochs, values = zip(*series[name], strict=True)
                axis.plot(epochs, values, marker="o", label=name)
        axis.set_xlabel("epoch")
        axis.set_title(kind)
        axis.legend()
        axis.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(run_dir) / "curves.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
