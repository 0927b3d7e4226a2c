"""Write the frontier table: per cipher, accuracy against the strongest attack we ran.

One row per registered cipher (``pre_encrypted`` is the identity on data encrypted beforehand,
not a cipher): vit_mini test accuracy (mean ± std over seeds, n, the recipe named; two recipes,
never mixed in one column), the strongest ciphertext-only attack's mean SSIM at 32/4 and at
224/16 (the attack and its budget named), the known pairs needed for the exact key, the key
space in bits (from the cipher's own ``key_space_bits``) and the encryption throughput against
``clone()``. Every number comes from a committed result file (listed in the output); a cell
with no result says "not run". Writes ``frontier.md``, ``frontier.json`` and
``privacy_utility.png`` into ``experiments/results/frontier/``::

    python -m experiments.frontier.table
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from experiments.frontier import attacks as atk
from experiments.frontier.attacks import MIRRORED
from experiments.frontier.plot import plot
from experiments.frontier.utility import (
    Accuracy,
    frontier_accuracy,
    table_i_accuracy,
    throughputs,
)
from vitlearnenc.ciphers import get_cipher_class, list_ciphers, probe_cipher

ROOT = Path(__file__).resolve().parents[2]
OUT = Path("experiments/results/frontier")
ORDER = ("plain", "proposed", "le", "ele", "etc", "etc_gray", "pe", "orthomix", "orthomix_sub")
NAMES = {"le": "LE", "ele": "ELE", "etc": "EtC", "etc_gray": "EtC (grayscale)", "pe": "PE"}
NOT_RUN = "not run"


def ciphers() -> list[str]:
    """Every registered cipher, the paper's order first; not ``pre_encrypted`` (no cipher)."""
    names = [n for n in list_ciphers() if not getattr(get_cipher_class(n), "pre_encrypted", False)]
    return sorted(names, key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))


def key_bits(cipher: str) -> dict[str, float]:
    """log2 of the key space at 32/4 and 224/16, from a throw-away key (the size of the space
    does not depend on the key drawn)."""
    return {
        f"{size}/{block}": probe_cipher(cipher, size, block).key_space_bits()
        for size, block in atk.SETTINGS
    }


def build(root: Path) -> dict[str, Any]:
    """Every row of the table, and what it was built from."""
    results = atk.all_results(root)
    pairs = atk.known_plaintext(root)
    ceiling = atk.reference(root, "reference_plain")
    frontier, other_utility = frontier_accuracy(root)
    table_i = table_i_accuracy(root)
    speed = throughputs(root)
    rows = []
    for cipher in ciphers():
        row: dict[str, Any] = {"cipher": cipher, "name": NAMES.get(cipher, cipher)}
        row["accuracy"] = {
            "frontier_recipe": _accuracy(frontier.get(cipher)),
            "table_i_recipe": _accuracy(table_i.get(cipher)),
        }
        row["attacks"], row["kpa"] = {}, {}
        row["privacy_loss"], row["privacy_loss_special_setting"] = {}, {}
        for size, block in atk.SETTINGS:
            setting = f"{size}/{block}"
            shown = atk.strongest(results, cipher, size)
            row["attacks"][setting] = [r.as_dict() | {"label": label} for label, r in shown]
            standard, special = atk.privacy_loss(shown)
            if cipher == "plain" and size in ceiling:  # no encryption: the image itself
                standard = ceiling[size]
            if standard is not None:
                row["privacy_loss"][setting] = standard
            if special is not None:
                row["privacy_loss_special_setting"][setting] = special
            kpa = atk.fewest_pairs(pairs, cipher, size)
            row["kpa"][setting] = None if kpa is None else vars(kpa)
        row["key_bits"] = key_bits(cipher)
        row["throughput"] = speed[cipher].as_dict() if cipher in speed else None
        rows.append(row)
    return {
        "rows": rows,
        "other_utility": other_utility,
        "floor_unrelated_image_ssim": {
            f"{size}/{block}": atk.reference(root, "reference_random").get(size)
            for size, block in atk.SETTINGS
        },
        "details": {
            f"{cipher}@{size}": [r.as_dict() for r in _top(results, cipher, size)]
            for cipher in ciphers()
            for size, _ in atk.SETTINGS
        },
    }


def _accuracy(value: Accuracy | None) -> dict[str, Any] | None:
    return None if value is None else vars(value) | {"text": value.describe()}


