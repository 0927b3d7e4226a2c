"""Known-plaintext rows at 224x224, block 16, on their own (the full run was stopped by the
out-of-memory killer on the shared host): the smallest k that gives the exact key, on 20 victims
drawn as in :mod:`experiments.attacks.frontier.run`. Writes ``results/frontier/kpa_224.json``::

    python -m experiments.attacks.frontier.kpa_224 --data ../shared/data/cifar10-jpeg.tar.gz
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from experiments.attacks.frontier.run import CIPHERS, KEY_SEED, RESULTS, load_cifar, smallest_kpa
from vitlearnenc.ciphers import LinearPatchCipher, build_cipher
from vitlearnenc.utils.image_ops import resize_uint8


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--victims", type=int, default=20)
    args = parser.parse_args(argv)
    train, test = load_cifar(args.data)
    train_order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    test_order = torch.randperm(len(test), generator=torch.Generator().manual_seed(1))
    victims = resize_uint8(test[test_order[: args.victims]], 224)
    known = resize_uint8(train[train_order[300:312]], 224)  # disjoint from run.py's public set
    out = {"command": "python -m experiments.attacks.frontier.kpa_224 " + " ".join(sys.argv[1:])}
    for name in CIPHERS:
        cipher = build_cipher(name, 224, 16, seed=KEY_SEED)
        assert isinstance(cipher, LinearPatchCipher)
        print(name, flush=True)
        out[name] = smallest_kpa(cipher, known, victims, cipher.encrypt(victims))
        (RESULTS / "kpa_224.json").write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
