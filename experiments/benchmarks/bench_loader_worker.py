"""Images/s that one streaming loader worker delivers at 224x224 uint8, and where its time goes.

Stages, each timed on the same shards (CIFAR-10 training JPEGs packed by ``vitlearnenc-pack
--key K --resize 224``, encrypted 224x224 uint8 items) over ``--images`` items, best of
``--repeats`` interleaved rounds (other load on a shared machine only adds time):

- ``read_item``: ``StreamingDataset`` items in this process (chunk read, litdata's
  deserialisation to a uint8 tensor; shuffled order, as in training);
  ``read_item_litdata_auto_window`` the same with litdata's default ``batch_decode="auto"``,
  which the DataModule turns off (it decodes 16 rows per shuffled item and keeps one);
- ``read_item+collate``: the same plus :func:`~vitlearnenc.data.streaming.collate_items` into
  batches, still in this process (``num_workers=0``);
- ``workers_1`` / ``workers_2``: what the training loop receives from a
  :class:`~vitlearnenc.data.resumable.ResumableStreamingDataLoader` with 1 or 2 worker
  processes (adds the hand-over of each batch through shared memory). ``workers_1`` is the
  per-worker figure; ``workers_2`` on a 2-core machine shows whether workers add up.

Pinning is not measured: it needs CUDA (the GPU row is ``make gpu-check``). The load average is
recorded before and after, since the machine may be shared.

    python -m experiments.benchmarks.bench_loader_worker [--images 6000] [--shards DIR]

Writes ``experiments/results/data/loader_worker_cpu.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from experiments.benchmarks.bench_streaming import ARCHIVE, RESULTS, extract_subset
from experiments.benchmarks.common import machine_info

BATCH = 64


def _stages(shards: Path, images: int) -> dict[str, Callable[[], float]]:
    """Each stage reads ``images`` items once and returns the seconds it took."""
    from litdata import StreamingDataset

    from vitlearnenc.data.resumable import ResumableStreamingDataLoader
    from vitlearnenc.data.streaming import collate_items

    def dataset(batch_decode: int | str = 0) -> StreamingDataset:
        # as StreamingDataModule builds it (batch_decode=0: one item deserialised per read)
        return StreamingDataset(
            str(shards / "train"), shuffle=True, drop_last=True, seed=0, batch_decode=batch_decode
        )

    def read_items(batch_decode: int | str) -> Callable[[], float]:
        def run() -> float:
            t0 = time.perf_counter()
            for count, _item in enumerate(dataset(batch_decode), 1):
                if count == images:
                    break
            return time.perf_counter() - t0

        return run

    def read_collate() -> float:
        t0 = time.perf_counter()
        pending: list[Any] = []
        for count, item in enumerate(dataset(), 1):
            pending.append(item)
            if len(pending) == BATCH:
                collate_items(pending)
                pending = []
            if count == images:
                break
        return time.perf_counter() - t0

    def workers(n: int) -> Callable[[], float]:
        def run() -> float:
            loader = ResumableStreamingDataLoader(
                dataset(), batch_size=BATCH, num_workers=n, collate_fn=collate_items
            )
            iterator = iter(loader)
            next(iterator)  # workers started and warm: the steady state is measured
            t0 = time.perf_counter()
            seen = 0
            for batch in iterator:
                seen += len(batch["label"])
                if seen >= images - BATCH:
                    break
            seconds = time.perf_counter() - t0
            del iterator
            return seconds * images / seen

        return run

    return {
        "read_item": read_items(0),
        "read_item_litdata_auto_window": read_items("auto"),
        "read_item+collate": read_collate,
        "workers_1": workers(1),
        "workers_2": workers(2),
    }


def pack_shards(work: Path, count: int) -> Path:
    """``count`` training JPEGs of the archive packed (encrypted, 224) into ``work/shards``."""
    from vitlearnenc.ciphers import generate_key, save_key

    key = save_key(generate_key("proposed", 224, 16), work / "owner.key")
    extract_subset(ARCHIVE, work / "src", count, 16)
    out = work / "shards"
    subprocess.run(
        [sys.executable, "-m", "vitlearnenc.cli.pack", "--key", str(key), "--resize", "224",
         "--workers", "2", "--quiet", str(work / "src"), str(out)],
        check=True,
    )  # fmt: skip
    return out


def run(shards: Path, images: int, repeats: int) -> dict[str, Any]:
    torch.set_num_threads(1)
    stages = _stages(shards, images)
    times: dict[str, list[float]] = {name: [] for name in stages}
    for _ in range(repeats):
        for name, stage in stages.items():
            times[name].append(stage())
    rows = []
    for name, seconds in times.items():
        rows.append(
            {
                "stage": name,
                "images": images,
                "best_images_per_s": images / min(seconds),
                "median_images_per_s": images / statistics.median(seconds),
                "seconds": seconds,
            }
        )
    return {"rows": rows}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=6000, help="items read per stage")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--shards", type=Path, help="an existing 224 pack (default: pack one)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="bench-worker-"))
    try:
        shards = args.shards or pack_shards(work, args.images + BATCH)
        payload = run(shards, args.images, args.repeats)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    payload |= {
        "machine": machine_info(torch.device("cpu")),
        "batch": BATCH,
        "image_size": 224,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "command": "python -m experiments.benchmarks.bench_loader_worker "
        + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "loader_worker_cpu.json").write_text(json.dumps(payload, indent=2) + "\n")
    for row in payload["rows"]:
        print(f"{row['stage']:>18}: {row['best_images_per_s']:8.0f} img/s (best)")


if __name__ == "__main__":
    main()
