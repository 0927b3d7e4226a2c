"""Build the attack table and the Fig. 4-style figures from the runs of ``sweep.py``.

Reads ``experiments/results/attacks/runs/*.json`` (one ``metrics.json`` per run) and writes
``table.md`` and ``table.csv`` next to them; reads the runs' first images (``<row>.samples.pt``
beside the JSON, else ``samples.pt`` in the sweep's log directory) for ``grid_32.png`` (one
row per cipher: plain, ciphertext, every attack's restoration with its SSIM), ``grid_224.png``
(the proposed cipher, three images) and ``grid_siagan_32.png`` (SIA-GAN per cipher and
training budget). A figure some of whose runs have no images left is not rewritten, so that a
table refresh never degrades a committed figure.

    python experiments/attacks/aggregate.py [--log-dir /tmp/vitlearnenc-attack-logs] [--image 0]
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

RESULTS = Path(__file__).resolve().parents[1] / "results" / "attacks"
CIPHERS = ("proposed", "le", "ele", "etc", "pe")
#: the linear patch ciphers (issue #16): a 32-px row each where a run exists
FRONTIER = ("orthomix", "orthomix_sub")
NAMES = {"proposed": "proposed", "le": "LE", "ele": "ELE", "etc": "EtC", "pe": "PE"}
NAMES |= {"orthomix": "orthomix", "orthomix_sub": "orthomix_sub"}
#: table columns: attack option -> header
COLUMNS = {
    "fr": "FR",
    "fr_advanced": "FR-adv",
    "itn": "ITN (U-Net)",
    "gan_lab": "GAN (lab)",
    "gan": "SIA-GAN",
    "jigsaw": "jigsaw",
    "population": "population (N ciphertexts)",
    "frontier_covariance": "2nd order (N ciphertexts)",
    "frontier_ica": "ICA (N ciphertexts)",
    "kpa": "KPA (1 pair)",
    "frontier_kpa": "linear KPA (1 pair)",
}
#: the ciphers of the 224-px section: the proposed cipher, and the others where a run exists
#: (the population attacks)
CIPHERS_224 = ("proposed", "etc", "le", "ele", "pe")


def load_runs(results: Path) -> dict[str, dict[str, Any]]:
    return {
        path.stem: json.loads(path.read_text())
        for path in sorted((results / "runs").glob("*.json"))
    }


def samples_path(results: Path, log_dir: Path, row: str) -> Path | None:
    """Where a run's first images are kept: beside its JSON, else in its log directory."""
    for path in (results / "runs" / f"{row}.samples.pt", log_dir / row / "samples.pt"):
        if path.exists():
            return path
    return None


def cell(run: dict[str, Any] | None, section_n: int | None = None) -> str:
    """Mean SSIM (PSNR) of a run, with its corpus size N (population attacks) and its image
    count where it differs from the section's."""
    if run is None:
        return "—"
    if not run.get("applicable", True):
        return "n/a"
    count = f" [{run['n']} images]" if section_n is not None and run["n"] != section_n else ""
    corpus = run.get("budget", {}).get("corpus_size")
    size = f", N = {corpus:,}" if corpus is not None else ""
    return f"{run['ssim']['mean']:.3f} ({run['psnr']['mean']:.1f} dB){size}{count}"


def section_images(runs: dict[str, dict[str, Any]], size: int) -> int | None:
    """The victim image count most runs of one image size used."""
    counts = Counter(r["n"] for k, r in runs.items() if k.startswith(f"{size}px") and "n" in r)
    return counts.most_common(1)[0][0] if counts else None


def budget_text(run: dict[str, Any]) -> str:
    budget = run.get("budget", {})
    if "corpus_size" in budget:  # population attacks: N ciphertexts of the key (+ public images)
        public = budget.get("public_images", 0)
        return (
            f"N = {budget['corpus_size']} ciphertexts of the victim key"
            + (f" + {public} public images" if public else " (ciphertext-only)")
            + f", {budget.get('seconds', 0):.0f} s"
        )
    if "iterations" not in budget:
        return f"{budget.get('seconds', 0):.0f} s"
    params = sum(budget.get("parameters", {}).values())
    epochs = budget["epochs"]
    text = (
        f"{epochs} epoch{'s' if epochs != 1 else ''}, {budget['iterations']} iterations x batch "
        f"{budget['batch_size']}, {params / 1e6:.2f} M parameters, {budget['seconds']:.0f} s"
    )
    if "public_images" in budget:
        return f"{budget['public_images']} attacker images; " + text
    return (
        f"{budget['victim_train_ciphertexts']} labelled victim ciphertexts + "
        f"{budget['natural_images']} natural images; " + text
    )


