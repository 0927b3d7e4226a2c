"""Population curves: restoration (SSIM/PSNR) and key recovery against the number N of
ciphertexts of one key the attacker holds, on the real CIFAR-10 copy.

Rows: 32x32 with block 4 for proposed, LE, ELE, EtC, PE and the linear patch ciphers orthomix
and orthomix_sub (N = 1, 10, 100, 1,000, 10,000); 224x224 (upsampled) with block 16 for the
same ciphers (N up to 1,000).
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
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from experiments.attacks.population.common import (
    REPO,
    RealCiphertexts,
    encrypt,
    load_cifar,
    orientations,
    oriented,
    sized,
    victim_cipher,
)
from vitlearnenc.attacks import psnr, ssim
from vitlearnenc.attacks.population import Corpus, correlation_attack, population_attack
from vitlearnenc.attacks.population.keyscore import key_scores, within_block_accuracy
from vitlearnenc.attacks.population.linear import linear_population_attack

log = logging.getLogger("population_curves")
RESULTS = REPO / "experiments" / "results" / "attacks" / "population"
CIPHERS_32 = ("proposed", "le", "ele", "etc", "pe")
CIPHERS_224 = ("proposed", "etc", "le", "ele", "pe")
#: public images of the correlation attack (LE, ELE, PE) and of the linear-cipher attacks at
#: 224x224: their public statistics pool every block position, so 1,000 images give 196,000
#: samples (5,000 would cost 4.6 TFLOP of Gram matrices on the shared 2-core host for no change
#: in the statistics; for dense orthomix's 768-dim second moments 1.2 TFLOP per pass)
PUBLIC_CORRELATION_224 = 1000
COUNTS_32 = (1, 10, 100, 1000, 10000)
COUNTS_224 = (1, 10, 100, 1000)
THRESHOLD = 0.9
#: restorations scored per row: all at 32x32; at 224x224 the first 100 (SSIM costs ~1 s per
#: 224-px image here; the key scores always cover the whole key)
SCORED = {32: 10000, 224: 100}
#: the linear patch ciphers (issue #16) and the population attacks run on them
FRONTIER = ("orthomix", "orthomix_sub")
METHODS = ("covariance", "ica")
ORDER = CIPHERS_32 + FRONTIER
NAMES = {"proposed": "proposed", "le": "LE", "ele": "ELE", "etc": "EtC", "pe": "PE"}
NAMES |= {"orthomix": "orthomix", "orthomix_sub": "orthomix_sub"}
ATTACK_NAMES = {"population": "", "covariance": " (2nd order)", "ica": " (ICA)"}
ATTACK_NAMES["nibble"] = " (nibble correlation attack, cross-check)"


def label(record: dict[str, Any]) -> str:
    """The cipher column: the cipher, and the attack where a cipher has several."""
    return NAMES[record["cipher"]] + ATTACK_NAMES[record.get("attack", "population")]


def rows() -> list[tuple[int, int, str, int, str]]:
    """(image size, block size, cipher, N, attack) of every row (attack: ``population`` or a
    method of the linear-cipher attacks)."""
    out = [(32, 4, c, n, "population") for c in CIPHERS_32 for n in COUNTS_32]
    out += [(32, 4, c, n, m) for c in FRONTIER for m in METHODS for n in COUNTS_32]
    out += [(32, 4, "proposed", n, "nibble") for n in COUNTS_32]  # the cross-check
    out += [(224, 16, c, n, "population") for c in CIPHERS_224 for n in COUNTS_224]
    out += [(224, 16, c, n, m) for c in FRONTIER for m in METHODS for n in COUNTS_224]
    return out


def row_id(size: int, cipher: str, count: int, attack: str = "population") -> str:
    method = "" if attack == "population" else f"-{attack}"
    return f"{size}px-{cipher}{method}-n{count}"


def run_row(
    size: int,
    block: int,
    name: str,
    count: int,
    victims: torch.Tensor,
    public: torch.Tensor,
    attack: str = "population",
) -> dict[str, Any]:
    """One attack on the first ``count`` victims; scores (on the first ``SCORED[size]``
    restorations); no key material in the output."""
    cipher = victim_cipher(name, size, block)
    if size == 224 and name in ("le", "ele", "pe", *FRONTIER):
        public = public[:PUBLIC_CORRELATION_224]
    plain = sized(victims[:count], size)
    scored = min(count, SCORED[size])
    corpus: Any
    extra: dict[str, float] = {}
    if attack in ("population", "nibble"):
        corpus = encrypt(cipher, plain)
        started = time.perf_counter()
        if attack == "nibble":  # the ELE solver (per-position maps + block order) on proposed
            result = correlation_attack(corpus, sized(public, size), block, shared=False)
            extra["within_block_accuracy"] = within_block_accuracy(cipher, result)
        else:
            result = population_attack(type(cipher), corpus, sized(public, size), block)
        seconds = time.perf_counter() - started
        corpus = corpus.take(scored)
    else:  # linear patch ciphers: real-valued ciphertexts, encrypted anew on every pass
        corpus = RealCiphertexts(cipher, plain)
        divisor = int(getattr(cipher, "mixing_unit_divisor", 1))
        started = time.perf_counter()
        result = linear_population_attack(
            corpus,
            sized(public, size),
            block,
            divisor,
            attack,  # type: ignore[arg-type]
        )
        seconds = time.perf_counter() - started
        corpus = RealCiphertexts(cipher, plain.take(scored))
    plain = plain.take(scored)
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
        "attack": attack,
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
        **extra,
        "orientation_right": best == 0,
        **{f"{k}_up_to_orientation": v for k, v in up_to.items()},
        **{f"{k}_up_to_orientation": v for k, v in key_scores(cipher, turned).items()},
    }


def score(result: Any, corpus: Iterable[torch.Tensor], plain: Corpus) -> dict[str, float]:
    """Mean/median SSIM, mean PSNR (clamped at 100 dB) and the fraction of exactly restored
    images over the whole corpus, chunk by chunk."""
    ssims, psnrs, exact_images, count = [], [], 0, 0
    for encrypted, original in zip(corpus, plain, strict=True):
        restored = result.decrypt(encrypted)
        # SSIM in pieces of 16: torchmetrics holds ~80 MB of float64 per 224-px image
        ssims += [ssim(r, o) for r, o in zip(restored.split(16), original.split(16), strict=True)]
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
    for r in runs:
        r.setdefault("attack", "population")
    runs.sort(key=series_key)
    fields = [
        "image_size", "block_size", "cipher", "attack", "n", "ssim_mean", "ssim_median",
        "psnr_mean_clamped_100", "exact_images", "k1_accuracy", "map_accuracy", "exact",
        "orientation_right", "ssim_mean_up_to_orientation", "k1_accuracy_up_to_orientation",
        "map_accuracy_up_to_orientation", "exact_up_to_orientation", "attack_seconds",
        "peak_rss_mb", "public_images", "matrix_error", "within_block_accuracy",
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
        " are over the first 100 restorations of each row (the key scores cover the whole key)."
        " orthomix / orthomix_sub (issue #16, real-valued ciphertexts): the ciphertext-only"
        " second-order (covariance) and ICA attacks pooled over the corpus; map: fraction of"
        " A's columns estimated to cosine >= 0.99; exact: K1 right and A close enough to decrypt"
        " every image exactly.",
        "",
        "## Smallest N with mean SSIM >= 0.9",
        "",
        "| setting | cipher | smallest N (SSIM >= 0.9) | up to orientation | smallest N, key exact "
        "| up to orientation |",
        "|---|---|---|---|---|---|",
    ]
    for size, name, attack in sorted({series(r) for r in runs}, key=series_order):
        top = max(COUNTS_32 if size == 32 else COUNTS_224)
        mine = [r for r in runs if series(r) == (size, name, attack)]
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
        lines.append(f"| {setting} | {label(mine[0])} | " + " | ".join(cells) + " |")
    lines += ["", *strongest_lines(runs), "", "## Every row",
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
            f"| {r['image_size']}/{r['block_size']} | {label(r)} | {r['n']:,} | "
            f"{r['ssim_mean']:.3f} | {r['psnr_mean_clamped_100']:.1f} | {r['exact_images']:.3f} | "
            f"{key} | {mapped} | {exact} | {'yes' if r['orientation_right'] else 'no'} | "
            f"{r['ssim_mean_up_to_orientation']:.3f} | "
            f"{r.get('k1_accuracy_up_to_orientation', float('nan')):.3f} | "
            f"{r['attack_seconds']:.1f} |"
        )
    (results / "table.md").write_text("\n".join(lines) + "\n")
    plot(runs, results / "curves.png")


def strongest_lines(runs: list[dict[str, Any]]) -> list[str]:
    """Per setting and cipher, the smallest N at which *any* of its attacks restores to mean
    SSIM >= :data:`THRESHOLD` (strict, and up to orientation), and which attack that is: the
    number the README's security section quotes."""
    lines = [
        "## Per cipher: the strongest attack (smallest N over all its attacks)",
        "",
        "| setting | cipher | smallest N (SSIM >= 0.9) | attack | up to orientation | attack |",
        "|---|---|---|---|---|---|",
    ]
    for size, name in sorted(
        {series(r)[:2] for r in runs}, key=lambda k: (k[0], ORDER.index(k[1]))
    ):
        mine = [r for r in runs if series(r)[:2] == (size, name)]
        cells = []
        for suffix in ("", "_up_to_orientation"):
            reached = [r for r in mine if r[f"ssim_mean{suffix}"] >= THRESHOLD]
            if reached:
                first = min(reached, key=lambda r: r["n"])
                cells += [f"{first['n']:,}", label(first)]
            else:
                cells += [f"not reached at {max(r['n'] for r in mine):,}", "any run"]
        block = mine[0]["block_size"]
        lines.append(f"| {size}/{block} | {NAMES[name]} | " + " | ".join(cells) + " |")
    return lines


