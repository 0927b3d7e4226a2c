"""The privacy–utility plot of the frontier table: accuracy against the strongest attack's SSIM.

One point per cipher and setting (32/4 filled, 224/16 open, joined by a line: the accuracy is
the same 32x32 vit_mini number for both), error bars where more than one seed ran. x is what
the attacks of the standard setting show (class-balanced victims, public images of the same
distribution), up to a mirror image where measured; a special setting that shows more (the
matched domain: victims and public images of one class) is a cross at the same height. Grey
lines: the SSIM of an unrelated image (the attack table's floor rows) at each setting. The accuracy
is the frontier recipe's where it ran, else the mini Table I recipe's; the label says which.
Ciphers with attacks but no accuracy run yet sit on a strip below, at their attacks' x only. Top left is private and useful.
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


def _points(axis: Any, row: dict[str, Any], y: float, colour: Any, yerr: float | None) -> None:
    """A row's markers at height ``y``: one per setting, joined, and its special-setting cross."""
    loss = row["privacy_loss"]
    xs = [loss[s] for s in MARKERS if s in loss]
    axis.plot(xs, [y] * len(xs), color=colour, linewidth=0.8, alpha=0.6)
    for setting, (marker, fill) in MARKERS.items():
        if setting in loss:
            axis.errorbar(loss[setting], y, yerr=yerr, fmt=marker, fillstyle=fill, color=colour,
                          capsize=3, markersize=7)  # fmt: skip
    for x in row.get("privacy_loss_special_setting", {}).values():
        axis.plot(x, y, "x", color=colour, markersize=8)


def _place_labels(axis: Any, labels: list[tuple[str, float, float, Any]]) -> None:
    """Label every point beside it, on the side with room (left of points right of x = 0.6);
    labels of nearby points on one side are stacked downwards a text line apart, with a thin
    leader line when moved, so that the crowded broken-cipher corner stays readable."""
    if not labels:
        return
    heights = [y for _, _, y, _ in labels]
    line = 0.045 * max(max(heights) - min(heights), 10.0)  # one text line, in accuracy points
    placed: list[tuple[float, float, bool]] = []  # (anchor x, text y, left side) so far
    for text, x, y, colour in sorted(labels, key=lambda label: -label[2]):
        left = x > 0.6
        near = [ty for px, ty, side in placed if side == left and abs(px - x) < 0.25]
        text_y = y
        while clash := [ty for ty in near if abs(ty - text_y) < line]:
            text_y = min(clash) - line
        placed.append((x, text_y, left))
        axis.annotate(
            text, (x, y), xytext=(x - 0.03 if left else x + 0.03, text_y),
            ha="right" if left else "left", va="bottom", fontsize=7, color=colour,
            arrowprops=None if text_y == y else {"arrowstyle": "-", "color": colour, "lw": 0.5},
        )  # fmt: skip


def plot(table: dict[str, Any], path: Path) -> Path:
    fig, (axis, strip) = plt.subplots(
        2, 1, figsize=(7.5, 6), sharex=True, gridspec_kw={"height_ratios": [5, 1]}
    )
    colours = plt.get_cmap("tab10")
    skipped: list[str] = []
    waiting: list[str] = []  # ciphers with attacks but no accuracy yet: on the strip below
    labels: list[tuple[str, float, float, Any]] = []  # (text, x, y, colour), placed at the end
    for index, row in enumerate(table["rows"]):
        found, loss, colour = plotted_accuracy(row), row["privacy_loss"], colours(index % 10)
        if not loss:
            skipped.append(row["name"])
            continue
        if found is None:
            y = len(waiting)
            waiting.append(row["name"])
            _points(strip, row, y, colour, None)
            strip.annotate(row["name"], (min(loss.values()), y), xytext=(-8, -3), ha="right",
                           textcoords="offset points", fontsize=7, color=colour)  # fmt: skip
            continue
        accuracy, recipe = found
        _points(axis, row, accuracy["mean"], colour, accuracy["std"])
        labels.append(
            (
                f"{row['name']} ({recipe}, n={accuracy['n']})",
                min(loss.values()),
                accuracy["mean"],
                colour,
            )
        )
    _place_labels(axis, labels)
    for setting, (marker, fill) in MARKERS.items():
        axis.plot([], [], marker, fillstyle=fill, color="grey", label=f"attacks at {setting}")
        floor = table.get("floor_unrelated_image_ssim", {}).get(setting)
        if floor is not None:
            for ax in (axis, strip):
                ax.axvline(
                    floor, color="grey", linewidth=0.8, linestyle=":" if fill == "none" else "--"
                )
            axis.text(floor, 0.02, f" unrelated image, {setting}", transform=axis.get_xaxis_transform(),
                      fontsize=6, color="grey", rotation=90, va="bottom")  # fmt: skip
    axis.plot([], [], "x", color="grey", label="matched domain (one class)")
    axis.set_ylabel("vit_mini test accuracy on CIFAR-10, 32x32 (%)")
    axis.margins(y=0.12)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="upper left")
    strip.set_yticks([])
    strip.set_ylim(-0.8, max(len(waiting), 1) - 0.2)
    strip.set_ylabel("accuracy\nnot run", fontsize=7)
    strip.grid(axis="x", alpha=0.3)
    strip.set_xlim(-0.05, 1.08)
    strip.set_xlabel(
        "strongest ciphertext-only attack, mean SSIM (privacy loss; lower = more private)"
    )
    title = "Privacy against utility per cipher"
    if skipped:
        title += f"\n(no attack run, not plotted: {', '.join(skipped)})"
    axis.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
