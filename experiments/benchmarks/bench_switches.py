"""Training-step time under each speed switch of the GPU path, against the default fp32 step.

Every variant runs the full encrypted step (augment -> resize -> encrypt with the proposed
cipher -> normalise -> forward -> backward -> SGD step) on its own copy of the same model, the
variants interleaved round by round so that machine load hits all alike; median per variant.

- ``bf16-mixed``: the step under ``torch.autocast(bfloat16)``, what ``trainer.precision=bf16-mixed``
  does;
- ``channels_last``: weights and inputs NHWC, what ``channels_last=true`` does;
- ``no fused attention``: timm's attention with ``fused_attn`` off (the default uses
  ``F.scaled_dot_product_attention``), to show what the fused kernel buys (ViTs only);
- ``compile``: ``torch.compile`` of the network, what ``compile=true`` does (the first step,
  which compiles, is reported apart);
- pinned memory: host-to-device copy of a uint8 batch from pageable vs pinned memory with
  ``non_blocking=True`` (what ``data.pin_memory`` plus Lightning's transfer do); CUDA only.

    python -m experiments.benchmarks.bench_switches [--device cpu] [--repeats 10]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from experiments.benchmarks.common import (
    interleaved_step_times,
    machine_info,
    synthetic_pipeline,
    timed_training_step,
    write_results,
)
from vitlearnenc.models import build_classifier

#: (model, image size, patch / block size) per device: small models on CPU, the paper's on GPU
MODELS = {
    "cpu": [("vit_mini", 32, 4), ("resnet20_cifar", 32, 4)],
    "cuda": [("vit_base_patch16_224", 224, 16), ("resnet18_cifar", 32, 4)],
}


def _build(name: str, image_size: int, patch: int) -> nn.Module:
    if name.startswith("vit"):
        return build_classifier(name, num_classes=10, img_size=image_size, patch_size=patch)
    return build_classifier(name, num_classes=10)


@dataclass(frozen=True)
class Variant:
    """A model copy and how its step runs."""

    model: nn.Module
    bf16: bool = False
    channels_last: bool = False


def _variants(base: nn.Module, device: torch.device) -> dict[str, Variant]:
    """Every variant on its own copy of ``base`` (the same initial weights in all)."""
    variants = {
        "fp32": Variant(copy.deepcopy(base)),
        "bf16-mixed": Variant(copy.deepcopy(base), bf16=True),
        "channels_last": Variant(
            copy.deepcopy(base).to(memory_format=torch.channels_last), channels_last=True
        ),
    }
    if any(hasattr(module, "fused_attn") for module in base.modules()):
        unfused = copy.deepcopy(base)
        for module in unfused.modules():
            if hasattr(module, "fused_attn"):
                module.fused_attn = False
        variants["no fused attention"] = Variant(unfused)
    compiled = copy.deepcopy(base)
    compiled.compile()
    variants["compile"] = Variant(compiled)
    for variant in variants.values():
        variant.model.to(device)
    return variants


def switch_rows(
    name: str, image_size: int, patch: int, batch: int, repeats: int, device: torch.device
) -> list[dict[str, Any]]:
    """Median step time of every variant of one model, measured interleaved."""
    torch.manual_seed(0)
    datamodule = synthetic_pipeline("proposed", image_size, patch, batch)
    images = torch.randint(0, 256, (batch, 3, 32, 32), dtype=torch.uint8, device=device)
    labels = torch.randint(0, 10, (batch,), device=device)
    steps = {
        label: timed_training_step(
            variant.model,
            torch.optim.SGD(variant.model.parameters(), lr=0.01, momentum=0.9),
            datamodule,
            images,
            labels,
            bf16=variant.bf16,
            channels_last=variant.channels_last,
        )
        for label, variant in _variants(_build(name, image_size, patch), device).items()
    }
    first_step_s = {variant: step() for variant, step in steps.items()}  # compiles, warms caches
    times = interleaved_step_times(steps, repeats)
    baseline = statistics.median(times["fp32"])
    rows = []
    for variant, samples in times.items():
        median = statistics.median(samples)
        rows.append(
            {
                "model": name,
                "image_size": image_size,
                "batch": batch,
                "variant": variant,
                "step_ms": median * 1e3,
                "images_per_s": batch / median,
                "speedup_vs_fp32": baseline / median,
                "first_step_s": first_step_s[variant],
                "repeats": repeats,
            }
        )
    return rows


def pinned_transfer(
    batch: int, image_size: int, repeats: int, device: torch.device
) -> dict[str, Any]:
    """Host-to-device GB/s of a uint8 image batch from pageable and from pinned memory."""
    shape = (batch, 3, image_size, image_size)
    if device.type != "cuda":
        return {"shape": list(shape), "skipped": "pinned memory needs a CUDA device"}
    pageable = torch.randint(0, 256, shape, dtype=torch.uint8)
    pinned = pageable.pin_memory()
    result: dict[str, Any] = {"shape": list(shape)}
    for label, host in (("pageable", pageable), ("pinned", pinned)):
        host.to(device, non_blocking=True)
        torch.cuda.synchronize()
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            host.to(device, non_blocking=True)
            torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
        result[f"{label}_GBps"] = host.numel() / best / 1e9
    result["speedup"] = result["pinned_GBps"] / result["pageable_GBps"]
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--batch", type=int, default=128, help="batch of the 32x32 models")
    parser.add_argument("--vit-b16-batch", type=int, default=64, help="batch of ViT-B/16 (GPU)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows: list[dict[str, Any]] = []
    for name, image_size, patch in MODELS["cuda" if device.type == "cuda" else "cpu"]:
        batch = args.vit_b16_batch if image_size == 224 else args.batch
        rows += switch_rows(name, image_size, patch, batch, args.repeats, device)
    for row in rows:
        print(
            f"{row['model']:>22} {row['variant']:>20}: {row['step_ms']:8.1f} ms "
            f"({row['speedup_vs_fp32']:.2f}x fp32; first step {row['first_step_s']:.1f} s)"
        )
    transfer = pinned_transfer(args.batch, 224, args.repeats, device)
    print(f"pinned memory: {transfer}")
    payload = {
        "benchmark": "switches",
        "machine": machine_info(device),
        "rows": rows,
        "pinned_transfer": transfer,
    }
    print(f"wrote {write_results(f'switches_{device.type}', payload)}")
    return payload


if __name__ == "__main__":
    main()
