"""``make gpu-check``: the GPU rows of the benchmarks in one short run (< 5 min on an H200).

Cipher throughput, the training step and the streaming loader (2,000 CIFAR-10 images packed
at 224, streamed with 4 workers through the on-device pipeline), JSON into
``experiments/results/bench/`` (``ciphers_cuda.json``, ``train_step_cuda.json``,
``streaming_cuda.json``).

    python -m experiments.benchmarks.gpu_check
"""

from __future__ import annotations

import torch

from experiments.benchmarks import bench_ciphers, bench_streaming, bench_train_step
from experiments.benchmarks.common import RESULTS_DIR


def main() -> None:
    if not torch.cuda.is_available():
        raise SystemExit("gpu-check needs a CUDA device")
    bench_ciphers.main(["--device", "cuda", "--repeats", "5", "--no-reference"])
    bench_train_step.main(["--device", "cuda", "--repeats", "10", "--vit-b16-batch", "64"])
    bench_streaming.main(
        ["--device", "cuda", "--sizes", "2000", "--workers", "4", "--batch", "256", "--no-zstd",
         "--results", str(RESULTS_DIR)]
    )  # fmt: skip


if __name__ == "__main__":
    main()
