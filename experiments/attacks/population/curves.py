"""Population curves: restoration (SSIM/PSNR) and key recovery against the number N of
ciphertexts of one key the attacker holds, on the real CIFAR-10 copy.

Rows: 32x32 with block 4 for proposed, LE, ELE, EtC and PE (N = 1, 10, 100, 1,000, 10,000);
224x224 (upsampled) with block 16 for the two block puzzles, proposed and EtC (N up to 1,000).
Every row runs the attack of :func:`vitlearnenc.attacks.population.population_attack` on the
first N victims (test split, fixed random order, one key of seed 1) with 5,000 public train
images, then scores the restorations of those N victims against their plain images and the key
estimate against the key (researcher side). Resumable: a row whose JSON exists in
``experiments/results/attacks/population/runs/`` is skipped. Then the table, CSV and plot are
rebuilt from all row JSONs.

    nice -n 10 python -m experiments.attacks.population.curves          # everything
    python -m experiments.attacks.population.curves --only 32px-le      # matching rows
    python -m experiments.attacks.population.curves --aggregate-only
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import resource
import sys
import time
from pathlib import Path
from typing import Any

import torch

from experiments.attacks.population.common import (
    REPO,
    encrypt,
    load_cifar,
    orientations,
    oriented,
    sized,
    victim_cipher,
)
from vitlearnenc.attacks import psnr, ssim
from vitlearnenc.attacks.population import Corpus, population_attack
from vitlearnenc.attacks.population.keyscore import key_scores

log = logging.getLogger("population_curves")
RESULTS = REPO / "experiments" / "results" / "attacks" / "population"
CIPHERS_32 = ("proposed", "le", "ele", "etc", "pe")
CIPHERS_224 = ("proposed", "etc")
COUNTS_32 = (1, 10, 100, 1000, 10000)
COUNTS_224 = (1, 10, 100, 1000)
THRESHOLD = 0.9
#: restorations scored per row: all at 32x32; at 224x224 the first 100 (SSIM costs ~1 s per
#: 224-px image here; the key scores always cover the whole key)
SCORED = {32: 10000, 224: 100}
NAMES = {"proposed": "proposed", "le": "LE", "ele": "ELE", "etc": "EtC", "pe": "PE"}


def rows() -> list[tuple[int, int, str, int]]:
    """(image size, block size, cipher, N) of every row."""
    out = [(32, 4, c, n) for c in CIPHERS_32 for n in COUNTS_32]
    out += [(224, 16, c, n) for c in CIPHERS_224 for n in COUNTS_224]
    return out


def row_id(size: int, cipher: str, count: int) -> str:
    return f"{size}px-{cipher}-n{count}"


def run_row(
    size: int, block: int, name: str, count: int, victims: torch.Tensor, public: torch.Tensor
) -> dict[str, Any]:
    """One attack on the first ``count`` victims; scores (on the first ``SCORED[size]``
    restorations); no key material in the output."""
    cipher = victim_cipher(name, size, block)
    plain = sized(victims[:count], size)
    corpus = encrypt(cipher, plain)
    started = time.perf_counter()
    result = population_attack(type(cipher), corpus, sized(public, size), block)
    seconds = time.perf_counter() - started
    scored = min(count, SCORED[size])
    corpus, plain = corpus.take(scored), plain.take(scored)
    scores = score(result, corpus, plain)
    # the orientation oracle: the best of the 8 rotations/reflections of every restoration on
    # the first 16 images (the attack's pixel-moment prior cannot tell an image from its mirror)
    first_encrypted, first_plain = next(iter(corpus))[:16], next(iter(plain))[:16]
    best = max(
        orientations(result),
        key=lambda v: ssim(oriented(result, v).decrypt(first_encrypted), first_plain).mean(),
    )
    turned = oriented(result, best)
    up_to = score(turned, corpus, plain) if best else scores
    return {
        "cipher": name,
        "image_size": size,
        "block_size": block,
        "n": count,
        "scored_images": scored,
        "public_images": len(public),
        **scores,
        "attack_seconds": seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "torch_threads": torch.get_num_threads(),
        **key_scores(cipher, result),
        "orientation_right": best == 0,
        **{f"{k}_up_to_orientation": v for k, v in up_to.items()},
        **{f"{k}_up_to_orientation": v for k, v in key_scores(cipher, turned).items()},
    }


def score(result: Any, corpus: Corpus, plain: Corpus) -> dict[str, float]:
    """Mean/median SSIM, mean PSNR (clamped at 100 dB) and the fraction of exactly restored
    images over the whole corpus, chunk by chunk."""
    ssims, psnrs, exact_images, count = [], [], 0, 0
    for encrypted, original in zip(corpus, plain, strict=True):
        restored = result.decrypt(encrypted)
        ssims.append(ssim(restored, original))
        psnrs.append(psnr(restored, original).clamp(max=100.0))
        exact_images += int((restored == original).flatten(1).all(1).sum())
        count += original.shape[0]
    ssim_all, psnr_all = torch.cat(ssims), torch.cat(psnrs)
    return {
        "ssim_mean": ssim_all.mean().item(),
        "ssim_median": ssim_all.median().item(),
        "psnr_mean_clamped_100": psnr_all.mean().item(),
        "exact_images": exact_images / count,
    }


def aggregate(results: Path = RESULTS) -> None:
    """``curves.csv``, ``table.md`` and ``curves.png`` from the row JSONs."""
    runs = [json.loads(p.read_text()) for p in sorted((results / "runs").glob("*.json"))]
    runs.sort(key=lambda r: (r["image_size"], CIPHERS_32.index(r["cipher"]), r["n"]))
    fields = [
        "image_size", "block_size", "cipher", "n", "ssim_mean", "ssim_median",
        "psnr_mean_clamped_100", "exact_images", "k1_accuracy", "map_accuracy", "exact",
        "orientation_right", "ssim_mean_up_to_orientation", "k1_accuracy_up_to_orientation",
        "map_accuracy_up_to_orientation", "exact_up_to_orientation", "attack_seconds",
        "peak_rss_mb", "public_images",
    ]  # fmt: skip
    with (results / "curves.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(runs)
    lines = [
        "# Population attacks: how many ciphertexts of one key the attack needs",
        "",
        "Command: `nice -n 10 python -m experiments.attacks.population.curves` (see the README"
        " beside the script). SSIM: scikit-image protocol, mean over the N victims; key: "
        "fraction of K1 (block_perm; LE: perm) entries right; map: fraction of the decryption"
        " map's entries right; exact: the whole key (decryption map) recovered. 'Up to"
        " orientation': the restorations turned by the best of the 8 rotations/reflections of"
        " the image (a researcher-side oracle): the attack's prior (per-pixel moments of public"
        " images) cannot tell a CIFAR-10 image from its mirror image, so EtC and ELE come back"
        " mirrored at some N; the mirror image shows the content as well. At 224x224 SSIM/PSNR"
        " are over the first 100 restorations of each row (the key scores cover the whole key).",
        "",
        "## Smallest N with mean SSIM >= 0.9",
        "",
        "| setting | cipher | smallest N (SSIM >= 0.9) | up to orientation | smallest N, key exact "
        "| up to orientation |",
        "|---|---|---|---|---|---|",
    ]
    for size in (32, 224):
        ciphers = CIPHERS_32 if size == 32 else CIPHERS_224
        top = max(COUNTS_32 if size == 32 else COUNTS_224)
        for name in ciphers:
            mine = [r for r in runs if r["image_size"] == size and r["cipher"] == name]
            if not mine:
                continue
            ran = max(r["n"] for r in mine)
            cells = []
            for suffix in ("", "_up_to_orientation"):
                reached = [r["n"] for r in mine if r[f"ssim_mean{suffix}"] >= THRESHOLD]
                cells.append(f"{min(reached):,}" if reached else f"not reached at {ran:,}")
            for suffix in ("", "_up_to_orientation"):
                exact = [r["n"] for r in mine if r.get(f"exact{suffix}")]
                none = "no key (fresh per image)" if name == "pe" else f"not at {ran:,}"
                cells.append(f"{min(exact):,}" if exact else none)
            note = "" if ran == top else f" (ran up to {ran:,})"
            setting = f"{size}/{mine[0]['block_size']}{note}"
            lines.append(f"| {setting} | {NAMES[name]} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Every row",
        "",
        "| setting | cipher | N | SSIM | PSNR (dB, <=100) | images exact | key (K1) | map | exact "
        "| oriented right | SSIM up to orientation | K1 up to orientation | attack s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for r in runs:
        key = f"{r['k1_accuracy']:.3f}" if "k1_accuracy" in r else "n/a"
        mapped = f"{r['map_accuracy']:.3f}" if "map_accuracy" in r else "n/a"
        exact = ("yes" if r["exact"] else "no") if "exact" in r else "n/a"
        lines.append(
            f"| {r['image_size']}/{r['block_size']} | {NAMES[r['cipher']]} | {r['n']:,} | "
            f"{r['ssim_mean']:.3f} | {r['psnr_mean_clamped_100']:.1f} | {r['exact_images']:.3f} | "
            f"{key} | {mapped} | {exact} | {'yes' if r['orientation_right'] else 'no'} | "
            f"{r['ssim_mean_up_to_orientation']:.3f} | "
            f"{r.get('k1_accuracy_up_to_orientation', float('nan')):.3f} | "
            f"{r['attack_seconds']:.1f} |"
        )
    (results / "table.md").write_text("\n".join(lines) + "\n")
    plot(runs, results / "curves.png")


def plot(runs: list[dict[str, Any]], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4))
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 2)
    colours = dict(zip(CIPHERS_32, ("C0", "C1", "C2", "C3", "C4"), strict=True))
    for size, style in ((32, "-o"), (224, "--s")):
        for name in CIPHERS_32:
            mine = [r for r in runs if r["image_size"] == size and r["cipher"] == name]
            if not mine:
                continue
            label = f"{NAMES[name]} {size}/{mine[0]['block_size']}"
            counts = [r["n"] for r in mine]
            colour = colours[name]
            for ax, metric in ((axes[0], "ssim_mean"), (axes[1], "k1_accuracy")):
                if metric not in mine[0]:
                    continue
                ax.plot(counts, [r[metric] for r in mine], style, color=colour, label=label)
                turned = [r[f"{metric}_up_to_orientation"] for r in mine]
                ax.plot(counts, turned, ":", color=colour, lw=1.0)
    axes[0].axhline(THRESHOLD, color="grey", lw=0.8, ls=":")
    titles = ("restoration: mean SSIM", "key recovery: K1 entries right")
    for ax, title in zip(axes, titles, strict=True):
        ax.set_xscale("log")
        ax.set_xlabel("ciphertexts of one key held by the attacker (N)")
        ax.set_title(title)
        ax.set_ylim(-0.05, 1.05)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="center right", title="dotted: up to orientation",
                   title_fontsize=7)  # fmt: skip
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="run rows whose id contains this text")
    parser.add_argument("--aggregate-only", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    runs = RESULTS / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    if not args.aggregate_only:
        todo = [r for r in rows() if args.only in row_id(r[0], r[2], r[3])]
        todo = [r for r in todo if not (runs / f"{row_id(r[0], r[2], r[3])}.json").exists()]
        if todo:
            started = time.perf_counter()
            victims, public = load_cifar()
            log.info("decoded CIFAR-10 in %.0f s", time.perf_counter() - started)
            for size, block, name, count in todo:
                ident = row_id(size, name, count)
                record = run_row(size, block, name, count, victims, public)
                record["command"] = "python -m experiments.attacks.population.curves " + " ".join(
                    sys.argv[1:]
                )
                (runs / f"{ident}.json").write_text(json.dumps(record, indent=2) + "\n")
                log.info(
                    "%s: SSIM %.3f, key %s, %.1f s",
                    ident,
                    record["ssim_mean"],
                    record.get("k1_accuracy", "n/a"),
                    record["attack_seconds"],
                )
    aggregate()


if __name__ == "__main__":
    main()
