"""Inference-time accuracy effect of float16 ciphertext storage: one trained orthomix model,
the CIFAR-10 test split encrypted with its key, fed once as float32 and once as float16
ciphertexts (what a float16 folder or shard holds), all else equal.

This is not the training-time effect (a model trained on float16 ciphertexts), which the
frontier utility sweep measures with its ``orthomix`` float16 run; it shows how far float16
rounding moves a float32-trained model's predictions.

    python -m experiments.benchmarks.bench_storage_accuracy --ckpt CKPT --key-seed 0 \
        --data ../shared/data/cifar10-jpeg.tar.gz

Writes ``experiments/results/data/storage_accuracy.json`` (``--results`` elsewhere).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

import torch

from vitlearnenc.data import ImageFolderDataModule
from vitlearnenc.tasks.classifier import ClassifierModule

RESULTS = Path(__file__).resolve().parents[1] / "results" / "data"


def predictions(task: ClassifierModule, dm: ImageFolderDataModule) -> tuple[torch.Tensor, ...]:
    """Predicted and true labels over the test split, through the DataModule's pipeline."""
    predicted, labels = [], []
    with torch.inference_mode():
        for batch in dm.test_dataloader():
            batch = dm.on_after_batch_transfer(batch, 0)
            predicted.append(task(batch["image"]).argmax(1))
            labels.append(batch["label"])
    return torch.cat(predicted), torch.cat(labels)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", type=Path, required=True)
    parser.add_argument("--key-seed", type=int, required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--block-size", type=int, default=4)
    parser.add_argument("--mean", default="0.4914,0.4822,0.4465")
    parser.add_argument("--std", default="0.247,0.2435,0.2616")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    task = ClassifierModule.load_from_checkpoint(args.ckpt, map_location="cpu").eval()
    checkpoint = torch.load(args.ckpt, map_location="cpu", weights_only=False)
    common = {
        "root": args.data,
        "cipher": "orthomix",
        "block_size": args.block_size,
        "key_seed": args.key_seed,
        "batch_size": 500,
        "num_workers": 0,
        "val_fraction": 0.0,
        "augment": False,
        "mean": [float(v) for v in args.mean.split(",")],
        "std": [float(v) for v in args.std.split(",")],
    }
    dm32 = ImageFolderDataModule(cipher_options={"storage": "float32"}, **common)
    dm32.setup("test")
    dm16 = ImageFolderDataModule(cipher_options={"storage": "float16"}, **common)
    dm16.test_set, dm16.classes = dm32.test_set, dm32.classes  # decoded once
    dm16.setup("test")
    assert dm16.cipher.block_perm.tolist() == dm32.cipher.block_perm.tolist()  # the key not
    rows = {}
    for name, dm in (("float32", dm32), ("float16", dm16)):
        predicted, labels = predictions(task, dm)
        rows[name] = {
            "predicted": predicted,
            "accuracy_percent": 100 * float((predicted == labels).float().mean()),
        }
    agree = float((rows["float32"]["predicted"] == rows["float16"]["predicted"]).float().mean())
    payload = {
        "command": "python -m experiments.benchmarks.bench_storage_accuracy "
        + shlex.join(argv if argv is not None else sys.argv[1:]),
        "checkpoint_epoch": checkpoint.get("epoch"),
        "checkpoint_global_step": checkpoint.get("global_step"),
        "test_images": int(labels.numel()),
        "accuracy_percent": {name: round(row["accuracy_percent"], 2) for name, row in rows.items()},
        "predictions_agreeing_percent": round(100 * agree, 3),
        "predictions_differing": int(round((1 - agree) * labels.numel())),
        "wall_s": round(time.perf_counter() - started, 1),
        "load_average_1_5_15min_after": [round(v, 2) for v in os.getloadavg()],
    }
    args.results.mkdir(parents=True, exist_ok=True)
    path = args.results / "storage_accuracy.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(json.dumps(payload), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