def _top(results: list[atk.AttackResult], cipher: str, size: int, count: int = 4) -> list:
    """The ``count`` strongest distinct attacks (by what they show of the images)."""
    mine = [r for r in results if r.cipher == cipher and r.image_size == size]
    best: dict[tuple[str, str], atk.AttackResult] = {}
    for r in sorted(mine, key=lambda r: (-round(r.privacy_loss, 3), r.corpus or 1)):
        best.setdefault((r.attack, r.setting), r)
    return list(best.values())[:count]


def attack_cell(shown: list[dict[str, Any]], cipher: str, floor: float | None) -> str:
    """``**0.998** (attack; budget) [setting]; standard setting: ...; up to a mirror ...``, and
    a note where the strongest stays below an unrelated image's SSIM (``floor``)."""
    if cipher == "plain":
        return "— (no encryption)"
    if not shown:
        return NOT_RUN
    parts = []
    for r in shown:
        if r["label"] == MIRRORED:
            parts.append(
                f"{r['label']}: **{r['privacy_loss']:.3f}** (as restored {r['ssim']:.3f}) {_what(r)}"
            )
        else:
            value = f"**{r['ssim']:.3f}**" if not parts else f"{r['ssim']:.3f}"
            parts.append(f"{r['label'] + ': ' if r['label'] else ''}{value} {_what(r)}")
    if floor is not None and max(r["privacy_loss"] for r in shown) < floor:
        parts.append(f"below an unrelated image's {floor:.3f}")
    return "; ".join(parts)


def _what(r: dict[str, Any]) -> str:
    setting = f" [{r['setting']}]" if r["setting"] else ""
    return f"({r['attack']}; {r['budget']}){setting}"


def kpa_cell(row: dict[str, Any]) -> str:
    if row["cipher"] == "plain":
        return "— (no key)"
    cells = []
    for setting in row["kpa"]:
        kpa = row["kpa"][setting]
        if kpa is None:
            cells.append(NOT_RUN)
        elif kpa["pairs"] is not None:
            cells.append(str(kpa["pairs"]))
        elif kpa["reason"]:
            cells.append("n/a")
        else:
            cells.append(f"not exact at {kpa['tried']}")
    return " · ".join(cells)


def accuracy_cell(value: dict[str, Any] | None) -> str:
    return NOT_RUN if value is None else value["text"]


