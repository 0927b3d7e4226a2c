"""The privacy–utility plot of the frontier table: accuracy against the strongest attack's SSIM.

One point per cipher and setting (32/4 filled, 224/16 open, joined by a line: the accuracy is
the same 32x32 vit_mini number for both), error bars where more than one seed ran. x is what
the attacks of the standard setting show (class-balanced victims, public images of the same
distribution), up to a mirror image where measured; a special setting that shows more (the
matched domain: victims and public images of one class) is a cross at the same height. The accuracy
is the frontier recipe's where it ran, else the mini Table I recipe's; the label says which.
Top left is private and useful.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MARKERS = {"32/4": ("o", "full"), "224/16": ("s", "none")}
RECIPES = {"frontier_recipe": "frontier recipe", "table_i_recipe": "Table I recipe"}


def plotted_accuracy(row: dict[str, Any]) -> tuple[dict[str, Any], str] | None:
    """The accuracy a row is plotted with, and its recipe's short name."""
    for key, name in RECIPES.items():
        if row["accuracy"][key] is not None:
            return row["accuracy"][key], name
    return None


def plot(table: dict[str, Any], path: Path) -> Path:
    fig, axis = plt.subplots(figsize=(7.5, 5))
    colours = plt.get_cmap("tab10")
    skipped = []
    labelled: list[tuple[float, float]] = []  # label anchors so far: stack labels that meet
    for index, row in enumerate(table["rows"]):
        found = plotted_accuracy(row)
        loss = row["privacy_loss"]
        if found is None or not loss:
            skipped.append(row["name"])
            continue
        accuracy, recipe = found
        colour = colours(index % 10)
        xs = [loss[s] for s in MARKERS if s in loss]
        axis.plot(xs, [accuracy["mean"]] * len(xs), color=colour, linewidth=0.8, alpha=0.6)
        for setting, (marker, fill) in MARKERS.items():
            if setting not in loss:
                continue
            axis.errorbar(
                loss[setting],
                accuracy["mean"],
                yerr=accuracy["std"] if accuracy["std"] is not None else None,
                fmt=marker,
                fillstyle=fill,
                color=colour,
                capsize=3,
                markersize=7,
            )
        for x in row.get("privacy_loss_special_setting", {}).values():
            axis.plot(x, accuracy["mean"], "x", color=colour, markersize=8)
        anchor = (xs[0], accuracy["mean"])
        below = sum(abs(x - anchor[0]) < 0.15 and abs(y - anchor[1]) < 2.0 for x, y in labelled)
        labelled.append(anchor)
        axis.annotate(
            f"{row['name']} ({recipe}, n={accuracy['n']})",
            anchor,
            xytext=(5, 4 + 10 * below),
            textcoords="offset points",
            fontsize=7,
            color=colour,
        )
    for setting, (marker, fill) in MARKERS.items():
        axis.plot([], [], marker, fillstyle=fill, color="grey", label=f"attacks at {setting}")
    axis.plot([], [], "x", color="grey", label="matched domain (one class)")
    axis.set_xlabel(
        "strongest ciphertext-only attack, mean SSIM (privacy loss; lower = more private)"
    )
    axis.set_ylabel("vit_mini test accuracy on CIFAR-10, 32x32 (%)")
    axis.set_xlim(-0.05, 1.08)
    axis.margins(y=0.12)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="upper left")
    title = "Privacy against utility per cipher"
    if skipped:
        title += f"\n(not plotted, no accuracy or no attack run: {', '.join(skipped)})"
    axis.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
