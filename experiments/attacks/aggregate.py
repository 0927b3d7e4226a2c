"""Build the attack table and the Fig. 4-style figures from the runs of ``sweep.py``.

Reads ``experiments/results/attacks/runs/*.json`` (one ``metrics.json`` per run) and writes
``table.md`` and ``table.csv`` next to them; reads the runs' ``samples.pt`` from the sweep's
log directory for ``grid_32.png`` (one row per cipher: plain, ciphertext, every attack's
restoration with its SSIM) and ``grid_224.png`` (the proposed cipher, three images).

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
NAMES = {"proposed": "proposed", "le": "LE", "ele": "ELE", "etc": "EtC", "pe": "PE"}
#: table columns: attack option -> header
COLUMNS = {
    "fr": "FR",
    "fr_advanced": "FR-adv",
    "itn": "ITN (U-Net)",
    "gan_lab": "GAN (lab)",
    "gan": "SIA-GAN",
    "jigsaw": "jigsaw",
    "kpa": "KPA (1 pair)",
}


def load_runs() -> dict[str, dict[str, Any]]:
    return {
        path.stem: json.loads(path.read_text())
        for path in sorted((RESULTS / "runs").glob("*.json"))
    }


def cell(run: dict[str, Any] | None, section_n: int | None = None) -> str:
    """Mean SSIM (PSNR) of a run, with its image count where it differs from the section's."""
    if run is None:
        return "—"
    if not run.get("applicable", True):
        return "n/a"
    count = f" [{run['n']} images]" if section_n is not None and run["n"] != section_n else ""
    return f"{run['ssim']['mean']:.3f} ({run['psnr']['mean']:.1f} dB){count}"


def section_images(runs: dict[str, dict[str, Any]], size: int) -> int | None:
    """The victim image count most runs of one image size used."""
    counts = Counter(r["n"] for k, r in runs.items() if k.startswith(f"{size}px") and "n" in r)
    return counts.most_common(1)[0][0] if counts else None


def budget_text(run: dict[str, Any]) -> str:
    budget = run.get("budget", {})
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


def write_csv(runs: dict[str, dict[str, Any]]) -> None:
    fields = [
        "row", "image_size", "block_size", "cipher", "attack", "applicable", "n",
        "ssim_mean", "ssim_std", "ssim_median", "psnr_mean", "psnr_std", "psnr_median",
        "ssim_gaussian_mean", "seconds", "budget", "key_recovery", "reason",
    ]  # fmt: skip
    with (RESULTS / "table.csv").open("w", newline="") as handle:
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
        if run.get("applicable", True) and "iterations" in run.get("budget", {})
    ]


def write_markdown(runs: dict[str, dict[str, Any]]) -> None:
    any_run = next(iter(runs.values()))
    n32, n224 = section_images(runs, 32) or "?", section_images(runs, 224) or "?"
    lines = [
        "# Attack table (measured on the 2-core CPU host)",
        "",
        "Mean SSIM (scikit-image protocol, 7x7 uniform window, uint8 RGB) and, in brackets, mean "
        f"PSNR (capped at {any_run.get('psnr_cap_db', 100):.0f} dB) between each restoration and "
        "its plain image. Higher = the attack recovers more. Victim: CIFAR-10 test images (a fixed "
        "random subset) encrypted with one victim key (`key=seed key.seed=1`; PE: a fresh key per "
        "image). The attacks see ciphertexts only (KPA: plus one known pair). `n/a`: the attack "
        "does not apply to the cipher; `—`: not run. Commands: `experiments/attacks/README.md`; "
        "per-run JSON: `runs/`; long format with std/median: `table.csv`.",
        "",
        f"## 32x32, block size 4 (PE: pixel-wise), {n32} victim images",
        "",
        *table_section(runs, 32, CIPHERS),
        "",
        f"## 224x224, block size 16 (the deployed ViT-B/16 setting), proposed cipher, "
        f"{n224} victim images",
        "",
        *table_section(runs, 224, ("proposed",)),
        "",
        "## Training budgets of the learned attacks",
        "",
        *budget_lines(runs),
        "",
        "## Key recovery",
        "",
        *key_recovery_lines(runs),
        "",
    ]
    (RESULTS / "table.md").write_text("\n".join(lines))


def save_figure(
    runs: dict[str, dict[str, Any]],
    log_dir: Path,
    size: int,
    ciphers: tuple[str, ...],
    images: tuple[int, ...],
) -> Path | None:
    """One row per (cipher, image): plain, ciphertext, then every attack's restoration."""
    attacks = [
        a
        for a in COLUMNS
        if any((log_dir / f"{size}px-{c}-{a}" / "samples.pt").exists() for c in ciphers)
    ]
    rows = [
        (cipher, image)
        for cipher in ciphers
        if (log_dir / f"{size}px-{cipher}-fr" / "samples.pt").exists()
        for image in images
    ]
    if not rows:
        return None
    headers = ["plain", "encrypted", *[COLUMNS[a] for a in attacks]]
    figure = Figure(
        figsize=(1.35 * len(headers), 1.45 * len(rows) + 0.3), dpi=110, layout="constrained"
    )
    axes = figure.subplots(len(rows), len(headers), squeeze=False)
    for r, (cipher, image) in enumerate(rows):
        base = torch.load(log_dir / f"{size}px-{cipher}-fr" / "samples.pt")
        cells: list[tuple[torch.Tensor | None, str]] = [
            (base["plain"][image], ""),
            (base["encrypted"][image], ""),
        ]
        for attack in attacks:
            path = log_dir / f"{size}px-{cipher}-{attack}" / "samples.pt"
            if path.exists():
                samples = torch.load(path)
                cells.append(
                    (samples["restored"][image], f"SSIM {float(samples['ssim'][image]):.3f}")
                )
            else:
                run = runs.get(f"{size}px-{cipher}-{attack}")
                cells.append((None, "n/a" if run and not run.get("applicable", True) else "—"))
        for c, (picture, label) in enumerate(cells):
            axis = axes[r, c]
            if picture is not None:
                axis.imshow(picture.permute(1, 2, 0).numpy(), interpolation="nearest")
            else:
                axis.set_frame_on(False)
            axis.set_xticks([])
            axis.set_yticks([])
            axis.set_xlabel(label, fontsize=7)
            if r == 0:
                axis.set_title(headers[c], fontsize=8)
            if c == 0:
                name = NAMES[cipher] if len(images) == 1 else f"{NAMES[cipher]}, image {image}"
                axis.set_ylabel(name, fontsize=9)
    path = RESULTS / f"grid_{size}.png"
    FigureCanvasAgg(figure)
    figure.savefig(path, format="png")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log-dir", type=Path, default=Path("/tmp/vitlearnenc-attack-logs"))
    parser.add_argument(
        "--image", type=int, default=0, help="which victim image the 32-px figure shows"
    )
    args = parser.parse_args()
    runs = load_runs()
    write_csv(runs)
    write_markdown(runs)
    for size, ciphers, images in ((32, CIPHERS, (args.image,)), (224, ("proposed",), (0, 1, 2))):
        path = save_figure(runs, args.log_dir, size, ciphers, images)
        if path is not None:
            print(f"wrote {path}")
    print(f"wrote {RESULTS / 'table.md'} and {RESULTS / 'table.csv'} ({len(runs)} runs)")


if __name__ == "__main__":
    main()
