"""``vitlearnenc-keygen``: draw a cipher key and store it in a 0600 key file.

Run by the data owner. The key file is the secret: it holds the permutations themselves. The
tool reports only public facts about the key (fingerprint, key-space size), never its material.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vitlearnenc.ciphers import build_cipher, generate_key, get_cipher_class, list_ciphers, save_key
from vitlearnenc.cli import CliError, image_size_arg, positive_int_arg, run_cli

PROG = "vitlearnenc-keygen"

_EXAMPLES = """\
examples:
  vitlearnenc-keygen --cipher proposed --image-size 224 --block-size 16 --out owner.key
  vitlearnenc-keygen --cipher proposed --image-size 32 --block-size 4 --channel-mix \\
      --seed 0 --out experiment.key      # reproducible from the seed, NOT secret
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (public so that docs and tests can render ``--help``)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=textwrap.fill(
            "Draw a secret key for one cipher and one image geometry and write it to a key "
            "file (JSON, mode 0600). Keep the file private and backed up: whoever holds it "
            "can decrypt the images, and losing it loses access to them. The key is drawn "
            "from the operating system's secure random source unless --seed is given.",
            width=79,
        ),
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--cipher",
        required=True,
        choices=[name for name in list_ciphers() if not get_cipher_class(name).pre_encrypted],
        help="the cipher the key is for (the train app's cipher=NAME); 'proposed' is block "
        "scrambling + sub-block pixel shuffling for ViTs",
    )
    parser.add_argument(
        "--method", action=_RenamedFlag, metavar="NAME", help="old name of --cipher (refused)"
    )
    parser.add_argument(
        "--image-size",
        required=True,
        type=image_size_arg,
        metavar="H[xW]",
        help="size of the images the key encrypts, height first (224 means 224x224); images "
        "of other sizes must be resized to it (vitlearnenc-encrypt --resize)",
    )
    parser.add_argument(
        "--block-size",
        required=True,
        type=positive_int_arg,
        metavar="B",
        help="block size in pixels; must divide both image sides and equal the ViT patch "
        "size for the proposed method (e.g. 16 for ViT-B/16)",
    )
    parser.add_argument(
        "--seed",
        type=_seed_arg,
        metavar="S",
        help="derive the key reproducibly from this non-negative integer instead of the "
        "secure random source; anyone who knows S can recreate the key, so use it only "
        "for experiments",
    )
    parser.add_argument(
        "--out",
        required=True,
        type=Path,
        metavar="KEY",
        help="key file to write (an existing file is never overwritten)",
    )
    options = parser.add_argument_group("cipher options")
    options.add_argument(
        "--channel-mix",
        action="store_true",
        help="proposed method: shuffle the C*(B/2)^2 values of a sub-block instead of whole "
        "pixels (larger key space; colour channels no longer move together)",
    )
    options.add_argument(
        "--option",
        action="append",
        default=[],
        type=_option_arg,
        metavar="NAME=VALUE",
        help="any other option of the chosen cipher (repeatable); VALUE is read as JSON "
        "when it parses (3, true, 0.5), else as text, e.g. --option channels=1",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Console script ``vitlearnenc-keygen``; returns the exit status."""
    return run_cli(build_parser(), argv, _keygen)


def _keygen(args: argparse.Namespace) -> int:
    if args.out.exists():
        raise CliError(
            f"{args.out} exists; refusing to overwrite a key file (losing a key loses the data "
            "encrypted with it); choose another --out or move the old file away"
        )
    options: dict[str, Any] = dict(args.option)
    if args.channel_mix:
        options["channel_mix"] = True
    try:
        key = generate_key(args.cipher, args.image_size, args.block_size, args.seed, **options)
    except TypeError as error:  # an option the cipher does not take
        raise CliError(f"{error}; see the {args.cipher!r} cipher's documentation") from None
    except ValueError as error:  # geometry the cipher refuses (e.g. an odd block size)
        raise CliError(str(error)) from None
    bits = build_cipher(key.method, key=key).key_space_bits()
    save_key(key, args.out)
    height, width = key.image_size
    print(
        f"wrote {args.out} (mode 600): {key.method} key for {height}x{width} images, "
        f"block size {key.block_size}, fingerprint {key.fingerprint}, key space "
        f"{bits:.1f} bits (about 10^{bits * math.log10(2):.0f} keys)"
    )
    if args.seed is not None:
        print(
            f"{PROG}: warning: this key was derived from --seed {args.seed}; anyone who knows "
            "the seed can recreate it, so it is reproducible but NOT secret (omit --seed for "
            "a secret key)",
            file=sys.stderr,
        )
    return 0


class _RenamedFlag(argparse.Action):
    """``--method`` is now ``--cipher`` (one name per concept with the apps' ``cipher=``): the
    old flag is a usage error that names the new one."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        parser.error(f"{option_string} is now --cipher: say --cipher {values}")


def _seed_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a non-negative integer")
    return value


def _option_arg(text: str) -> tuple[str, Any]:
    name, sep, raw = text.partition("=")
    if not sep or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE (e.g. channels=1)")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return name, value
