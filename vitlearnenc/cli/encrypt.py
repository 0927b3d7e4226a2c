"""``vitlearnenc-encrypt`` and ``vitlearnenc-decrypt``: apply a key to image files.

``IN`` is one image file or a folder tree; ``OUT`` mirrors it with lossless PNGs (same relative
paths, suffix ``.png``). Real-valued ciphertexts (orthomix) do not fit 8-bit images: they are
written as ``.npy`` arrays ``(C, H, W)`` of the key's storage dtype (float32 or float16, see
:mod:`vitlearnenc.ciphers.orthomix`), and ``vitlearnenc-decrypt`` reads those back into PNGs.
Run by the data owner before handing images to a provider, who then trains with
``cipher=pre_encrypted`` on the encrypted folder.

The folder plan, marker checks and batch converter are library code
(:mod:`vitlearnenc.utils.folder_jobs`); this module parses, streams the batches and reports.

Design for large folders (tens of thousands of small images):

- **Streaming.** The sorted file list is processed in batches of ``--batch-size`` images;
  only one batch is in memory, and each batch is one gather through the cipher.
- **Checked up front.** Before anything is written, every pending file's header is read to
  check its size against the key, so a wrongly sized image fails the run at once instead of
  after hours of work. Undecodable pixel data is found when its batch is read; that batch
  writes nothing and the run stops (or, with ``--skip-bad``, skips the file and goes on).
- **Resumable.** Every output is written to a temporary file and renamed, so an output that
  exists is complete. A rerun skips existing outputs (``--overwrite`` redoes them) and removes
  temporary files that a killed run left behind. Outputs of batches finished before a failure
  or interruption are kept on purpose: rerunning the same command continues from there.
- **Marked.** A folder OUT gets a hidden marker ``.vitlearnenc.json`` (method, image size,
  block size, key fingerprint, ciphertext dtype and shape; no key material) just before its
  first image. It
  stops a rerun with another key from mixing two keys in one folder, stops encrypting an
  encrypted folder again, tells ``vitlearnenc-decrypt`` which key a folder needs, and lets
  the training data modules refuse a keyed cipher on encrypted images.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from vitlearnenc.ciphers import build_cipher, load_key
from vitlearnenc.cli import image_size_arg, positive_int_arg, run_cli
from vitlearnenc.utils.folder_jobs import Converter, Job, check_markers, plan_jobs
from vitlearnenc.utils.imagefiles import IMAGE_EXTENSIONS, ImageReadError, remove_stale_temps
from vitlearnenc.utils.markers import write_marker

PROGS = {"encrypt": "vitlearnenc-encrypt", "decrypt": "vitlearnenc-decrypt"}
_RESUME_HINT = "; finished files are complete: rerun the same command to continue"


def build_parser(direction: str) -> argparse.ArgumentParser:
    """The argument parser of ``vitlearnenc-encrypt`` (``direction="encrypt"``) or
    ``vitlearnenc-decrypt`` (``"decrypt"``)."""
    encrypting = direction == "encrypt"
    description = (
        "Encrypt images with a key made by vitlearnenc-keygen. IN is an image file or a "
        "folder tree (searched recursively for "
        + ", ".join(sorted(ext.lstrip(".") for ext in IMAGE_EXTENSIONS))
        + "; hidden files are skipped); OUT mirrors it with lossless PNGs of the same "
        "relative names (.npy float arrays of the key's storage dtype for real-valued "
        "ciphers such as orthomix). Grayscale, palette and RGBA images are converted to RGB "
        "(alpha is dropped). Existing outputs are skipped, so an interrupted run is resumed by "
        "running the same command again."
        if encrypting
        else "Decrypt images that vitlearnenc-encrypt made, with the same key. IN is a PNG "
        "file (.npy for real-valued ciphers such as orthomix) or a folder tree of them; OUT "
        "mirrors it with lossless PNGs. Existing outputs "
        "are skipped, so an interrupted run is resumed by running the same command again."
    )
    parser = argparse.ArgumentParser(prog=PROGS[direction], description=description)
    parser.add_argument(
        "--key", required=True, type=Path, metavar="KEY", help="key file from vitlearnenc-keygen"
    )
    if encrypting:
        parser.add_argument(
            "--resize",
            type=image_size_arg,
            metavar="S",
            help="resize every image to S (H or HxW, must be the key's image size) before "
            "encrypting, bilinear and antialiased like the training pipeline; without it an "
            "image whose size differs from the key's is an error",
        )
    parser.add_argument(
        "input", type=Path, metavar="IN", help="image file, or folder searched recursively"
    )
    parser.add_argument(
        "output",
        type=Path,
        metavar="OUT",
        help="output .png file (.npy when encrypting with a real-valued cipher), or an "
        "existing folder, for a file IN; output folder for a folder IN, which must not lie "
        "inside IN",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="redo outputs that already exist (by default they are kept and skipped)",
    )
    parser.add_argument(
        "--skip-bad",
        action="store_true",
        help="skip unreadable or corrupt images with a warning at the end instead of stopping "
        "at the first one",
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int_arg,
        default=256,
        metavar="N",
        help="images processed (and held in memory) at a time (default: %(default)s)",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="no progress bar or summary; errors still shown"
    )
    return parser


def main_encrypt(argv: Sequence[str] | None = None) -> int:
    """Console script ``vitlearnenc-encrypt``; returns the exit status."""
    return run_cli(build_parser("encrypt"), argv, lambda a: _run(a, "encrypt"), _RESUME_HINT)


def main_decrypt(argv: Sequence[str] | None = None) -> int:
    """Console script ``vitlearnenc-decrypt``; returns the exit status."""
    return run_cli(build_parser("decrypt"), argv, lambda a: _run(a, "decrypt"), _RESUME_HINT)


@dataclass
class _Tally:
    """Counts for the closing summary."""

    done: int = 0
    existing: int = 0
    stale_temps: int = 0
    bad: list[str] = field(default_factory=list)

    def record_bad(self, error: ImageReadError) -> None:
        self.bad.append(str(error))


def _run(args: argparse.Namespace, direction: str) -> int:
    prog = PROGS[direction]
    key = load_key(args.key)
    converter = Converter(
        build_cipher(key.method, key=key), direction, getattr(args, "resize", None)
    )
    folders = args.input.is_dir()
    if folders:
        check_markers(
            args.input, args.output, key, direction, args.overwrite, converter.cipher_dtype
        )
    jobs = plan_jobs(args.input, args.output, converter.input_suffixes, converter.output_suffix)
    tally = _Tally()
    if args.input.is_dir() and args.output.is_dir():
        tally.stale_temps = remove_stale_temps(args.output)
    pending = [job for job in jobs if args.overwrite or not job.target.exists()]
    tally.existing = len(jobs) - len(pending)
    pending = _check_headers(pending, converter, args.skip_bad, tally)

    console = Console(stderr=True)
    progress = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=args.quiet or not args.input.is_dir() or not console.is_terminal,
    )
    # marked just before its first image, so that a run failing earlier writes nothing
    unmarked = folders and direction == "encrypt"
    with progress:
        task = progress.add_task(f"{direction}ing", total=len(pending))
        for batch in _batches(pending, args.batch_size):
            readable, images = _read_batch(batch, converter, args.skip_bad, tally)
            if not readable:
                continue
            converted = converter(images)
            if unmarked:
                write_marker(args.output, key, converter.cipher_dtype, tuple(converted.shape[1:]))
                unmarked = False
            for job, image in zip(readable, converted, strict=True):
                converter.write(image, job.target)
                tally.done += 1
                progress.advance(task)

    if tally.bad:
        print(
            f"{prog}: warning: skipped {len(tally.bad)} unreadable image(s); first: {tally.bad[0]}",
            file=sys.stderr,
        )
    if not args.quiet:
        print(_summary(prog, direction, args.output, tally), file=sys.stderr)
    return 0


def _check_headers(
    jobs: list[Job], converter: Converter, skip_bad: bool, tally: _Tally
) -> list[Job]:
    """Jobs whose headers are readable and of a size (and dtype) the key accepts."""
    usable = []
    for job in jobs:
        try:
            converter.check_header(job.source)
        except ImageReadError as error:
            if not skip_bad:
                raise _with_fix(error) from None
            tally.record_bad(error)
            continue
        usable.append(job)
    return usable


def _read_batch(
    batch: list[Job], converter: Converter, skip_bad: bool, tally: _Tally
) -> tuple[list[Job], list[torch.Tensor]]:
    """Decode a batch (all of it before anything is written, so a bad file writes nothing)."""
    readable, images = [], []
    for job in batch:
        try:
            images.append(converter.read(job.source))
        except ImageReadError as error:
            if not skip_bad:
                raise _with_fix(error) from None
            tally.record_bad(error)
            continue
        readable.append(job)
    return readable, images


def _batches(jobs: list[Job], size: int) -> Iterator[list[Job]]:
    for start in range(0, len(jobs), size):
        yield jobs[start : start + size]


def _with_fix(error: ImageReadError) -> ImageReadError:
    return ImageReadError(f"{error}; replace or remove it, or pass --skip-bad")


def _summary(prog: str, direction: str, output: Path, tally: _Tally) -> str:
    parts = [f"{prog}: {direction}ed {tally.done} image(s) into {output}"]
    if tally.existing:
        parts.append(f"kept {tally.existing} existing output(s) (--overwrite redoes them)")
    if tally.stale_temps:
        parts.append(f"removed {tally.stale_temps} temporary file(s) of an interrupted run")
    return "; ".join(parts)
