"""Cipher throughput: every cipher on a (B, 3, 224, 224) batch, next to ``tensor.clone()``.

``clone`` reads and writes the batch once, the least any out-of-place cipher can do, so the
ratio cipher/clone says how close a cipher is to memory bandwidth. Both are measured in the
same run, interleaved per cipher.

    python -m experiments.benchmarks.bench_ciphers [--batch 256] [--size 224] [--device cpu]
"""

from __future__ import annotations

import argparse
from typing import Any

import torch

from experiments.benchmarks.common import best_time, machine_info, write_results
from vitlearnenc.ciphers import build_cipher, list_ciphers

# block size per cipher at 224x224: the ViT patch for the proposed cipher, the baselines' 4x4
# blocks scaled to the same 16x16 grid cells as the paper's 224 setting uses for ViT
BLOCK_SIZES = {"proposed": 16, "le": 16, "ele": 16, "etc": 16, "etc_gray": 16, "pe": 1, "plain": 16}


def bench_cipher(name: str, images: torch.Tensor, repeats: int, block_size: int) -> dict[str, Any]:
    """Encrypt/decrypt throughput of one cipher and clone() measured right before it."""
    sync = images.device.type == "cuda"
    options = {"per_image_keys": False} if name == "pe" else {}
    cipher = build_cipher(name, image_size=images.shape[-2:], block_size=block_size, seed=0, **options)
    clone_s = best_time(lambda: images.clone(), repeats, sync=sync)
    encrypt_s = best_time(lambda: cipher.encrypt(images), repeats, sync=sync)
    encrypted = cipher.encrypt(images)
    decrypt_s = best_time(lambda: cipher.decrypt(encrypted), repeats, sync=sync) if cipher.invertible else None
    nbytes = images.numel() * images.element_size()
    return {
        "cipher": name,
        "block_size": block_size,
        "dtype": str(images.dtype).removeprefix("torch."),
        "encrypt_ms": encrypt_s * 1e3,
        "decrypt_ms": None if decrypt_s is None else decrypt_s * 1e3,
        "clone_ms": clone_s * 1e3,
        "encrypt_GBps": nbytes / encrypt_s / 1e9,
        "clone_GBps": nbytes / clone_s / 1e9,
        "encrypt_images_per_s": len(images) / encrypt_s,
        "ratio_to_clone": clone_s / encrypt_s,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtypes", default="uint8,float32")
    parser.add_argument("--ciphers", default=",".join(c for c in list_ciphers() if c != "none"))
    parser.add_argument("--out", default="ciphers", help="results name (JSON under results/bench)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    generator = torch.Generator().manual_seed(0)
    base = torch.randint(0, 256, (args.batch, 3, args.size, args.size), dtype=torch.uint8, generator=generator)
    rows = []
    for dtype_name in args.dtypes.split(","):
        images = base if dtype_name == "uint8" else base.to(getattr(torch, dtype_name)) / 255
        images = images.to(device)
        for name in args.ciphers.split(","):
            row = bench_cipher(name, images, args.repeats, BLOCK_SIZES.get(name, 16))
            rows.append(row)
            print(
                f"{name:>9} {row['dtype']:>8}  encrypt {row['encrypt_ms']:8.1f} ms  "
                f"{row['encrypt_GBps']:6.2f} GB/s  {row['encrypt_images_per_s']:9.0f} img/s  "
                f"clone {row['clone_ms']:7.1f} ms  ratio {row['ratio_to_clone']:.2f}"
            )
        del images
    payload = {"benchmark": "ciphers", "batch_shape": list(base.shape), "machine": machine_info(device), "rows": rows}
    path = write_results(f"{args.out}_{device.type}", payload)
    print(f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
