"""Shards at 224x224: pack throughput, bytes per image, and streaming memory and speed vs N.

For each N, the first N training JPEGs of the CIFAR-10 archive are packed with
``vitlearnenc-pack --key K --resize 224`` (with and without zstd), then one epoch is streamed
by :class:`~vitlearnenc.data.StreamingDataModule` (``cipher=pre_encrypted``) in a fresh process that
reports its peak RSS (main process and, separately, the largest loader worker), the time to
the first batch and the delivered images/s. Shards are deleted afterwards.

    python -m experiments.benchmarks.bench_streaming [--sizes 2000,10000] [--workers 2]

Writes ``experiments/results/data/streaming_<device>.json`` (``--results`` elsewhere).
``--in-memory`` measures the in-memory path beside it instead: the same N images encrypted
with ``vitlearnenc-encrypt --resize 224`` into a folder, loaded by ``ImageFolderDataModule``
(``cipher=pre_encrypted``) and read for one epoch in a fresh process; peak RSS as above, in
``in_memory_<device>.json``.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from experiments.benchmarks.common import machine_info

RESULTS = Path(__file__).resolve().parents[1] / "results" / "data"
ARCHIVE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cifar10-jpeg.tar.gz"


def extract_subset(archive: Path, target: Path, count: int, test: int) -> None:
    """The first ``count`` train and ``test`` test JPEGs of the archive, as a folder."""
    left = {"train": count, "test": test}
    with tarfile.open(archive, "r|gz") as tar:
        for member in tar:
            parts = member.name.split("/")
            split = next((p for p in parts if p in left), None)
            if not member.isfile() or split is None or left[split] <= 0:
                continue
            relative = "/".join(parts[parts.index(split) :])
            path = target / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(tar.extractfile(member).read())  # type: ignore[union-attr]
            left[split] -= 1
            if not any(left.values()):
                break


def _stream_child(root: str, workers: int, batch: int, device: str) -> None:
    """Stream one epoch (on ``cuda``: to the device, through the on-device pipeline); print
    JSON with timings and peak RSS (run in a fresh process)."""
    import torch

    from vitlearnenc.data import StreamingDataModule

    torch.set_num_threads(1)
    start = time.perf_counter()
    dm = StreamingDataModule(
        root=root, cipher="pre_encrypted", block_size=16, batch_size=batch, num_workers=workers,
        augment=False, pin_memory=device == "cuda",
    )  # fmt: skip
    dm.setup("fit")
    first = None
    images = 0
    for loaded in dm.train_dataloader():
        if device == "cuda":
            loaded["image"] = loaded["image"].to(device, non_blocking=True)
            dm.on_after_batch_transfer(loaded, 0)
        images += len(loaded["label"])
        if first is None:
            first = time.perf_counter() - start
            t0 = time.perf_counter()
    if device == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "time_to_first_batch_s": first,
                "images": images,
                "images_per_s_after_first": (images - batch) / elapsed,
                "peak_rss_main_MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "peak_rss_largest_worker_MB": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
                / 1024,
            }
        )
    )


def _memory_child(root: str, workers: int, batch: int) -> None:
    """Load a pre-encrypted folder into memory and read one epoch; print JSON with the setup
    time and peak RSS (run in a fresh process)."""
    import torch

    from vitlearnenc.data import ImageFolderDataModule

    torch.set_num_threads(1)
    start = time.perf_counter()
    dm = ImageFolderDataModule(
        root=root, cipher="pre_encrypted", block_size=16, batch_size=batch, num_workers=workers,
        augment=False, val_fraction=0, pin_memory=False,
    )  # fmt: skip
    dm.setup("fit")
    setup = time.perf_counter() - start
    images = sum(len(loaded["label"]) for loaded in dm.train_dataloader())
    print(
        json.dumps(
            {
                "setup_s": setup,
                "images": images,
                "peak_rss_main_MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "peak_rss_largest_worker_MB": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
                / 1024,
            }
        )
    )


def run_in_memory(sizes: list[int], workers: int, batch: int, keep: Path | None) -> dict[str, Any]:
    """Peak RSS of the in-memory path for each N (see the module docstring)."""
    from vitlearnenc.ciphers import generate_key, save_key
    from vitlearnenc.cli.encrypt import main_encrypt

    rows = []
    work = Path(tempfile.mkdtemp(prefix="bench-memory-", dir=keep))
    try:
        key = save_key(generate_key("proposed", 224, 16), work / "owner.key")
        for n in sizes:
            src, out = work / f"src{n}", work / f"enc{n}"
            extract_subset(ARCHIVE, src, n, 16)
            status = main_encrypt(["--key", str(key), "--resize", "224", "--quiet", str(src),
                                   str(out)])  # fmt: skip
            if status:
                raise RuntimeError(f"vitlearnenc-encrypt exited with {status}")
            loaded = subprocess.run(
                [sys.executable, "-m", "experiments.benchmarks.bench_streaming", "--memory-child",
                 str(out), "--workers", str(workers), "--batch", str(batch)],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
            row = {"N": n, "workers": workers, **json.loads(loaded.stdout.strip().splitlines()[-1])}
            row["bytes_per_image_decoded"] = 3 * 224 * 224
            rows.append(row)
            print(json.dumps(row), flush=True)
            for path in (src, out):
                shutil.rmtree(path, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    import torch

    return {"machine": machine_info(torch.device("cpu")), "batch": batch, "image_size": 224,
            "rows": rows}  # fmt: skip


def run(
    sizes: list[int], workers: int, batch: int, keep: Path | None, device: str = "cpu"
) -> dict[str, Any]:
    from vitlearnenc.ciphers import generate_key, save_key

    rows = []
    work = Path(tempfile.mkdtemp(prefix="bench-shards-", dir=keep))
    try:
        key = save_key(generate_key("proposed", 224, 16), work / "owner.key")
        for n in sizes:
            src = work / f"src{n}"
            extract_subset(ARCHIVE, src, n, 16)
            row: dict[str, Any] = {"N": n, "workers": workers}
            for compression in (None, "zstd"):
                out = work / f"shards{n}{compression or ''}"
                command = [sys.executable, "-m", "vitlearnenc.cli.pack", "--key", str(key),
                           "--resize", "224", "--workers", str(workers), "--quiet"]  # fmt: skip
                if compression:
                    command += ["--compression", compression]
                t0 = time.perf_counter()
                subprocess.run([*command, str(src), str(out)], check=True)
                seconds = time.perf_counter() - t0
                size = sum(p.stat().st_size for p in out.rglob("*.bin"))
                tag = compression or "raw"
                row[f"pack_{tag}_s"] = seconds
                row[f"pack_{tag}_images_per_s_per_worker"] = (n + 16) / seconds / workers
                row[f"bytes_per_image_{tag}"] = size / (n + 16)
            streamed = subprocess.run(
                [sys.executable, "-m", "experiments.benchmarks.bench_streaming", "--child",
                 str(work / f"shards{n}"), "--workers", str(workers), "--batch", str(batch),
                 "--device", device],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
            row.update(json.loads(streamed.stdout.strip().splitlines()[-1]))
            row["images_per_s_per_worker"] = row["images_per_s_after_first"] / max(1, workers)
            rows.append(row)
            print(json.dumps(row), flush=True)
            for path in work.glob(f"*{n}*"):
                shutil.rmtree(path, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    import torch

    return {
        "machine": machine_info(torch.device(device)),
        "batch": batch,
        "image_size": 224,
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="2000,10000")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--child", metavar="SHARDS", help=argparse.SUPPRESS)
    parser.add_argument("--memory-child", metavar="FOLDER", help=argparse.SUPPRESS)
    parser.add_argument("--in-memory", action="store_true", help="the in-memory path instead")
    parser.add_argument("--tmp", type=Path, help="folder for the temporary shards")
    parser.add_argument("--device", default="cpu", help="cuda: batches go through the pipeline")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the JSON goes")
    args = parser.parse_args(argv)
    if args.child:
        _stream_child(args.child, args.workers, args.batch, args.device)
        return
    if args.memory_child:
        _memory_child(args.memory_child, args.workers, args.batch)
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.in_memory:
        payload = run_in_memory(sizes, args.workers, args.batch, args.tmp)
    else:
        payload = run(sizes, args.workers, args.batch, args.tmp, args.device)
    payload["command"] = "python -m experiments.benchmarks.bench_streaming " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    args.results.mkdir(parents=True, exist_ok=True)
    name = "in_memory_cpu" if args.in_memory else f"streaming_{args.device}"
    path = args.results / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
