"""``vitlearnenc-pack``: the data owner encrypts a dataset once into litdata shards.

Examples::

    vitlearnenc-pack --key owner.key --resize 224 ../shared/data/cifar10-jpeg.tar.gz shards/
    vitlearnenc-pack --cipher plain --val-fraction 0.1 images/ plain-shards/

The provider trains on the output with ``data=streaming data.root=OUT`` (``cipher=pre_encrypted`` for
encrypted shards). The work is :func:`vitlearnenc.data.shards.pack`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from vitlearnenc.cli import CliError, image_size_arg, positive_int_arg, run_cli
from vitlearnenc.data.shards import RESIZE_MODES, PackError, PackOptions, pack

PROG = "vitlearnenc-pack"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``vitlearnenc-pack``."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Pack a labelled image dataset (a folder or .tar/.tar.gz archive with "
        "train/<class>/* and test/<class>/*, or a folder holding torchvision's "
        "cifar-10-batches-py) into litdata shards: one item per image with the encrypted "
        "uint8 image at the training size (float32/float16, the key's storage dtype, for "
        "real-valued ciphers such as orthomix), its label and its name, plus a metadata file "
        "(cipher, sizes, dtype, key fingerprint, counts, classes; never the key). The output "
        "appears only when the pack is complete.",
    )
    parser.add_argument("source", type=Path, metavar="SRC", help="plain images to pack")
    parser.add_argument("output", type=Path, metavar="OUT", help="new output folder")
    parser.add_argument("--key", type=Path, metavar="KEY", help="key file from vitlearnenc-keygen")
    parser.add_argument(
        "--cipher",
        metavar="NAME",
        help="'plain' packs unencrypted images (for on-device encryption); with --key the "
        "key's cipher is used",
    )
    parser.add_argument(
        "--resize",
        type=image_size_arg,
        metavar="S",
        help="store every image at S (H or HxW; with --key, the key's size); without it "
        "an image of another size is an error",
    )
    parser.add_argument(
        "--resize-mode",
        choices=RESIZE_MODES,
        default="resize",
        help="'resize' stretches (bilinear, as the training pipeline); 'shorter-center-crop' "
        "keeps the aspect ratio and crops the centre (default: %(default)s)",
    )
    parser.add_argument(
        "--block-size", type=positive_int_arg, metavar="M", help="block size of plain shards"
    )
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=0.0,
        metavar="F",
        help="hold out this share of train as the val split (default: %(default)s)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the shuffle before packing and of the val split (default: %(default)s)",
    )
    parser.add_argument(
        "--no-shuffle", action="store_true", help="keep the sorted file order (no shuffle)"
    )
    parser.add_argument(
        "--workers",
        type=positive_int_arg,
        default=1,
        metavar="N",
        help="parallel worker processes (default: %(default)s)",
    )
    parser.add_argument(
        "--compression",
        choices=["zstd"],
        help="lossless litdata chunk compression (11-18 %% smaller for float ciphertexts here)",
    )
    parser.add_argument(
        "--chunk-bytes", default="64MB", metavar="B", help="chunk size (default: %(default)s)"
    )
    parser.add_argument(
        "--skip-bad", action="store_true", help="leave corrupt images out instead of stopping"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a finished pack")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Console script ``vitlearnenc-pack``; returns the exit status."""
    return run_cli(build_parser(), argv, _run, "; nothing was written to OUT")


def _run(args: argparse.Namespace) -> int:
    if not 0 <= args.val_fraction < 1:
        raise CliError(f"--val-fraction must be in [0, 1), got {args.val_fraction}")
    options = PackOptions(
        key_file=args.key,
        cipher=args.cipher,
        resize=args.resize,
        resize_mode=args.resize_mode,
        block_size=args.block_size,
        val_fraction=args.val_fraction,
        seed=None if args.no_shuffle else args.seed,
        num_workers=args.workers,
        compression=args.compression,
        chunk_bytes=args.chunk_bytes,
        skip_bad=args.skip_bad,
        overwrite=args.overwrite,
    )
    console = Console(stderr=True)
    bar = Progress(
        TextColumn("packing"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=args.quiet or not console.is_terminal,
    )
    with bar:
        task = bar.add_task("packing", total=None)
        try:
            metadata = pack(
                args.source,
                args.output,
                options,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
        except PackError as error:
            raise CliError(str(error)) from None
    if not args.quiet:
        counts = ", ".join(f"{split} {count}" for split, count in metadata.counts.items())
        print(
            f"{PROG}: packed {counts} images ({metadata.describe()}) into {args.output}",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":  # litdata's spawned workers re-import the main module
    sys.exit(main())
