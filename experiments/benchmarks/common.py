"""Timing helpers shared by the benchmarks: best-of-N wall time (alone or interleaved), machine
description, JSON output."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

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


def interleaved_best_times(
    fns: Mapping[str, Callable[[], Any]],
    repeats: int = 5,
    warmup: int = 1,
    sync: bool = False,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, float]:
    """Minimum seconds of every function, run round-robin ``repeats`` times.

    Interleaving exposes every function to the same phases of background load, so ratios between
    them (cipher vs ``clone()``) hold even when the machine is shared; the minimum discards
    the rounds that other processes slowed down. ``clock`` is wall-clock time by default;
    ``time.process_time`` (CPU time of this process, page faults included) does not count the
    time spent waiting for a core, so with one thread it measures the work itself even under
    load (with more threads it would also count idle threads spinning at barriers).
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for name, fn in fns.items():
            if sync:
                torch.cuda.synchronize()
            start = clock()
            fn()
            if sync:
                torch.cuda.synchronize()
            best[name] = min(best[name], clock() - start)
    return best


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
