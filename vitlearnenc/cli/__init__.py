"""Command-line entry points (console scripts in ``pyproject.toml``); thin by design.

The data owner's tools (``vitlearnenc-keygen``, ``vitlearnenc-encrypt``,
``vitlearnenc-decrypt``) use argparse and share the helpers below: every user error ends as
one line ``PROG: error: REASON`` on stderr and exit status 2, like argparse's own usage
errors, never as a traceback.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence

from vitlearnenc.errors import VitlearnencError

#: exit status of user errors (argparse uses 2 for usage errors too)
EXIT_USAGE = 2
#: exit status after Ctrl-C (128 + SIGINT), as shells report it
EXIT_INTERRUPTED = 130


class CliError(VitlearnencError):
    """A user error found by a tool itself (arguments that argparse alone cannot judge)."""


#: exceptions that mean bad input, not a bug: reported in one line without a traceback. Only
#: the project's own types (:mod:`vitlearnenc.errors`) and OS errors of paths; a bare
#: ``ValueError`` from torch or numpy is a bug and keeps its traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (
    VitlearnencError,
    OSError,  # missing paths, permissions, full disk
)


def run_cli(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    body: Callable[[argparse.Namespace], int],
    interrupted_hint: str = "",
) -> int:
    """Parse ``argv`` and run ``body``, turning user errors into ``PROG: error: ...`` + 2.

    Python warnings raised meanwhile (e.g. a key file readable by others) are shown as
    ``PROG: warning: ...`` lines instead of Python's file/line format.

    Returns:
        The exit status: ``body``'s, 2 for user or usage errors, 0 after ``--help``, 130
        after Ctrl-C.
    """
    prog = parser.prog
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help (0) or a usage error (2), already printed
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = lambda message, *_args, **_kwargs: print(
            f"{prog}: warning: {one_line(message)}", file=sys.stderr
        )
        try:
            return body(args)
        except USER_ERRORS as error:
            print(f"{prog}: error: {one_line(error)}", file=sys.stderr)
            return EXIT_USAGE
        except KeyboardInterrupt:
            print(f"{prog}: interrupted{interrupted_hint}", file=sys.stderr)
            return EXIT_INTERRUPTED


def one_line(message: object) -> str:
    """``message`` as a single line (collapses newlines and runs of spaces)."""
    return " ".join(str(message).split())


def image_size_arg(text: str) -> tuple[int, int]:
    """argparse type for ``H`` or ``HxW`` (height first), e.g. ``224`` or ``32x48``."""
    parts = text.lower().split("x")
    try:
        size = tuple(int(part) for part in parts)
    except ValueError:
        size = ()
    if len(size) not in (1, 2) or min(size) <= 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an image size; use H or HxW with positive integers, e.g. 224 or 32x48"
        )
    return (size[0], size[-1])


def positive_int_arg(text: str) -> int:
    """argparse type for a positive integer."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value
