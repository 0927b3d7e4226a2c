"""Cipher throughput: every cipher on a (B, 3, 224, 224) batch, next to ``tensor.clone()``.

``clone()`` reads and writes the batch once, the least any out-of-place cipher can do, so the ratio
cipher/clone (throughput, i.e. clone time / cipher time) says how close a cipher is to a plain copy.
For every cipher and dtype the benchmark runs, round-robin in the same loop so that background
load hits all of them alike, and keeps the minimum over ``--repeats`` rounds:

- ``clone()`` of the batch;
- ``encrypt`` and ``decrypt`` on the fast path (the default);
- the same key on the reference path (``use_fast_path = False``: one ``index_select`` over the
  plan, as the ciphers ran before the fast path), the "before" column.

``plain`` returns its input unchanged (no copy), so its ratio only shows the call overhead.
``pe-per-image`` is PE as used for training (a fresh key per image): its encrypt includes drawing
the keys with ``torch.randint``; its decrypt column is ``decrypt_with_keys``, the apply path
alone. It has no reference path. The NumPy row needs the ``proposed`` uint8 row.

The JSON also records ``copy_into_preallocated_ms``, a copy into an existing tensor: next to
``clone_ms`` it shows how much of ``clone()`` is the first touch (page faults) of its fresh output,
a cost every out-of-place cipher pays as well.

One more row measures what typical research code does for the proposed cipher: a NumPy loop that,
per image and per block, copies the block and shuffles the pixels of its four sub-blocks with
fancy indexing (``sub.reshape(-1, C)[pixel_perm]``), on HWC uint8 arrays. It is slow, so it runs
on ``--numpy-batch`` images; the table compares images/s.

    python -m experiments.benchmarks.bench_ciphers [--batch 256] [--size 224] [--threads 2]

On a shared machine, ``--threads 1 --clock cpu --out ciphers_1thread`` adds a load-independent
view: CPU time of one thread, which other processes cannot stretch.

Writes ``experiments/results/bench/<out>_<device>.json`` (default ``ciphers_cpu.json``).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from experiments.benchmarks.common import (
    best_time,
    interleaved_best_times,
    machine_info,
    write_results,
)
from vitlearnenc.ciphers import (
    IndexCipher,
    PECipher,
    build_cipher,
    generate_key,
    get_cipher_class,
)

log = logging.getLogger(__name__)

# (row label, registry name, key options). Block 16 at 224x224 for every block cipher: the ViT
# patch of the proposed cipher, and the same 14x14 grid for the baselines.
CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("plain", "plain", {}),
    ("proposed", "proposed", {}),
    ("proposed-channel-mix", "proposed", {"channel_mix": True}),
    ("le", "le", {}),
    ("ele", "ele", {}),
    ("etc", "etc", {}),
    ("etc_gray", "etc_gray", {}),
    ("pe", "pe", {"per_image_keys": False}),
    ("pe-per-image", "pe", {"per_image_keys": True}),
    ("orthomix", "orthomix", {}),
    ("orthomix_sub", "orthomix_sub", {}),
]
BLOCK_SIZE = 16
GIGA = 1e9


def bench_case(
    label: str,
    name: str,
    options: dict[str, Any],
    images: torch.Tensor,
    repeats: int,
    reference: bool,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, Any]:
    """Best times of clone(), encrypt/decrypt (fast and reference path) for one cipher."""
    key = generate_key(name, images.shape[-2:], BLOCK_SIZE, seed=0, **options)
    cipher = get_cipher_class(name)(key)
    encrypted = cipher.encrypt(images)
    copy = torch.empty_like(images)
    fns: dict[str, Callable[[], Any]] = {
        "clone": images.clone,
        "copy_into_preallocated": lambda: copy.copy_(images),
        "encrypt": lambda: cipher.encrypt(images),
    }
    per_image_keys = isinstance(cipher, PECipher) and cipher.per_image_keys
    if per_image_keys:  # decrypt_with_keys: the apply path alone, without drawing keys
        assert isinstance(cipher, PECipher)
        encrypted, keys = cipher.encrypt_with_keys(images)
        fns["decrypt"] = lambda: cipher.decrypt_with_keys(encrypted, keys)
    elif cipher.invertible:
        fns["decrypt"] = lambda: cipher.decrypt(encrypted)
    if reference and isinstance(cipher, IndexCipher) and not per_image_keys:
        slow = get_cipher_class(name)(key)
        assert isinstance(slow, IndexCipher)
        slow.use_fast_path = False
        if not torch.equal(slow.encrypt(images), encrypted):
            raise AssertionError(f"{label}: fast path and reference path disagree")
        fns["encrypt_reference"] = lambda: slow.encrypt(images)
        if cipher.invertible:
            fns["decrypt_reference"] = lambda: slow.decrypt(encrypted)
    times = interleaved_best_times(fns, repeats, sync=images.device.type == "cuda", clock=clock)
    nbytes = images.numel() * images.element_size()
    row: dict[str, Any] = {
        "cipher": label,
        "dtype": str(images.dtype).removeprefix("torch."),
        "batch": len(images),
        "clone_ms": times["clone"] * 1e3,
        "clone_GBps": nbytes / times["clone"] / GIGA,
    }
    row["copy_into_preallocated_ms"] = times.pop("copy_into_preallocated") * 1e3
    for op, seconds in times.items():
        if op == "clone":
            continue
        row[f"{op}_ms"] = seconds * 1e3
        row[f"{op}_GBps"] = nbytes / seconds / GIGA
        row[f"{op}_images_per_s"] = len(images) / seconds
        row[f"{op}_ratio_to_clone"] = times["clone"] / seconds
    row["ratio_to_clone"] = row["encrypt_ratio_to_clone"]  # the first version's field name
    return row


def numpy_loop_encrypt(
    images: np.ndarray, block_perm: np.ndarray, pixel_perm: np.ndarray, block: int
) -> np.ndarray:
    """The proposed cipher as typical research code writes it: ``(B, H, W, C)`` uint8, a Python
    loop over images and blocks, NumPy fancy indexing per sub-block (the benchmark's baseline)."""
    _, height, width, channels = images.shape
    grid_w, sub = width // block, block // 2
    out = np.empty_like(images)
    for b in range(len(images)):
        image = images[b]
        for target, source in enumerate(block_perm):
            sr, sc = (source // grid_w) * block, (source % grid_w) * block
            tr, tc = (target // grid_w) * block, (target % grid_w) * block
            piece = image[sr : sr + block, sc : sc + block].copy()
            for r in (0, sub):
                for c in (0, sub):
                    pixels = piece[r : r + sub, c : c + sub].reshape(-1, channels)
                    piece[r : r + sub, c : c + sub] = pixels[pixel_perm].reshape(sub, sub, channels)
            out[b, tr : tr + block, tc : tc + block] = piece
    return out


def bench_numpy_loop(
    images: torch.Tensor,
    count: int,
    repeats: int,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, Any]:
    """images/s of :func:`numpy_loop_encrypt` on ``count`` images (checked against the cipher)."""
    cipher = build_cipher("proposed", image_size=images.shape[-2:], block_size=BLOCK_SIZE, seed=0)
    subset = images[:count].cpu()
    hwc = subset.permute(0, 2, 3, 1).contiguous().numpy()
    block_perm, pixel_perm = cipher.key["block_perm"], cipher.key["pixel_perm"]
    result = numpy_loop_encrypt(hwc, block_perm, pixel_perm, BLOCK_SIZE)
    expected = cipher.encrypt(subset).permute(0, 2, 3, 1).numpy()
    if not np.array_equal(result, expected):
        raise AssertionError("the NumPy loop baseline does not compute the proposed cipher")
    seconds = best_time(
        lambda: numpy_loop_encrypt(hwc, block_perm, pixel_perm, BLOCK_SIZE), repeats, clock=clock
    )
    return {
        "cipher": "proposed",
        "description": "per image and block: copy the block, shuffle each sub-block's pixels with "
        "NumPy fancy indexing; HWC uint8, one thread",
        "dtype": "uint8",
        "batch": count,
        "encrypt_ms": seconds * 1e3,
        "encrypt_GBps": subset.numel() / seconds / GIGA,
        "encrypt_images_per_s": count / seconds,
    }


def _fmt(value: float | None, width: int, suffix: str = "") -> str:
    text = "-" if value is None else f"{value:.2f}{suffix}"
    return text.rjust(width)


def format_table(rows: list[dict[str, Any]], numpy_row: dict[str, Any] | None) -> str:
    """The rows as a fixed-width text table."""
    header = (
        f"{'cipher':<22} {'dtype':<8} {'enc ms':>8} {'GB/s':>6} {'img/s':>8} {'clone ms':>8} "
        f"{'enc/clone':>9} {'dec/clone':>9} {'before':>7} {'speedup':>7}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        before = row.get("encrypt_reference_ratio_to_clone")
        speedup = None if before is None else row["encrypt_ratio_to_clone"] / before
        lines.append(
            f"{row['cipher']:<22} {row['dtype']:<8} {row['encrypt_ms']:8.1f} "
            f"{row['encrypt_GBps']:6.2f} {row['encrypt_images_per_s']:8.0f} {row['clone_ms']:8.1f} "
            f"{row['encrypt_ratio_to_clone']:9.2f} {_fmt(row.get('decrypt_ratio_to_clone'), 9)} "
            f"{_fmt(before, 7)} {_fmt(speedup, 7, 'x')}"
        )
    if numpy_row is not None:
        lines.append(
            f"{'proposed, NumPy loop':<22} {'uint8':<8} {numpy_row['encrypt_ms']:8.1f} "
            f"{numpy_row['encrypt_GBps']:6.2f} {numpy_row['encrypt_images_per_s']:8.0f}   "
            f"(batch {numpy_row['batch']}; fast path is {numpy_row['speedup']:.0f}x faster "
            "in images/s)"
        )
    lines.append(
        "enc/clone, dec/clone: throughput relative to clone() of the same batch; before: enc/clone "
        "on the reference path (index_select); speedup: fast / reference"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=7, help="rounds; the minimum is kept")
    parser.add_argument("--dtypes", default="uint8,float32")
    parser.add_argument("--ciphers", default=",".join(label for label, _, _ in CASES))
    parser.add_argument("--no-reference", action="store_true", help="skip the reference path")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall-clock time, or process CPU time (load-independent with --threads 1)",
    )
    parser.add_argument(
        "--numpy-batch", type=int, default=4, help="images for the NumPy loop (0: skip)"
    )
    parser.add_argument("--out", default="ciphers", help="results name (JSON under results/bench)")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    cases = {label: (name, options) for label, name, options in CASES}
    unknown = set(args.ciphers.split(",")) - set(cases)
    if unknown:
        parser.error(f"unknown cipher rows {sorted(unknown)}; choose from {', '.join(cases)}")
    generator = torch.Generator().manual_seed(0)
    shape = (args.batch, 3, args.size, args.size)
    base = torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)
    machine = machine_info(device)
    rows = []
    for dtype_name in args.dtypes.split(","):
        images = base if dtype_name == "uint8" else base.to(getattr(torch, dtype_name)) / 255
        images = images.to(device)
        for label in args.ciphers.split(","):
            name, options = cases[label]
            row = bench_case(
                label, name, options, images, args.repeats, not args.no_reference, clock
            )
            rows.append(row)
            log.info("%s %s: enc/clone %.2f", label, row["dtype"], row["encrypt_ratio_to_clone"])
        del images
    numpy_row = None
    fast = [r for r in rows if r["cipher"] == "proposed" and r["dtype"] == "uint8"]
    if args.numpy_batch and fast:
        numpy_row = bench_numpy_loop(base, args.numpy_batch, repeats=3, clock=clock)
        numpy_row["speedup"] = (  # fast path images/s over the loop's
            fast[0]["encrypt_images_per_s"] / numpy_row["encrypt_images_per_s"]
        )
    machine["load_average_after"] = machine_info(device)["load_average_1_5_15min"]
    table = format_table(rows, numpy_row)
    log.info("\n%s", table)
    payload = {
        "benchmark": "ciphers",
        "batch_shape": list(shape),
        "block_size": BLOCK_SIZE,
        "repeats": args.repeats,
        "clock": args.clock,
        "command": " ".join(["python -m experiments.benchmarks.bench_ciphers", *argv]),
        "machine": machine,
        "rows": rows,
        "baselines": [] if numpy_row is None else [numpy_row],
        "table": table.splitlines(),
    }
    path = write_results(f"{args.out}_{device.type}", payload)
    log.info("wrote %s", path)
    return payload


if __name__ == "__main__":
    main()
