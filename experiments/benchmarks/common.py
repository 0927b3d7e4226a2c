"""Timing helpers shared by the benchmarks: best-of-N wall time (alone or interleaved), timed
training steps on a synthetic pipeline, machine description, JSON output."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vitlearnenc.data import SyntheticDataModule

RESULTS_DIR = Path(__file__).resolve().parents[1] / "results" / "bench"


def best_time(
    fn: Callable[[], Any],
    repeats: int = 5,
    warmup: int = 1,
    sync: bool = False,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Minimum seconds of ``fn()`` over ``repeats`` runs (after ``warmup`` runs).

    The minimum is the least noisy estimate on a shared machine: other load only adds time.
    """
    return interleaved_best_times({"fn": fn}, repeats, warmup, sync, clock)["fn"]


def interleaved_step_times(
    steps: Mapping[str, Callable[[], float]], repeats: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Seconds of every self-timing step over ``repeats`` round-robin rounds, after ``warmup``
    untimed calls of each (allocator, index caches).

    Interleaving exposes every step to the same phases of background load, so ratios between
    them (encrypted vs plain step, cipher vs ``clone()``) hold even when the machine is shared.
    """
    for step in steps.values():
        for _ in range(warmup):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            times[name].append(step())
    return times


def interleaved_best_times(
    fns: Mapping[str, Callable[[], Any]],
    repeats: int = 5,
    warmup: int = 1,
    sync: bool = False,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, float]:
    """Minimum seconds of every function over :func:`interleaved_step_times` rounds.

    The minimum discards the rounds that other processes slowed down. ``clock`` is wall-clock
    time by default; ``time.process_time`` (CPU time of this process, page faults included)
    does not count the time spent waiting for a core, so with one thread it measures the work
    itself even under load (with more threads it would also count idle threads spinning at
    barriers). ``sync`` waits for queued CUDA work at both ends of every call.
    """

    def timed(fn: Callable[[], Any]) -> Callable[[], float]:
        def call() -> float:
            if sync:
                torch.cuda.synchronize()
            start = clock()
            fn()
            if sync:
                torch.cuda.synchronize()
            return clock() - start

        return call

    steps = {name: timed(fn) for name, fn in fns.items()}
    times = interleaved_step_times(steps, repeats, warmup)
    return {name: min(seconds) for name, seconds in times.items()}


def synthetic_pipeline(
    cipher: str, image_size: int, block_size: int, batch: int
) -> SyntheticDataModule:
    """A set-up DataModule whose ``transform_batch`` is the training pipeline (augment, resize,
    encrypt with a fixed test key, normalise) for 32x32 uint8 batches of ``batch`` images."""
    datamodule = SyntheticDataModule(
        num_train=batch,
        num_test=batch,
        native_size=32,
        image_size=image_size,
        block_size=block_size,
        batch_size=batch,
        num_workers=0,
        cipher=cipher,
        **({} if cipher == "plain" else {"key_seed": 0}),
    )
    datamodule.setup("fit")
    return datamodule


def timed_training_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    datamodule: SyntheticDataModule,
    images: torch.Tensor,
    labels: torch.Tensor,
    bf16: bool = False,
    channels_last: bool = False,
) -> Callable[[], float]:
    """A closure running one whole training step (pipeline, forward, backward, optimiser step)
    on ``images`` and returning its wall seconds (CUDA work synchronised at both ends)."""
    device = images.device

    def step() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        inputs = datamodule.transform_batch(images, train=True)
        if channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = nn.functional.cross_entropy(model(inputs), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    return step


def machine_info(device: torch.device) -> dict[str, Any]:
    """What the numbers were measured on, including the load from other processes."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": str(device),
        "load_average_1_5_15min": [round(load, 2) for load in os.getloadavg()],
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def write_results(name: str, payload: dict[str, Any], out_dir: Path = RESULTS_DIR) -> Path:
    """Write ``payload`` as ``<out_dir>/<name>.json``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path
