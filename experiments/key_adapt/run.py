"""Key adaptation on CIFAR-10 at mini scale (issue: key-based model transformation).

(a) A vit_mini trained on plain images of classes 0-4, transformed with a key, scores exactly
    its plain accuracy on encrypted test images (and the untransformed model does not).
(b) That model is the "public pretrained" network for a target task, classes 5-9: fine-tune it
    on plain images, on encrypted images as is (the paper's setting), and on encrypted images
    after ``model.key_adapt=true``; plus encrypted training from scratch for reference.

Every run is a plain ``vitlearnenc-train`` call; results go to
``experiments/results/key_adapt/`` (``results.json``, ``results.md``). Resumable: finished runs
(with ``metrics.json``) are not rerun.

    python -m experiments.key_adapt.run --data ../shared/data/cifar10-jpeg.tar.gz
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from vitlearnenc.ciphers import build_cipher
from vitlearnenc.data import ImageFolderDataModule
from vitlearnenc.models import transform_vit
from vitlearnenc.tasks.classifier import ClassifierModule, export_network_weights

RESULTS = Path(__file__).resolve().parents[1] / "results" / "key_adapt"
SOURCE_CLASSES = [0, 1, 2, 3, 4]
TARGET_CLASSES = [5, 6, 7, 8, 9]
KEY_SEED = 0


def train(name: str, overrides: list[str], data: Path, timings: dict) -> Path:
    """Run ``vitlearnenc-train`` into ``RESULTS/runs/<name>`` unless it finished before."""
    run = RESULTS / "runs" / name
    if not (run / "metrics.json").exists():
        command = [
            str(Path(sys.executable).parent / "vitlearnenc-train"),
            "experiment=mini/vit",
            "data=cifar10_folder",
            f"data.root={data}",
            f"hydra.run.dir={run}",
            "callbacks.progress_bar=null",
            "callbacks.encrypted_samples=null",
            *overrides,
        ]
        print(" ".join(command[1:]), flush=True)
        start = time.time()
        subprocess.run(command, check=True)
        timings[name] = {
            "wall_s": round(time.time() - start, 1),
            "command": "vitlearnenc-train " + " ".join(command[1:]),
        }
    return run


def exactness(source_run: Path, data: Path) -> dict:
    """(a): plain model on plain test images vs transformed model on encrypted test images."""
    task = ClassifierModule.load_from_checkpoint(
        source_run / "checkpoints" / "last.ckpt", map_location="cpu"
    ).eval()
    common = dict(
        root=str(data), label_subset=SOURCE_CLASSES, batch_size=500, num_workers=0, augment=False
    )
    plain_dm = ImageFolderDataModule(cipher="plain", **common)
    plain_dm.setup("test")
    cipher = build_cipher("proposed", image_size=32, block_size=4, seed=KEY_SEED)
    transformed = transform_vit(task.net, cipher.key)
    correct = {"plain": 0, "transformed_on_encrypted": 0, "untransformed_on_encrypted": 0}
    max_logit_diff, total = 0.0, 0
    with torch.no_grad():
        for batch in plain_dm.test_dataloader():
            images, labels = batch["image"], batch["label"]
            plain_logits = task.net(plain_dm.transform_batch(images, train=False))
            enc = cipher.encrypt(images).float().div(255).sub(0.5).div(0.5)
            enc_logits = transformed(enc)
            correct["plain"] += int((plain_logits.argmax(-1) == labels).sum())
            correct["transformed_on_encrypted"] += int((enc_logits.argmax(-1) == labels).sum())
            correct["untransformed_on_encrypted"] += int((task.net(enc).argmax(-1) == labels).sum())
            max_logit_diff = max(max_logit_diff, float((enc_logits - plain_logits).abs().max()))
            total += len(labels)
    return {
        **{k: v / total for k, v in correct.items()},
        "max_abs_logit_diff": max_logit_diff,
        "n": total,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--source-epochs", type=int, default=6)
    parser.add_argument("--target-epochs", type=int, default=3)
    args = parser.parse_args(argv)
    data = args.data.resolve()
    timings: dict = {}
    source = train(
        "source_plain",
        [
            f"data.label_subset={SOURCE_CLASSES}",
            "cipher=plain",
            f"trainer.max_epochs={args.source_epochs}",
        ],
        data,
        timings,
    )
    weights = RESULTS / "runs" / "source_plain.safetensors"
    if not weights.exists():
        export_network_weights(source / "checkpoints" / "last.ckpt", weights)
    target = [
        f"data.label_subset={TARGET_CLASSES}",
        f"trainer.max_epochs={args.target_epochs}",
        "optim.warmup_fraction=0.1",
    ]
    finetune = [*target, f"model.checkpoint={weights}"]
    key = ["cipher=proposed", "key=seed", f"key.seed={KEY_SEED}"]
    runs = {
        "finetune_plain": train("finetune_plain", [*finetune, "cipher=plain"], data, timings),
        "finetune_encrypted": train("finetune_encrypted", [*finetune, *key], data, timings),
        "finetune_encrypted_key_adapt": train(
            "finetune_encrypted_key_adapt", [*finetune, *key, "model.key_adapt=true"], data, timings
        ),
        "scratch_encrypted": train("scratch_encrypted", [*target, *key], data, timings),
    }
    results = {
        "exactness": exactness(source, data),
        "target_test_acc": {
            name: json.loads((run / "metrics.json").read_text())["metrics"]["test/acc"]
            for name, run in runs.items()
        },
        "settings": {
            "source_classes": SOURCE_CLASSES,
            "target_classes": TARGET_CLASSES,
            "key_seed": KEY_SEED,
            "source_epochs": args.source_epochs,
            "target_epochs": args.target_epochs,
        },
        "timings": timings,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    previous = (
        json.loads((RESULTS / "results.json").read_text())
        if (RESULTS / "results.json").exists()
        else {}
    )
    results["timings"] = {**previous.get("timings", {}), **timings}
    (RESULTS / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
