"""Shards at 224x224: pack throughput, bytes per image, and memory and speed vs N, one rank
and two DDP ranks, streamed and in memory.

For each N, the first N training JPEGs of the CIFAR-10 archive are packed with
``vitlearnenc-pack --key K --resize 224`` (with and, unless ``--no-zstd``, without zstd), then
one epoch is streamed by :class:`~vitlearnenc.data.StreamingDataModule`
(``cipher=pre_encrypted``) in a fresh process, once per world size in ``--worlds`` (2: two DDP
ranks on gloo, each streaming its half). While it runs, the memory of every process of the
tree (each rank's main process and each of its loader workers) is sampled from ``/proc``
(:mod:`experiments.benchmarks.procmem`: RSS split into anonymous, file-backed and shared
pages, PSS and USS), beside the time to the first batch and the delivered images/s.
Shards are deleted afterwards.

    python -m experiments.benchmarks.bench_streaming [--sizes 2000,10000] [--workers 2] [--worlds 1,2]

Writes ``experiments/results/data/streaming_<device>.json`` (``--results`` elsewhere; ``--tag``
adds a suffix). ``--in-memory`` measures the in-memory path instead: the same N images
encrypted with ``vitlearnenc-encrypt --resize 224`` into a folder, loaded by
``ImageFolderDataModule`` (``cipher=pre_encrypted``) and read for one epoch, memory sampled
as above, in ``in_memory_<device>.json`` (the largest N is encrypted once, smaller N are
hard-linked subsets; ``--encrypted DIR`` reuses an earlier ``vitlearnenc-encrypt`` output).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from experiments.benchmarks.common import machine_info
from experiments.benchmarks.procmem import TreeSampler, summarize_rank
from vitlearnenc.data.imagestore import iter_archive_images

RESULTS = Path(__file__).resolve().parents[1] / "results" / "data"
ARCHIVE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cifar10-jpeg.tar.gz"


#: training images in the CIFAR-10 archive; larger N also take its test images as training ones
ARCHIVE_TRAIN = 50_000


def extract_subset(archive: Path, target: Path, count: int, test: int) -> int:
    """The first ``count`` training JPEGs of the archive as ``target/train`` (past its 50,000,
    the test split's images too, renamed, so N may reach all 60,000 CIFAR-10 images) and the
    first ``test`` test JPEGs as ``target/test``. Returns the number of training images."""
    left = {"train": min(count, ARCHIVE_TRAIN), "test": test}
    extra = max(0, count - ARCHIVE_TRAIN)
    for split, name, data in iter_archive_images(archive, list(left)):
        wanted = []
        if left[split] > 0:
            wanted.append(target / split / name)
            left[split] -= 1
        if split == "test" and extra > 0:
            folder, _, file = name.rpartition("/")
            wanted.append(target / "train" / folder / ("t" + file))
            extra -= 1
        for path in wanted:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        if not any(left.values()) and extra <= 0:
            break
    return sum(1 for p in (target / "train").rglob("*") if p.is_file())


def _open_module(kind: str, root: str, workers: int, batch: int, device: str) -> Any:
    """The DataModule of ``kind`` (``streaming`` or ``in_memory``) over ``root``, set up for fit."""
    if kind == "streaming":
        from vitlearnenc.data import StreamingDataModule

        dm: Any = StreamingDataModule(
            root=root, cipher="pre_encrypted", block_size=16, batch_size=batch,
            num_workers=workers, augment=False, pin_memory=device == "cuda",
        )  # fmt: skip
    else:
        from vitlearnenc.data import ImageFolderDataModule

        dm = ImageFolderDataModule(
            root=root, cipher="pre_encrypted", block_size=16, batch_size=batch,
            num_workers=workers, augment=False, val_fraction=0, pin_memory=False,
        )  # fmt: skip
    dm.setup("fit")
    return dm


def _epoch(kind: str, root: str, workers: int, batch: int, device: str) -> dict[str, Any]:
    """Set up and read one training epoch (on ``cuda``: to the device, through the on-device
    pipeline); timings of this process. Under torch.distributed the in-memory loader gets the
    ``DistributedSampler`` Lightning would give it; litdata splits by rank itself."""
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    start = time.perf_counter()
    dm = _open_module(kind, root, workers, batch, device)
    setup = time.perf_counter() - start
    loader = dm.train_dataloader()
    if kind == "in_memory" and dist.is_initialized():
        from lightning.fabric.utilities.data import _update_dataloader
        from torch.utils.data import DistributedSampler

        loader = _update_dataloader(loader, DistributedSampler(dm.train_set, shuffle=True))
    first, images, t0 = None, 0, time.perf_counter()
    for loaded in loader:
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
    return {
        "pid": os.getpid(),
        "rank": dist.get_rank() if dist.is_initialized() else 0,
        "setup_s": setup,
        "time_to_first_batch_s": first,
        "images": images,
        "images_per_s_after_first": (images - batch) / elapsed if elapsed > 0 else None,
    }


def _child(
    kind: str, root: str, workers: int, batch: int, device: str, world: int, rank: int | None
) -> None:
    """One epoch in this process, or as rank 0 of ``world`` gloo ranks whose other ranks it
    starts as fresh processes, as Lightning's ``trainer=ddp`` launcher does (loader workers
    are then forked from each rank, not spawned); prints one JSON line per rank."""
    if world == 1:
        print(json.dumps(_epoch(kind, root, workers, batch, device)), flush=True)
        return
    import torch.distributed as dist

    others = []
    if rank is None:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(sock.getsockname()[1]))
        command = [sys.executable, "-m", "experiments.benchmarks.bench_streaming", "--child",
                   kind, root, "--workers", str(workers), "--batch", str(batch), "--device",
                   device, "--world", str(world), "--rank"]  # fmt: skip
        others = [subprocess.Popen([*command, str(r)]) for r in range(1, world)]
        rank = 0
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        print(json.dumps(_epoch(kind, root, workers, batch, device)), flush=True)
        dist.barrier()
    finally:
        dist.destroy_process_group()
        if any(other.wait() for other in others):
            raise RuntimeError("a rank failed")


def measure(
    kind: str, root: Path, workers: int, batch: int, device: str = "cpu", world: int = 1
) -> dict[str, Any]:
    """Run :func:`_child` in a fresh process while sampling its tree's memory; per rank: the
    timings and the peaks of its main process and of each loader worker."""
    command = [sys.executable, "-m", "experiments.benchmarks.bench_streaming", "--child", kind,
               str(root), "--workers", str(workers), "--batch", str(batch), "--device", device,
               "--world", str(world)]  # fmt: skip
    with (
        subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as child,
        TreeSampler(child.pid) as sampler,
    ):
        out, _ = child.communicate()
    if child.returncode:
        raise RuntimeError(f"{' '.join(command)} exited with {child.returncode}")
    ranks = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    result: dict[str, Any] = {"world": world, "ranks": []}
    mains = {rank["pid"] for rank in ranks}
    for rank in sorted(ranks, key=lambda r: r["rank"]):
        rank.update(summarize_rank(sampler, rank.pop("pid"), exclude=mains))
        if rank["images_per_s_after_first"] is not None:
            rank["images_per_s_per_worker"] = rank["images_per_s_after_first"] / max(1, workers)
        result["ranks"].append(rank)
    result["tree_peak_rss_sum_MB"] = round(
        max(sum(m["rss"] for m in now.values()) for _, now in sampler.samples), 1
    )
    result["tree_peak_pss_sum_MB"] = round(
        max(sum(m["pss"] for m in now.values()) for _, now in sampler.samples), 1
    )
    return result


def linked_subset(encrypted: Path, target: Path, count: int) -> int:
    """``target``: the first ``count`` training images of the ``vitlearnenc-encrypt`` folder
    ``encrypted`` (sorted paths), all its test images and its marker, as hard links (no copy,
    no second encryption). Returns the number of training images."""
    files = [p for p in (encrypted / "train").rglob("*") if p.is_file()]
    train = sorted(files, key=lambda p: (p.name, str(p)))[:count]  # classes interleaved
    rest = [p for p in encrypted.rglob("*") if p.is_file() and "train" not in p.parts]
    for path in [*train, *rest]:
        link = target / path.relative_to(encrypted)
        link.parent.mkdir(parents=True, exist_ok=True)
        os.link(path, link)
    return len(train)


def run_in_memory(
    sizes: list[int],
    workers: int,
    batch: int,
    keep: Path | None,
    worlds: list[int],
    encrypted: Path | None = None,
) -> dict[str, Any]:
    """Memory of the in-memory path for each N (see the module docstring). The largest N is
    encrypted once (or ``encrypted``, an earlier ``vitlearnenc-encrypt --resize 224`` output of
    the archive's images, is used) and the smaller N are hard-linked subsets of it."""
    from vitlearnenc.ciphers import generate_key, save_key
    from vitlearnenc.cli.encrypt import main_encrypt

    rows = []
    work = Path(tempfile.mkdtemp(prefix="bench-memory-", dir=keep))
    try:
        if encrypted is None:
            key = save_key(generate_key("proposed", 224, 16), work / "owner.key")
            src, encrypted = work / "src", work / "encrypted"
            extract_subset(ARCHIVE, src, max(sizes), 16)
            status = main_encrypt(["--key", str(key), "--resize", "224", "--quiet", str(src),
                                   str(encrypted)])  # fmt: skip
            if status:
                raise RuntimeError(f"vitlearnenc-encrypt exited with {status}")
        for n in sizes:
            out = work / f"enc{n}"
            row: dict[str, Any] = {
                "N": linked_subset(encrypted, out, n),
                "workers": workers,
                "bytes_per_image_decoded": 3 * 224**2,
            }
            for world in worlds:
                row[f"world{world}"] = measure("in_memory", out, workers, batch, world=world)
                print(json.dumps(row), flush=True)
            rows.append(row)
            shutil.rmtree(out, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    import torch

    return {"machine": machine_info(torch.device("cpu")), "batch": batch, "image_size": 224,
            "rows": rows}  # fmt: skip


def run(
    sizes: list[int],
    workers: int,
    batch: int,
    keep: Path | None,
    device: str = "cpu",
    worlds: tuple[int, ...] = (1,),
    zstd: bool = True,
) -> dict[str, Any]:
    from vitlearnenc.ciphers import generate_key, save_key

    rows = []
    work = Path(tempfile.mkdtemp(prefix="bench-shards-", dir=keep))
    try:
        key = save_key(generate_key("proposed", 224, 16), work / "owner.key")
        for n in sizes:
            src = work / f"src{n}"
            n = extract_subset(ARCHIVE, src, n, 16)
            row: dict[str, Any] = {"N": n, "workers": workers}
            for compression in (None, "zstd") if zstd else (None,):
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
                if compression:
                    shutil.rmtree(out)
            for world in worlds:
                row[f"world{world}"] = measure(
                    "streaming", work / f"shards{n}", workers, batch, device, world
                )
                print(json.dumps(row), flush=True)
            rows.append(row)
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
    parser.add_argument("--worlds", default="1", help="DDP world sizes to measure, e.g. 1,2")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "ROOT"), help=argparse.SUPPRESS)
    parser.add_argument("--world", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--rank", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--in-memory", action="store_true", help="the in-memory path instead")
    parser.add_argument("--no-zstd", action="store_true", help="skip the zstd pack")
    parser.add_argument(
        "--encrypted", type=Path, help="--in-memory: an existing vitlearnenc-encrypt 224 folder"
    )
    parser.add_argument("--tmp", type=Path, help="folder for the temporary shards")
    parser.add_argument("--device", default="cpu", help="cuda: batches go through the pipeline")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the JSON goes")
    parser.add_argument("--tag", default="", help="suffix of the JSON file name")
    args = parser.parse_args(argv)
    if args.child:
        _child(*args.child, args.workers, args.batch, args.device, args.world, args.rank)
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    worlds = [int(w) for w in args.worlds.split(",")]
    load = os.getloadavg()
    if args.in_memory:
        payload = run_in_memory(sizes, args.workers, args.batch, args.tmp, worlds, args.encrypted)
    else:
        payload = run(sizes, args.workers, args.batch, args.tmp, args.device, worlds,
                      not args.no_zstd)  # fmt: skip
    payload["load_average_at_start"] = load
    payload["command"] = "python -m experiments.benchmarks.bench_streaming " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    args.results.mkdir(parents=True, exist_ok=True)
    name = ("in_memory_cpu" if args.in_memory else f"streaming_{args.device}") + args.tag
    path = args.results / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