def markdown(table: dict[str, Any], command: str) -> str:
    rows, floors = table["rows"], table["floor_unrelated_image_ssim"]
    lines = [
        "# The frontier: what each cipher costs and what the strongest attack we ran shows",
        "",
        f"Generated by `{command}` (`experiments/frontier/table.py`) from committed result "
        "files only (each cell's file is named below the table); a cell with no committed result says "
        f'"{NOT_RUN}". Plot: [`privacy_utility.png`](privacy_utility.png); the same numbers '
        "in [`frontier.json`](frontier.json).",
        "",
        "Threat model (Kerckhoffs): the attacker knows the cipher family, image and block size, "
        "not the key; the provider holds every ciphertext of the one key (the encrypted "
        "training set) plus public plain images of the same domain. Attack columns: mean SSIM "
        "of the restorations against the plain images (higher = the attack shows more; 1 = "
        "restored exactly), the strongest *ciphertext-only* attack of every committed result "
        "(attack table, population curves, frontier study), with the attack and its budget. "
        "Known-plaintext attacks have their own column. No cipher here is claimed "
        "cryptographically secure: a low number means it resists the attacks we ran, at "
        "these budgets.",
        "",
        "| cipher | accuracy %, frontier recipe | accuracy %, mini Table I recipe "
        "| strongest attack, 32/4 | strongest attack, 224/16 "
        "| KPA pairs for the exact key (32/4 · 224/16) | key bits (32/4 · 224/16) "
        "| encryption vs clone() |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        bits = " · ".join(f"{b:,.0f}" for b in row["key_bits"].values())
        speed = row["throughput"]
        if row["cipher"] == "plain":
            speed_text = "— (identity)"
        elif speed is None:
            speed_text = NOT_RUN
        else:
            speed_text = f"{speed['ratio_vs_clone']:.2g}x ({speed['images_per_s']:,.0f} images/s)"
        lines.append(
            f"| {row['name']} | {accuracy_cell(row['accuracy']['frontier_recipe'])} "
            f"| {accuracy_cell(row['accuracy']['table_i_recipe'])} "
            + "".join(
                f"| {attack_cell(row['attacks'][s], row['cipher'], floors.get(s))} "
                for s in row["attacks"]
            )
            + f"| {kpa_cell(row)} | {bits} | {speed_text} |"
        )
    lines += [
        "",
        "![privacy against utility](privacy_utility.png)",
        "",
        "Plot: x is what the standard setting's strongest attack shows (class-balanced victims, "
        "public images of the same distribution; up to a mirror image where the population "
        "curves measured it), a cross where the matched domain shows more; y is the frontier "
        "recipe's accuracy where it ran, else the mini Table I recipe's (the label says which). "
        "Ciphers with no accuracy run sit on the strip below. The accuracy is at 32x32 for both "
        "settings.",
        "",
        *_notes(table),
    ]
    return "\n".join(lines) + "\n"


def _notes(table: dict[str, Any]) -> list[str]:
    rows = table["rows"]
    recipes = {
        value["recipe"]: value["source"]
        for row in rows
        for value in row["accuracy"].values()
        if value is not None
    }
    floors = ", ".join(
        f"{v:.3f} at {s}" for s, v in table["floor_unrelated_image_ssim"].items() if v is not None
    )
    lines = [
        "## Accuracy recipes",
        "",
        "Test accuracy of vit_mini on the 10,000 CIFAR-10 test images (JPEG copy, 32x32, "
        "block 4), mean ± sample std over seeds; one seed shows no ±. The two recipes are "
        "separate columns and are not comparable with each other:",
        "",
        *[f"- {recipe} (`{source}`)" for recipe, source in recipes.items()],
        "",
    ]
    if table["other_utility"]:
        lines += [
            "Other utility runs (same recipe, other protocols or storage):",
            "",
            "| protocol | cipher | key_adapt | storage | accuracy % |",
            "|---|---|---|---|---|",
        ]
        for r in table["other_utility"]:
            spread = f" ± {r['std']:.2f}" if r["std"] is not None else ""
            lines.append(
                f"| {r['protocol']} | {r['cipher']} | {'yes' if r['key_adapt'] else 'no'} "
                f"| {r['storage']} | {r['mean']:.2f}{spread} (n={r['n']}) |"
            )
        lines.append("")
    lines += [
        "## The strongest attacks in detail",
        "",
        f"An unrelated image scores {floors or 'not run'} (the attack table's floor rows). "
        "Per cipher and setting, the strongest distinct attacks by what they show (as "
        "restored, and up to a mirror image or turn where the population curves measured it):",
        "",
    ]
    for key, shown in table["details"].items():
        if shown:
            cipher, size = key.split("@")
            text = "; ".join(
                f"{r['ssim']:.3f}"
                + (
                    f" (up to orientation {r['ssim_up_to_orientation']:.3f})"
                    if r["ssim_up_to_orientation"] is not None
                    and r["ssim_up_to_orientation"] > r["ssim"] + 5e-4
                    else ""
                )
                + f" {_what(r)} `{r['source']}`"
                for r in shown
            )
            lines.append(f"- {cipher} at {size} px: {text}")
    lines += ["", "## Known plaintext and throughput", ""]
    for row in rows:
        for setting, kpa in row["kpa"].items():
            if kpa is not None:
                why = f": {kpa['reason']}" if kpa["reason"] else ""
                lines.append(
                    f"- KPA, {row['cipher']} at {setting}: {kpa_cell_one(kpa)} "
                    f"(`{kpa['source']}`){why}"
                )
    for row in rows:
        speed = row["throughput"]
        if speed is not None and row["cipher"] != "plain":
            lines.append(f"- Throughput, {row['cipher']}: {speed['setting']} (`{speed['source']}`)")
    lines += [
        "",
        "Key bits: `key_space_bits()` of each cipher (log2 of its key space; PE: per image, "
        "as every image has its own key). The key space does not measure security: the "
        "shared-key ciphers above fall to attacks whatever its size.",
        "",
    ]
    return lines


def kpa_cell_one(kpa: dict[str, Any]) -> str:
    if kpa["pairs"] is not None:
        return f"exact key from {kpa['pairs']} pair{'s' if kpa['pairs'] != 1 else ''}"
    if kpa["reason"]:
        return "n/a"
    return f"not exact at {kpa['tried']} pairs"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="repository to read results from")
    parser.add_argument("--out", type=Path, help=f"output folder (default: <root>/{OUT})")
    args = parser.parse_args(argv)
    out = args.out or args.root / OUT
    command = "python -m experiments.frontier.table " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    table = build(args.root)
    table["command"] = command.strip()
    out.mkdir(parents=True, exist_ok=True)
    (out / "frontier.json").write_text(json.dumps(table, indent=1) + "\n")
    (out / "frontier.md").write_text(markdown(table, table["command"]))
    plot(table, out / "privacy_utility.png")
    print(f"wrote {out / 'frontier.md'}, frontier.json and privacy_utility.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
