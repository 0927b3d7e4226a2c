"""Run the attack table of experiments/attacks/README.md row by row, resumably.

Every row is one ``vitlearnenc-attack`` run in its own process and run directory. When a run
finishes, its ``metrics.json`` is copied to ``experiments/results/attacks/runs/<row>.json``;
rows whose JSON is already there are skipped, so an interrupted sweep picks up where it
stopped. A row being run holds ``<log dir>/<row>.lock``, so two sweeps (e.g. one with
``--only gan`` on the second core) never run the same row; a crash leaves the lock behind:
delete it to retry the row. ``aggregate.py`` then builds the table and the figures.

    python experiments/attacks/sweep.py                 # every row (CPU: about 1.5 h wall)
    python experiments/attacks/sweep.py --only itn      # rows whose id contains "itn"
    python experiments/attacks/sweep.py --dry-run       # print the commands
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "experiments" / "results" / "attacks"
ATTACK = Path(sys.executable).parent / "vitlearnenc-attack"
CIPHERS = ("proposed", "le", "ele", "etc", "pe")
#: the linear patch ciphers of the frontier study (issue #16), attacked by the frontier attacks
FRONTIER = ("orthomix", "orthomix_sub")

#: shared by every row: the real CIFAR-10 archive, a reproducible victim key (seed 1; PE draws
#: a fresh key per image from the seeded torch RNG), 1000 victim test images at 32x32
COMMON = [
    "data=cifar10_folder",
    "key=seed",
    "key.seed=1",
    "logger=csv",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]
#: ITN on CPU: U-Net 16-128 channels (3 levels, 0.48 M parameters), 20k attacker images (a fresh
#: key each; 18k train / 2k val), 3 epochs, batch 64, Adam 1e-3
ITN_32 = [
    "attack.num_public_images=20000",
    "attack.net.base_channels=16",
    "attack.net.depth=3",
    "attack.max_epochs=3",
    "attack.batch_size=64",
    "attack.optim.name=adamw",
    "attack.optim.lr=1e-3",
    "attack.optim.weight_decay=0",
]
#: lab GAN-Attack on CPU: 12.8k labelled victim ciphertexts + 12.8k other natural images,
#: batch 64, 2 epochs = 400 iterations (PE, whose block size 1 makes the generator 8x dearer:
#: 1 epoch = 200 iterations)
GAN_LAB_32 = ["attack.num_victim_train=12800", "attack.num_natural=12800", "attack.batch_size=64"]
#: SIA-GAN on CPU, shrunk: decoder width 32 with 2 residual blocks, discriminator at 1/8 width,
#: ResNet-20 as the auxiliary classifier; 16k labelled victim ciphertexts + 16k natural images,
#: batch 64 (250 iterations per epoch). At ~1 s of CPU per iteration every cipher gets 2 epochs
#: (500 iterations, the table's column); LE also 8 epochs (2000 iterations) and the proposed
#: cipher 4 (1000 iterations), to show how the attack grows with its budget
SIAGAN_32 = [
    "attack.num_victim_train=16000",
    "attack.num_natural=16000",
    "attack.batch_size=64",
    "attack.generator.width=32",
    "attack.generator.num_res_blocks=2",
    "attack.discriminator.width=0.125",
    "attack.classifier.name=resnet20_cifar",
]
SHARED = "attack.generator.shared_adaptation=true"
#: population attacks: the largest N of the population curves (10,000 at 32, 1,000 at 224)
POPULATION_32 = "attack.corpus_size=10000"
POPULATION_224 = "attack.corpus_size=1000"
#: the correlation attack (LE, ELE, PE) at 224: 1,000 public images, as its population curves
#: (its public statistics pool all 196 block positions, so 196,000 samples)
PUBLIC_224 = "attack.num_public_images=1000"
#: the deployed setting: proposed cipher at 224x224, block 16, 100 victim images
AT_224 = ["image_size=224", "cipher.block_size=16", "attack.num_victim_images=100"]
#: ITN at 224 on CPU, tiny: U-Net 8-128 channels (4 levels), 400 attacker images, 1 epoch
ITN_224 = [
    "attack.num_public_images=400",
    "attack.val_fraction=0.05",
    "attack.net.base_channels=8",
    "attack.net.depth=4",
    "attack.max_epochs=1",
    "attack.batch_size=16",
    "attack.optim.name=adamw",
    "attack.optim.lr=1e-3",
    "attack.optim.weight_decay=0",
]


@dataclass(frozen=True)
class Row:
    """One run: an attack option on a cipher at an image size, with extra overrides; ``tag``
    tells apart extra runs of the same cell (other training budgets or network variants), which
    the table lists beside the cell instead of in it."""

    attack: str
    cipher: str
    size: int = 32
    overrides: list[str] = field(default_factory=list)
    tag: str = ""

    @property
    def id(self) -> str:
        cell = f"{self.size}px-{self.cipher}-{self.attack}"
        return f"{cell}-{self.tag}" if self.tag else cell

    def command(self, log_dir: Path) -> list[str]:
        size = AT_224 if self.size == 224 else []
        return [
            str(ATTACK),
            f"attack={self.attack}",
            f"cipher={self.cipher}",
            *COMMON,
            *size,
            *self.overrides,
            f"hydra.run.dir={log_dir / self.id}",
        ]


ROWS = [
    Row("reference_plain", "proposed"),
    Row("reference_random", "proposed"),
    *[Row(attack, cipher) for attack in ("fr", "fr_advanced") for cipher in CIPHERS],
    # jigsaw and KPA on every cipher: where they do not apply, the run says why (no decoding);
    # the EtC solver tries 96 variants of every piece (~2.3 s per image, one thread): 200 images
    *[Row("jigsaw", cipher) for cipher in CIPHERS if cipher != "etc"],
    Row("jigsaw", "etc", overrides=["attack.num_victim_images=200"]),
    *[Row("kpa", cipher) for cipher in CIPHERS],
    # population attacks (issue #19): the key solved once from N further ciphertexts of the
    # victim key (+ 5,000 public images), then every victim decrypted; N = 10,000 at 32x32
    *[Row("population", c, overrides=[POPULATION_32]) for c in CIPHERS],
    # the linear patch ciphers: the ciphertext-only population attacks (second order, ICA) at the
    # curves' largest N, and the known-plaintext attack with one pair
    *[
        Row(attack, c, overrides=[POPULATION_32])
        for attack in ("frontier_covariance", "frontier_ica")
        for c in FRONTIER
    ],
    *[Row("frontier_kpa", c) for c in FRONTIER],
    # and the per-image attacks for comparison (issue #16): FR and the jigsaw say why they do
    # not apply to real-valued ciphertexts; ITN learns from a fresh attacker key per image
    *[Row(attack, c) for attack in ("fr", "fr_advanced", "jigsaw") for c in FRONTIER],
    *[Row("itn", c, overrides=ITN_32) for c in FRONTIER],
    Row("reference_plain", "proposed", 224),
    Row("reference_random", "proposed", 224),
    Row("fr", "proposed", 224),
    Row("jigsaw", "proposed", 224),
    Row("kpa", "proposed", 224),
    # at 224 the population attacks at the curves' largest N (1,000): the two block puzzles,
    # and the correlation attack on LE, ELE and PE (the control)
    *[Row("population", c, 224, [POPULATION_224]) for c in ("proposed", "etc")],
    *[Row("population", c, 224, [POPULATION_224, PUBLIC_224]) for c in ("le", "ele", "pe")],
    *[Row("itn", cipher, overrides=ITN_32) for cipher in CIPHERS],
    *[Row("gan_lab", c, overrides=[*GAN_LAB_32, "attack.max_epochs=2"]) for c in CIPHERS[:-1]],
    Row("gan_lab", "pe", overrides=[*GAN_LAB_32, "attack.max_epochs=1"]),
    Row("itn", "proposed", 224, ITN_224),
    *[Row("gan", cipher, overrides=[*SIAGAN_32, "attack.max_epochs=2"]) for cipher in CIPHERS],
    Row(
        "gan",
        "proposed",
        overrides=[*SIAGAN_32, "attack.max_epochs=1", "attack.limit_train_batches=150"],
        tag="150it",
    ),
    Row("gan", "le", overrides=[*SIAGAN_32, "attack.max_epochs=8"], tag="2000it"),
    Row("gan", "proposed", overrides=[*SIAGAN_32, "attack.max_epochs=4"], tag="1000it"),
    # one adaptation conv for all block positions: the attacker's better choice where the
    # cipher transforms every block alike (LE; the proposed cipher's pixel shuffle)
    *[
        Row("gan", c, overrides=[*SIAGAN_32, SHARED, "attack.max_epochs=2"], tag="shared")
        for c in ("le", "proposed")
    ],
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="run rows whose id contains this text")
    parser.add_argument("--log-dir", type=Path, default=Path("/tmp/vitlearnenc-attack-logs"))
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = parser.parse_args()
    runs = RESULTS / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # measured fastest on the shared 2-core host
    for row in ROWS:
        if args.only not in row.id:
            continue
        target = runs / f"{row.id}.json"
        command = row.command(args.log_dir)
        if args.dry_run:
            print(" ".join(command[1:]))
            continue
        if target.exists():
            print(f"skip {row.id} (done)", flush=True)
            continue
        lock = args.log_dir / f"{row.id}.lock"
        args.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            lock.touch(exist_ok=False)
        except FileExistsError:
            print(f"skip {row.id} (running elsewhere, or a stale {lock})", flush=True)
            continue
        try:
            started = time.perf_counter()
            result = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True)
            if result.returncode:
                print(f"FAILED {row.id}:\n{result.stderr[-3000:]}", flush=True)
                continue
            shutil.copyfile(args.log_dir / row.id / "metrics.json", target)
            # the first victim images and their restorations, for the figures (a few kB)
            samples = args.log_dir / row.id / "samples.pt"
            if samples.exists():
                shutil.copyfile(samples, runs / f"{row.id}.samples.pt")
            print(f"done {row.id} in {time.perf_counter() - started:.0f} s", flush=True)
        finally:
            lock.unlink()


if __name__ == "__main__":
    main()
