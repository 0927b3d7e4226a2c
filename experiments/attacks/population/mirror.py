"""Can a ciphertext-only attacker tell a restored CIFAR-10 corpus from its mirror image?

The population attacks (EtC's pooled puzzle, the ELE correlation attack) restore the corpus up
to one global variant, chosen from per-pixel moments of public images; those moments are nearly
left-right symmetric, so some rows come back mirrored. Whether *any* attacker can do better
depends on whether the domain is mirror-symmetric. This measures it: a small CNN is trained on
the public images only (5,000 train images and their mirror images, labels upright/mirrored),
then scored on the victims (test split; researcher side):

* per image: the sign of ``f(x) - f(mirror(x))`` (symmetrised, so exactly antisymmetric);
* pooled: the corpus shares one orientation, so the attacker sums that margin over its N
  restorations and decides once; the fraction of random corpora of N victims decided right.

    nice -n 10 python -m experiments.attacks.population.mirror

writes ``experiments/results/attacks/population/mirror.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import torch
from torch import nn

from experiments.attacks.population.common import load_cifar
from experiments.attacks.population.curves import RESULTS

SEED = 0
EPOCHS = 12
COUNTS = (1, 10, 100, 1000, 10000)
DRAWS = 2000


def mirror(images: torch.Tensor) -> torch.Tensor:
    return images.flip(-1)


def network() -> nn.Module:
    """A small CNN (about 25k weights; sized for the shared 2-core host): enough to find
    asymmetric cues (text, lighting, layout) if the domain has strong ones."""
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 1),
    )  # fmt: skip


def scaled(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 127.5 - 1.0


def train(public: torch.Tensor, epochs: int = EPOCHS) -> nn.Module:
    """Upright (1) vs mirrored (0) on the public images, with crops-by-shift as augmentation."""
    torch.manual_seed(SEED)
    model = network()
    optimiser = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=2e-3, total_steps=epochs * (2 * len(public) // 128 + 1)
    )
    images = torch.cat([public, mirror(public)])
    labels = torch.cat([torch.ones(len(public)), torch.zeros(len(public))])
    loss_fn = nn.BCEWithLogitsLoss()
    generator = torch.Generator().manual_seed(SEED)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(images), generator=generator)
        for start in range(0, len(images), 128):
            batch = order[start : start + 128]
            x = scaled(images[batch])
            shift = torch.randint(-3, 4, (2,), generator=generator).tolist()
            x = torch.roll(x, shifts=shift, dims=(-2, -1))  # a shift keeps the orientation
            loss = loss_fn(model(x).squeeze(1), labels[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
    return model.eval()


@torch.no_grad()
def margins(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """``f(x) - f(mirror(x))`` per image: > 0 reads "upright"."""
    out = []
    for start in range(0, len(images), 500):
        x = scaled(images[start : start + 500])
        out.append(model(x).squeeze(1) - model(mirror(x)).squeeze(1))
    return torch.cat(out)


def pooled_accuracy(margin: torch.Tensor, count: int, draws: int) -> float:
    """Fraction of random corpora of ``count`` victims whose summed margin is positive."""
    if count >= len(margin):
        return float(margin.sum() > 0)
    generator = torch.Generator().manual_seed(SEED)
    right = 0
    for _ in range(draws):
        pick = torch.randperm(len(margin), generator=generator)[:count]
        right += int(margin[pick].sum() > 0)
    return right / draws


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    victims, public = load_cifar()
    started = time.perf_counter()
    model = train(public, args.epochs)
    seconds = time.perf_counter() - started
    victim_margin, public_margin = margins(model, victims), margins(model, public)
    result: dict[str, Any] = {
        "public_images": len(public),
        "victims": len(victims),
        "epochs": args.epochs,
        "train_seconds": seconds,
        "per_image_accuracy_public": float((public_margin > 0).float().mean()),
        "per_image_accuracy_victims": float((victim_margin > 0).float().mean()),
        "mean_margin_victims": float(victim_margin.mean()),
        "std_margin_victims": float(victim_margin.std()),
        "pooled_accuracy": {str(n): pooled_accuracy(victim_margin, n, DRAWS) for n in COUNTS},
        "command": "python -m experiments.attacks.population.mirror",
    }
    (RESULTS / "mirror.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Mirror test: can public images tell a CIFAR-10 corpus from its mirror image?",
        "",
        f"Command: `{result['command']}`. A small CNN trained on the {len(public):,} public "
        f"images and their mirror images ({args.epochs} epochs, {seconds:.0f} s) scores each "
        "victim by f(x) - f(mirror(x)); a corpus of N victims is called upright when the "
        f"summed margin is positive ({DRAWS:,} random corpora per N; one at 10,000).",
        "",
        f"Per-image accuracy: {result['per_image_accuracy_victims']:.3f} on the victims "
        f"(training images: {result['per_image_accuracy_public']:.3f}); margin mean "
        f"{result['mean_margin_victims']:.3f}, std {result['std_margin_victims']:.3f}.",
        "",
        "| N | corpora oriented right |",
        "|---|---|",
        *(f"| {int(n):,} | {acc:.3f} |" for n, acc in result["pooled_accuracy"].items()),
    ]
    (RESULTS / "mirror.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
