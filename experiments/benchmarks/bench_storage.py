"""Bytes per stored ciphertext: uint8 PNGs (proposed) vs float32 / float16 ``.npy`` arrays
(orthomix), in folders (``vitlearnenc-encrypt``) and in shards (``vitlearnenc-pack``, raw and
zstd), at 32x32 (block 4) and 224x224 (block 16), plus the decryption error of each storage.

The same images for every row: ``--per-class`` training JPEGs of each class of the CIFAR-10
archive (``--test-per-class`` test ones, which a pack needs), resized on encryption. Folder
bytes are the files' sizes (and the disk blocks they take); shard bytes are all chunk files
of the train and test splits over the images packed (so labels, names and litdata's item
headers are included). The decryption error is measured on the folder's arrays: ``decrypt``
in float32 against the resized plain image, in 8-bit steps.

    python -m experiments.benchmarks.bench_storage [--per-class 30] [--test-per-class 2]

Writes ``experiments/results/data/storage_bytes.json`` (``--results`` elsewhere).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from vitlearnenc.ciphers import build_cipher, generate_key, save_key
from vitlearnenc.cli.encrypt import main_encrypt
from vitlearnenc.cli.pack import main as pack_main
from vitlearnenc.data.imagestore import iter_archive_images
from vitlearnenc.utils.image_ops import resize_uint8
from vitlearnenc.utils.imagefiles import read_array, read_image

RESULTS = Path(__file__).resolve().parents[1] / "results" / "data"
ARCHIVE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
#: (name, cipher, key options): the stored forms compared
STORAGES = [
    ("uint8 png (proposed)", "proposed", {}),
    ("float32 npy (orthomix)", "orthomix", {"storage": "float32"}),
    ("float16 npy (orthomix)", "orthomix", {"storage": "float16"}),
]
GEOMETRIES = [(32, 4), (224, 16)]


def extract_per_class(archive: Path, target: Path, per_class: int, test_per_class: int) -> int:
    """The first ``per_class`` training JPEGs of every class (and ``test_per_class`` test
    ones) as ``target/{train,test}/<class>/``; returns the number of training images."""
    wanted = {"train": per_class, "test": test_per_class}
    taken: dict[tuple[str, str], int] = {}
    for split, name, data in iter_archive_images(archive, list(wanted)):
        label, _, _ = name.partition("/")
        if taken.get((split, label), 0) >= wanted[split]:
            continue
        taken[split, label] = taken.get((split, label), 0) + 1
        path = target / split / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return sum(count for (split, _), count in taken.items() if split == "train")


def _sizes(files: list[Path]) -> tuple[int, int]:
    """(bytes in the files, bytes of the disk blocks they take)."""
    stats = [f.stat() for f in files]
    return sum(s.st_size for s in stats), sum(s.st_blocks * 512 for s in stats)


def _decryption_error(cipher: Any, source: Path, folder: Path) -> dict[str, Any]:
    """Error of decrypting the stored arrays, in 8-bit steps, against the resized plain images."""
    size = cipher.image_size
    worst, squares, count, off = 0.0, 0.0, 0, 0
    for path in sorted(folder.rglob("*.npy")):
        plain = resize_uint8(
            read_image(source / path.relative_to(folder).with_suffix(".jpg"))[None], size
        )
        stored = read_array(path)[None]
        decrypted = cipher.decrypt(stored.float()).double() * 255
        error = decrypted - plain.double()
        worst = max(worst, float(error.abs().max()))
        squares += float((error**2).sum())
        count += error.numel()
        off += int((cipher.decrypt_uint8(stored.float()) != plain).sum())
    return {
        "max_abs_error_8bit_steps": worst,
        "rms_error_8bit_steps": (squares / count) ** 0.5,
        "values_off_after_rounding": off,
        "values_checked": count,
    }


def measure(source: Path, work: Path) -> list[dict[str, Any]]:
    rows = []
    for image_size, block in GEOMETRIES:
        for name, method, options in STORAGES:
            tag = f"{method}-{options.get('storage', 'uint8')}-{image_size}"
            key = save_key(
                generate_key(method, image_size, block, seed=0, **options), work / f"{tag}.key"
            )
            folder = work / f"enc-{tag}"
            started = time.perf_counter()
            argv = ["--key", str(key), "--resize", str(image_size), "--quiet"]
            assert main_encrypt([*argv, str(source), str(folder)]) == 0
            encrypt_s = time.perf_counter() - started
            files = [p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")]
            file_bytes, disk_bytes = _sizes(files)
            row: dict[str, Any] = {
                "storage": name,
                "image_size": image_size,
                "block_size": block,
                "folder": {
                    "files": len(files),
                    "bytes_per_image": round(file_bytes / len(files), 1),
                    "disk_bytes_per_image": round(disk_bytes / len(files), 1),
                    "encrypt_s": round(encrypt_s, 2),
                },
                "shards": {},
            }
            if method == "orthomix":
                row["decryption"] = _decryption_error(build_cipher(method, key=key), source, folder)
            for compression in (None, "zstd"):
                out = work / f"sh-{tag}-{compression}"
                extra = ["--compression", compression] if compression else []
                started = time.perf_counter()
                assert pack_main([*argv, *extra, str(source), str(out)]) == 0
                chunks = list(out.rglob("chunk-*.bin"))
                packed = sum(
                    json.loads((out / "vitlearnenc-shards.json").read_text())["counts"].values()
                )
                row["shards"][compression or "raw"] = {
                    "bytes_per_image": round(_sizes(chunks)[0] / packed, 1),
                    "pack_s": round(time.perf_counter() - started, 2),
                }
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-class", type=int, default=30)
    parser.add_argument("--test-per-class", type=int, default=2)
    parser.add_argument("--archive", type=Path, default=ARCHIVE)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="bench_storage_") as tmp:
        work = Path(tmp)
        train = extract_per_class(args.archive, work / "src", args.per_class, args.test_per_class)
        load_before = [round(v, 2) for v in os.getloadavg()]
        rows = measure(work / "src", work)
    payload = {
        "command": "python -m experiments.benchmarks.bench_storage "
        + shlex.join(argv if argv is not None else sys.argv[1:]),
        "images": {"train": train, "test": 10 * args.test_per_class},
        "load_average_1_5_15min_before": load_before,
        "load_average_1_5_15min_after": [round(v, 2) for v in os.getloadavg()],
        "notes": "folder bytes: per file (PNG or .npy with its 128-byte header); shard bytes: "
        "chunk files over images packed (train + test, labels and names included)",
        "rows": rows,
    }
    args.results.mkdir(parents=True, exist_ok=True)
    path = args.results / "storage_bytes.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
