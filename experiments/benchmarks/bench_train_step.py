"""Cost of encryption inside a training step, and whether the data pipeline keeps up.

1. Step time of the same model and batch with the plain pipeline and with the proposed cipher
   (augment -> resize -> encrypt -> normalise -> forward -> backward -> SGD step), repetitions
   interleaved plain/encrypted so that machine load hits both alike; ratio of medians.
2. Images/s that the DataModule delivers (loader workers decoding nothing but uint8 indexing,
   plus the on-device transforms) against the images/s the training step consumes.

    python -m experiments.benchmarks.bench_train_step [--device cpu] [--vit-b16-batch 4]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch

from experiments.benchmarks.common import (
    interleaved_step_times,
    machine_info,
    synthetic_pipeline,
    timed_training_step,
    write_results,
)
from vitlearnenc.data import SyntheticDataModule
from vitlearnenc.models import build_classifier


def step_ratio(
    model_name: str, image_size: int, patch: int, batch: int, repeats: int, device: torch.device
) -> dict[str, Any]:
    """Median step time per pipeline, measured interleaved, and the encrypted/plain ratio.

    Both pipelines step the same model and optimiser, so they differ in the pipeline alone."""
    model = build_classifier(model_name, num_classes=10, img_size=image_size, patch_size=patch).to(
        device
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    pipelines = {
        cipher: synthetic_pipeline(cipher, image_size, patch, batch)
        for cipher in ("plain", "proposed")
    }
    images = torch.randint(0, 256, (batch, 3, 32, 32), dtype=torch.uint8, device=device)
    labels = torch.randint(0, 10, (batch,), device=device)
    times = interleaved_step_times(
        {
            name: timed_training_step(model, optimizer, dm, images, labels)
            for name, dm in pipelines.items()
        },
        repeats,
    )
    plain, enc = statistics.median(times["plain"]), statistics.median(times["proposed"])
    # the encryption alone, for reference
    cipher = pipelines["proposed"].cipher
    resized = pipelines["proposed"].augment_and_resize(images, train=True)
    cipher.encrypt(resized)
    start = time.perf_counter()
    for _ in range(5):
        cipher.encrypt(resized)
    encrypt_s = (time.perf_counter() - start) / 5
    return {
        "model": model_name,
        "image_size": image_size,
        "patch": patch,
        "batch": batch,
        "repeats": repeats,
        "plain_step_ms": plain * 1e3,
        "encrypted_step_ms": enc * 1e3,
        "ratio": enc / plain,
        "encrypt_only_ms": encrypt_s * 1e3,
        "train_images_per_s": batch / plain,
    }


def pipeline_throughput(batch: int, num_workers: int, batches: int, device: torch.device) -> float:
    """Images/s delivered by the DataModule's loader plus on-device transforms (32x32, proposed)."""
    dm = SyntheticDataModule(
        num_train=batch * batches,
        num_test=batch,
        native_size=32,
        batch_size=batch,
        num_workers=num_workers,
        cipher="proposed",
        block_size=4,
        key_seed=0,
        val_fraction=0.0,
    )
    dm.setup("fit")
    loader = dm.train_dataloader()
    count, start = 0, None
    for i, batch_dict in enumerate(loader):
        images = batch_dict["image"].to(device, non_blocking=True)
        out = dm.transform_batch(images, train=True)
        if i == 0:  # exclude worker start-up
            start = time.perf_counter()
            continue
        count += out.shape[0]
    assert start is not None
    return count / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--vit-mini-batch", type=int, default=128)
    parser.add_argument("--vit-b16-batch", type=int, default=4)
    parser.add_argument("--vit-b16-repeats", type=int, default=5)
    parser.add_argument("--skip-vit-b16", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = [step_ratio("vit_mini", 32, 4, args.vit_mini_batch, args.repeats, device)]
    if not args.skip_vit_b16:
        rows.append(
            step_ratio(
                "vit_base_patch16_224", 224, 16, args.vit_b16_batch, args.vit_b16_repeats, device
            )
        )
    for row in rows:
        print(
            f"{row['model']:>22} {row['image_size']}px batch {row['batch']}: plain {row['plain_step_ms']:.1f} ms, "
            f"encrypted {row['encrypted_step_ms']:.1f} ms, ratio {row['ratio']:.3f} "
            f"(encrypt alone {row['encrypt_only_ms']:.2f} ms)"
        )
    delivered = pipeline_throughput(args.vit_mini_batch, num_workers=2, batches=30, device=device)
    consumed = rows[0]["train_images_per_s"]
    pipeline = {
        "delivered_images_per_s": delivered,
        "consumed_images_per_s": consumed,
        "ratio": delivered / consumed,
        "model": "vit_mini",
        "num_workers": 2,
    }
    print(
        f"data pipeline: {delivered:.0f} img/s delivered vs {consumed:.0f} img/s consumed "
        f"(x{pipeline['ratio']:.1f})"
    )
    payload = {
        "benchmark": "train_step",
        "machine": machine_info(device),
        "steps": rows,
        "pipeline": pipeline,
    }
    print(f"wrote {write_results(f'train_step_{device.type}', payload)}")
    return payload


if __name__ == "__main__":
    main()
