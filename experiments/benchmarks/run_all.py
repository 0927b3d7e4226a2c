"""``make bench``: run every benchmark, then summarise their JSON into ``summary.md``.

python -m experiments.benchmarks.run_all [--device cpu] [--summary-only]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from experiments.benchmarks import bench_ciphers, bench_switches, bench_train_step
from experiments.benchmarks.common import RESULTS_DIR

TARGETS = {
    "cipher_vs_clone": 0.5,
    "vs_numpy_loop": 100.0,
    "step_ratio": 1.02,
    "pipeline_ratio": 5.0,
}


def _mark(ok: bool) -> str:
    return "met" if ok else "NOT met"


def summarize(results_dir: Path = RESULTS_DIR) -> str:
    """Markdown summary of every ``*.json`` result in ``results_dir`` against the targets."""
    lines = ["# Benchmark summary", ""]
    for path in sorted(results_dir.glob("ciphers_*.json")):
        data = json.loads(path.read_text())
        machine = data["machine"]
        lines += [
            f"## Cipher throughput ({path.name}; {machine['device']}, {machine['torch_threads']} threads, "
            f"torch {machine['torch']}, batch {data['batch_shape']})",
            "",
            "| cipher | dtype | encrypt ms | GB/s | images/s | clone ms | ratio to clone | target ≥ 0.5 |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in data["rows"]:
            if "ratio_to_clone" not in row:
                continue
            lines.append(
                f"| {row['cipher']} | {row['dtype']} | {row['encrypt_ms']:.1f} | {row['encrypt_GBps']:.2f} | "
                f"{row['encrypt_images_per_s']:.0f} | {row['clone_ms']:.1f} | {row['ratio_to_clone']:.2f} | "
                f"{_mark(row['ratio_to_clone'] >= TARGETS['cipher_vs_clone'])} |"
            )
        for row in data.get("baselines", []):
            speedup = row.get("speedup")
            if speedup is not None:
                lines.append(
                    f"\nAgainst the per-image NumPy loop ({row.get('description', 'baseline')}): "
                    f"{speedup:.0f}x faster (target ≥ 100x: {_mark(speedup >= TARGETS['vs_numpy_loop'])})"
                )
        lines.append("")
    for path in sorted(results_dir.glob("train_step_*.json")):
        data = json.loads(path.read_text())
        lines += [
            f"## Training step ({path.name}; {data['machine']['device']})",
            "",
            "| model | image | batch | plain step ms | encrypted step ms | ratio | target ≤ 1.02 |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in data["steps"]:
            lines.append(
                f"| {row['model']} | {row['image_size']} | {row['batch']} | {row['plain_step_ms']:.1f} | "
                f"{row['encrypted_step_ms']:.1f} | {row['ratio']:.3f} | {_mark(row['ratio'] <= TARGETS['step_ratio'])} |"
            )
        pipe = data["pipeline"]
        lines += [
            "",
            f"Data pipeline: {pipe['delivered_images_per_s']:.0f} images/s delivered vs "
            f"{pipe['consumed_images_per_s']:.0f} consumed by a {pipe['model']} step: "
            f"x{pipe['ratio']:.1f} (target ≥ 5: {_mark(pipe['ratio'] >= TARGETS['pipeline_ratio'])})",
            "",
        ]
    for path in sorted(results_dir.glob("switches_*.json")):
        lines += _switch_section(path)
    return "\n".join(lines)


def _switch_section(path: Path) -> list[str]:
    """Markdown of one ``bench_switches`` result: step time per speed switch and model."""
    data = json.loads(path.read_text())
    machine = data["machine"]
    lines = [
        f"## Speed switches ({path.name}; {machine['device']}, {machine['torch_threads']} threads, "
        f"encrypted training step, median of interleaved repeats)",
        "",
        "| model | image | batch | switch | step ms | images/s | speed-up vs fp32 | first step s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in data["rows"]:
        lines.append(
            f"| {row['model']} | {row['image_size']} | {row['batch']} | {row['variant']} | "
            f"{row['step_ms']:.1f} | {row['images_per_s']:.0f} | {row['speedup_vs_fp32']:.2f} | "
            f"{row['first_step_s']:.1f} |"
        )
    transfer = data["pinned_transfer"]
    if "skipped" in transfer:
        lines.append(f"\nPinned memory {transfer['shape']}: not measured ({transfer['skipped']}).")
    else:
        lines.append(
            f"\nPinned memory, uint8 batch {transfer['shape']} to the device: pageable "
            f"{transfer['pageable_GBps']:.1f} GB/s, pinned {transfer['pinned_GBps']:.1f} GB/s "
            f"(x{transfer['speedup']:.2f})."
        )
    return [*lines, ""]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--summary-only", action="store_true", help="only rewrite summary.md")
    args = parser.parse_args(argv)
    if not args.summary_only:
        bench_ciphers.main(["--device", args.device])
        if args.device == "cpu":  # the load-independent view: CPU time of one thread
            bench_ciphers.main(["--threads", "1", "--clock", "cpu", "--out", "ciphers_1thread"])
        bench_train_step.main(["--device", args.device])
        bench_switches.main(["--device", args.device])
    summary = summarize()
    (RESULTS_DIR / "summary.md").write_text(summary + "\n")
    print(summary)


if __name__ == "__main__":
    main()