def write_csv(runs: dict[str, dict[str, Any]], results: Path) -> None:
    fields = [
        "row", "image_size", "block_size", "cipher", "attack", "applicable", "n",
        "ssim_mean", "ssim_std", "ssim_median", "psnr_mean", "psnr_std", "psnr_median",
        "ssim_gaussian_mean", "seconds", "budget", "key_recovery", "reason",
    ]  # fmt: skip
    with (results / "table.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for row, run in runs.items():
            out: dict[str, Any] = {
                "row": row,
                "image_size": run["image_size"],
                "block_size": run["block_size"],
                "cipher": run["cipher"],
                "attack": run["attack"],
                "applicable": run.get("applicable", True),
                "reason": run.get("reason", ""),
            }
            if out["applicable"]:
                out.update(
                    n=run["n"],
                    seconds=run["budget"].get("seconds"),
                    budget=budget_text(run),
                    key_recovery=json.dumps(run.get("key_recovery") or {}, sort_keys=True),
                    ssim_gaussian_mean=run.get("ssim_gaussian", {}).get("mean"),
                )
                for metric in ("ssim", "psnr"):
                    for stat in ("mean", "std", "median"):
                        out[f"{metric}_{stat}"] = round(run[metric][stat], 4)
            writer.writerow(out)


def table_section(
    runs: dict[str, dict[str, Any]], size: int, ciphers: tuple[str, ...]
) -> list[str]:
    columns = [a for a in COLUMNS if any(f"{size}px-{c}-{a}" in runs for c in ciphers)]
    lines = [
        "| cipher | " + " | ".join(COLUMNS[a] for a in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for cipher in ciphers:
        section_n = section_images(runs, size)
        cells = [cell(runs.get(f"{size}px-{cipher}-{a}"), section_n) for a in columns]
        lines.append(f"| {NAMES[cipher]} | " + " | ".join(cells) + " |")
    references = [
        f"{label}: {cell(runs.get(f'{size}px-proposed-{ref}'))}"
        for ref, label in (
            ("reference_plain", "ceiling (the plain image itself)"),
            ("reference_random", "floor (an unrelated test image)"),
        )
        if f"{size}px-proposed-{ref}" in runs
    ]
    if references:
        lines += ["", "Reference rows, same images: " + "; ".join(references) + "."]
    reasons = {
        f"{COLUMNS[run['attack']]} on {NAMES[run['cipher']]}": run["reason"]
        for key, run in runs.items()
        if key.startswith(f"{size}px-") and not run.get("applicable", True)
    }
    if reasons:
        lines += ["", "Not applicable:", ""] + [f"- {what}: {why}" for what, why in reasons.items()]
    return lines


def with_runs(
    runs: dict[str, dict[str, Any]], size: int, ciphers: tuple[str, ...]
) -> tuple[str, ...]:
    """The ``ciphers`` with a run at ``size``."""
    return tuple(c for c in ciphers if any(row.startswith(f"{size}px-{c}-") for row in runs))


def key_recovery_lines(runs: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    for row, run in runs.items():
        recovery = run.get("key_recovery")
        if run.get("applicable", True) and recovery:
            values = ", ".join(
                f"{k} = {v:.3f}" if isinstance(v, float) else f"{k} = {v}"
                for k, v in recovery.items()
            )
            lines.append(f"- `{row}`: {values}")
    return lines


def budget_lines(runs: dict[str, dict[str, Any]]) -> list[str]:
    return [
        f"- `{row}`: {budget_text(run)}"
        for row, run in runs.items()
        if run.get("applicable", True)
        and ({"iterations", "corpus_size"} & set(run.get("budget", {})))
    ]


def gan_variant(run: dict[str, Any]) -> tuple[bool, int]:
    """A SIA-GAN run's (shared adaptation conv, training iterations): also its sort key,
    block-wise adaptation first, then by iterations."""
    budget = run["budget"]
    return bool(budget.get("generator", {}).get("shared_adaptation")), budget["iterations"]


def gan_variant_text(run: dict[str, Any]) -> str:
    shared, iterations = gan_variant(run)
    return f"{'shared, ' if shared else ''}{iterations} it"


def gan_runs(runs: dict[str, dict[str, Any]], cipher: str) -> list[tuple[str, dict[str, Any]]]:
    """The 32-px SIA-GAN runs of one cipher (the table's cell and its tagged variants),
    block-wise adaptation first, then by training iterations."""
    found = [
        (row, run)
        for row, run in runs.items()
        if row.startswith(f"32px-{cipher}-gan")
        and run["attack"] == "gan"
        and run.get("applicable", True)
    ]
    return sorted(found, key=lambda item: gan_variant(item[1]))


def table_gan_iterations(runs: dict[str, dict[str, Any]]) -> str:
    """The training iterations of the SIA-GAN runs in the 32-px table (``a/b`` if they differ)."""
    iterations = sorted(
        {
            gan_variant(run)[1]
            for cipher in CIPHERS
            for row, run in gan_runs(runs, cipher)
            if row == f"32px-{cipher}-gan"
        }
    )
    return "/".join(map(str, iterations)) or "?"


def budget_study_lines(runs: dict[str, dict[str, Any]]) -> list[str]:
    """SIA-GAN's mean SSIM per cipher for every budget and adaptation variant that was run."""
    lines = []
    for cipher in CIPHERS:
        variants = gan_runs(runs, cipher)
        if len(variants) > 1:
            text = ", ".join(
                f"{gan_variant_text(run)} {run['ssim']['mean']:.3f} ({run['psnr']['mean']:.1f} dB)"
                for _, run in variants
            )
            lines.append(f"- {NAMES[cipher]}: {text}")
    return lines


def write_markdown(runs: dict[str, dict[str, Any]], results: Path) -> None:
    any_run = next(iter(runs.values()))
    n32, n224 = section_images(runs, 32) or "?", section_images(runs, 224) or "?"
    lines = [
        "# Attack table (measured on the 2-core CPU host)",
        "",
        "Mean SSIM (scikit-image protocol, 7x7 uniform window, uint8 RGB) and, in brackets, mean "
        f"PSNR (capped at {any_run.get('psnr_cap_db', 100):.0f} dB) between each restoration and "
        "its plain image. Higher = the attack recovers more. Victim: CIFAR-10 test images (a fixed "
        "random subset) encrypted with one victim key (`key=seed key.seed=1`; PE: a fresh key per "
        "image). The attacks see ciphertexts only (KPA: plus one known pair; population: N further "
        "ciphertexts of the key, and public plain images). `n/a`: the attack "
        "does not apply to the cipher; `—`: not run. Commands: `experiments/attacks/README.md`; "
        "per-run JSON: `runs/`; long format with std/median: `table.csv`.",
        "",
        f"## 32x32, block size 4 (PE: pixel-wise), {n32} victim images",
        "",
        *table_section(runs, 32, CIPHERS + with_runs(runs, 32, FRONTIER)),
        "",
        f"## 224x224, block size 16 (the deployed ViT-B/16 setting), proposed cipher "
        f"(the others: population attack only), {n224} victim images",
        "",
        *table_section(runs, 224, with_runs(runs, 224, CIPHERS_224)),
        "",
        "## SIA-GAN: training budget and adaptation network (32x32)",
        "",
        f"The table's column: {table_gan_iterations(runs)} iterations, one adaptation conv per "
        "block position (block-wise, as in the SIA-GAN paper); `shared`: one conv for all "
        "positions.",
        "",
        *budget_study_lines(runs),
        "",
        "## Budgets of the learned and the population attacks",
        "",
        *budget_lines(runs),
        "",
        "## Key recovery",
        "",
        *key_recovery_lines(runs),
        "",
    ]
    (results / "table.md").write_text("\n".join(lines))


def save_grid(
    results: Path,
    log_dir: Path,
    name: str,
    rows: list[tuple[str, str, int]],
    columns: list[tuple[str, str]],
    runs: dict[str, dict[str, Any]],
) -> Path | None:
    """A Fig. 4-style grid: per (label, cipher row prefix, image) a plain image, its ciphertext
    and one restoration per ``(row suffix, header)`` column, SSIM under each.

    Written only when every applicable run of the grid has its images, else None."""
    cells: dict[tuple[str, str], Path | None] = {
        (prefix, suffix): samples_path(results, log_dir, f"{prefix}-{suffix}")
        for _, prefix, _ in rows
        for suffix, _ in columns
    }
    missing = [
        f"{prefix}-{suffix}"
        for (prefix, suffix), path in cells.items()
        if path is None
        and f"{prefix}-{suffix}" in runs
        and runs[f"{prefix}-{suffix}"].get("applicable", True)
    ]
    if missing or not rows:
        print(f"not writing {name}: no images kept for {', '.join(missing) or 'any row'}")
        return None
    headers = ["plain", "encrypted", *[header for _, header in columns]]
    figure = Figure(
        figsize=(1.35 * len(headers), 1.45 * len(rows) + 0.3), dpi=110, layout="constrained"
    )
    axes = figure.subplots(len(rows), len(headers), squeeze=False)
    loaded = {cell: torch.load(path) for cell, path in cells.items() if path is not None}
    for r, (label, prefix, image) in enumerate(rows):
        # plain and encrypted images from the row's first run with images (all runs see the
        # same victim images)
        base = next(samples for (pre, _), samples in loaded.items() if pre == prefix)
        pictures: list[tuple[torch.Tensor | None, str]] = [
            (base["plain"][image], ""),
            (base["encrypted"][image], ""),
        ]
        for suffix, _ in columns:
            samples = loaded.get((prefix, suffix))
            if samples is not None:
                pictures.append(
                    (samples["restored"][image], f"SSIM {float(samples['ssim'][image]):.3f}")
                )
            else:
                run = runs.get(f"{prefix}-{suffix}")
                pictures.append((None, "n/a" if run and not run.get("applicable", True) else "—"))
        for c, (picture, text) in enumerate(pictures):
            axis = axes[r, c]
            if picture is not None:
                axis.imshow(picture.permute(1, 2, 0).numpy(), interpolation="nearest")
            else:
                axis.set_frame_on(False)
            axis.set_xticks([])
            axis.set_yticks([])
            axis.set_xlabel(text, fontsize=7)
            if r == 0:
                axis.set_title(headers[c], fontsize=8)
            if c == 0:
                axis.set_ylabel(label, fontsize=9)
    path = results / name
    FigureCanvasAgg(figure)
    figure.savefig(path, format="png")
    return path


def grids(
    runs: dict[str, dict[str, Any]], results: Path, log_dir: Path, image: int
) -> list[Path | None]:
    """The three figures: every attack at 32 px, at 224 px, and SIA-GAN's budgets."""

    def attack_columns(size: int, ciphers: tuple[str, ...]) -> list[tuple[str, str]]:
        return [
            (attack, header)
            for attack, header in COLUMNS.items()
            if any(f"{size}px-{cipher}-{attack}" in runs for cipher in ciphers)
        ]

    def cipher_rows(
        size: int, ciphers: tuple[str, ...], images: tuple[int, ...], needs: str = "fr"
    ) -> list[tuple[str, str, int]]:
        """One row per (cipher with a ``needs`` run, image)."""
        return [
            (NAMES[c] if len(images) == 1 else f"{NAMES[c]}, image {i}", f"{size}px-{c}", i)
            for c in ciphers
            if f"{size}px-{c}-{needs}" in runs
            for i in images
        ]

    # one column per SIA-GAN variant that was run: block-wise first, then by iterations
    variants: dict[str, dict[str, Any]] = {}
    for cipher in CIPHERS:
        for row, run in gan_runs(runs, cipher):
            variants.setdefault(row.split("-", 2)[2], run)
    siagan_columns = [
        (suffix, f"SIA-GAN, {gan_variant_text(run)}")
        for suffix, run in sorted(variants.items(), key=lambda item: gan_variant(item[1]))
    ]
    return [
        save_grid(
            results, log_dir, "grid_32.png", cipher_rows(32, CIPHERS, (image,)),
            attack_columns(32, CIPHERS), runs,
        ),
        save_grid(
            results, log_dir, "grid_224.png", cipher_rows(224, ("proposed",), (0, 1, 2)),
            attack_columns(224, ("proposed",)), runs,
        ),
        save_grid(
            results, log_dir, "grid_siagan_32.png",
            cipher_rows(32, CIPHERS, (image, image + 1), "gan"), siagan_columns, runs,
        ),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log-dir", type=Path, default=Path("/tmp/vitlearnenc-attack-logs"))
    parser.add_argument(
        "--image", type=int, default=0, help="which victim image the 32-px figure shows"
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="runs/ and the outputs")
    args = parser.parse_args(argv)
    runs = load_runs(args.results)
    write_csv(runs, args.results)
    write_markdown(runs, args.results)
    for path in grids(runs, args.results, args.log_dir, args.image):
        if path is not None:
            print(f"wrote {path}")
    print(f"wrote {args.results / 'table.md'} and {args.results / 'table.csv'} ({len(runs)} runs)")


if __name__ == "__main__":
    main()