def series(record: dict[str, Any]) -> tuple[int, str, str]:
    """(image size, cipher, attack): one curve."""
    return record["image_size"], record["cipher"], record.get("attack", "population")


def series_order(key: tuple[int, str, str]) -> tuple[int, int, int]:
    size, name, attack = key
    return size, ORDER.index(name), list(ATTACK_NAMES).index(attack)


def series_key(record: dict[str, Any]) -> tuple[int, int, int, int]:
    return (*series_order(series(record)), record["n"])


def plot(runs: list[dict[str, Any]], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(15, 4.5))
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 2)
    colours = {name: f"C{i}" for i, name in enumerate(ORDER)}
    styles = {32: "-o", 224: "--s"}
    for size, name, attack in sorted({series(r) for r in runs}, key=series_order):
        mine = [r for r in runs if series(r) == (size, name, attack)]
        style = "-.^" if attack == "ica" else styles[size]
        text = f"{label(mine[0])} {size}/{mine[0]['block_size']}"
        counts = [r["n"] for r in mine]
        colour = colours[name]
        for ax, metric in ((axes[0], "ssim_mean"), (axes[1], "k1_accuracy")):
            if metric not in mine[0]:
                continue
            ax.plot(counts, [r[metric] for r in mine], style, color=colour, label=text)
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
    # the legend beside the axes, not over the curves (18 series)
    axes[1].legend(*axes[0].get_legend_handles_labels(), fontsize=7, loc="upper left",
                   bbox_to_anchor=(1.02, 1.0), title="dotted: up to orientation",
                   title_fontsize=7)  # fmt: skip
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="run rows whose id contains this text")
    parser.add_argument("--aggregate-only", action="store_true")
    parser.add_argument("--ids", default="", help="comma-separated row ids, run in this order")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    runs = RESULTS / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    if not args.aggregate_only:
        todo = [r for r in rows() if args.only in row_id(r[0], r[2], r[3], r[4])]
        if args.ids:
            by_id = {row_id(r[0], r[2], r[3], r[4]): r for r in rows()}
            todo = [by_id[i] for i in args.ids.split(",")]
        todo = [r for r in todo if not (runs / f"{row_id(r[0], r[2], r[3], r[4])}.json").exists()]
        if todo:
            started = time.perf_counter()
            victims, public = load_cifar()
            log.info("decoded CIFAR-10 in %.0f s", time.perf_counter() - started)
            for size, block, name, count, attack in todo:
                ident = row_id(size, name, count, attack)
                record = run_row(size, block, name, count, victims, public, attack)
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
