"""How much of the key the weight-matching attack still reads off after N fine-tuning steps.

A small ViT (random init standing in for public pretrained weights) is transformed with a seeded
proposed-cipher key, then fine-tuned on encrypted synthetic images (class-conditional smooth
colour patterns) with SGD (momentum 0.9, weight decay 5e-4) for each learning rate. At every
checkpoint N the attack compares the fine-tuned model with the public one and the recovery
rates of K1 (block_perm), K2 (pixel_perm) and the patch-vector permutation are recorded. The
attacker is given the key's public ``channel_mix`` option unless ``--infer-channel-mix``.

    python experiments/key_recovery_curve.py --lrs 0.03 0.3 --steps 0 10 30 100 300

Writes JSON (configuration, command line and one curve per learning rate; no key material).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer

from vitlearnenc.attacks import key_recovery_rate, recover_key_from_weights
from vitlearnenc.ciphers import ProposedCipher, build_cipher
from vitlearnenc.models.key_transform import transform_vit

log = logging.getLogger("key_recovery_curve")
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "key_recovery" / "curve.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[0, 10, 30, 100, 300])
    parser.add_argument("--lrs", type=float, nargs="+", default=[0.03, 0.3])
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--patch-size", type=int, default=4)
    parser.add_argument("--embed-dim", type=int, default=64)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--channel-mix", action="store_true")
    parser.add_argument(
        "--infer-channel-mix",
        action="store_true",
        help="make the attacker infer channel_mix from the weights instead of reading the "
        "key's public option",
    )
    parser.add_argument("--model-seed", type=int, default=0)
    parser.add_argument("--key-seed", type=int, default=0)
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    return parser.parse_args(argv)


class SyntheticImages:
    """Class-conditional uint8 images: a per-class 4x4 colour template plus per-image
    low-frequency and pixel noise, upsampled bilinearly (learnable, image-like statistics)."""

    def __init__(self, classes: int, size: int, seed: int) -> None:
        self.size = size
        self.generator = torch.Generator().manual_seed(seed)
        self.templates = torch.rand(classes, 3, 4, 4, generator=self.generator)

    def batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.randint(0, self.templates.shape[0], (batch_size,), generator=self.generator)
        coarse = self.templates[labels] + 0.25 * torch.randn(
            batch_size, 3, 4, 4, generator=self.generator
        )
        images = F.interpolate(
            coarse, size=(self.size, self.size), mode="bilinear", align_corners=False
        )
        images = images + 0.05 * torch.randn(images.shape, generator=self.generator)
        return (images.clamp(0, 1) * 255).round().to(torch.uint8), labels


def build_public_vit(args: argparse.Namespace) -> VisionTransformer:
    torch.manual_seed(args.model_seed)
    return VisionTransformer(
        img_size=args.image_size,
        patch_size=args.patch_size,
        embed_dim=args.embed_dim,
        depth=args.depth,
        num_heads=args.heads,
        num_classes=args.classes,
    )


def run_curve(
    args: argparse.Namespace, lr: float, cipher: ProposedCipher
) -> list[dict[str, float | int | bool | None]]:
    """Fine-tune the transformed model at ``lr``; score the attack at every checkpoint."""
    public = build_public_vit(args)
    model = transform_vit(public, cipher.key).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    data = SyntheticImages(args.classes, args.image_size, args.data_seed)
    checkpoints = sorted(set(args.steps))
    points: list[dict[str, float | int | bool | None]] = []
    loss: float | None = None  # no training loss before the first step
    for step in range(checkpoints[-1] + 1):
        if step in checkpoints:
            result = recover_key_from_weights(
                public,
                model,
                block_size=args.patch_size,
                channel_mix=None if args.infer_channel_mix else args.channel_mix,
            )
            point: dict[str, float | int | bool | None] = {"steps": step, "train_loss": loss}
            point.update(key_recovery_rate(result, cipher.key))
            point["block_margin_mean"] = float(result.block_margin.mean())
            point["pixel_margin_mean"] = float(result.pixel_margin.mean())
            point["recovered_channel_mix"] = result.channel_mix
            points.append(point)
            log.info(
                "lr=%g steps=%d %s", lr, step, {k: v for k, v in point.items() if k != "steps"}
            )
        if step == checkpoints[-1]:
            break
        images, labels = data.batch(args.batch_size)
        logits = model((cipher.encrypt(images).float() / 255 - 0.5) / 0.5)
        batch_loss = F.cross_entropy(logits, labels)
        optimizer.zero_grad()
        batch_loss.backward()
        optimizer.step()
        loss = batch_loss.item()
    return points


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    cipher = build_cipher(
        "proposed",
        args.image_size,
        args.patch_size,
        seed=args.key_seed,
        channel_mix=args.channel_mix,
    )
    started = time.perf_counter()
    curves = [{"lr": lr, "points": run_curve(args, lr, cipher)} for lr in args.lrs]
    report = {
        "command": " ".join(["python", *sys.argv]),
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "key_fingerprint": cipher.key.fingerprint,
        "optimizer": "SGD momentum 0.9, weight decay 5e-4, constant lr",
        "data": "synthetic class-conditional images, encrypted on the fly, 0.5/0.5 normalisation",
        "seconds": round(time.perf_counter() - started, 1),
        "curves": curves,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
