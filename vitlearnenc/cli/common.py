"""Pieces shared by the Hydra entry points: error reporting, renamed overrides, wandb and
environment set-up. Config checks, key sources and the DataModule are library code in
:mod:`vitlearnenc.runs`."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from vitlearnenc.cli import EXIT_USAGE, USER_ERRORS, one_line
from vitlearnenc.runs.config import check_renamed_overrides
from vitlearnenc.runs.errors import ConfigError

#: errors of the Hydra apps that mean bad input or configuration, not a bug: the project's own
#: types (ConfigError, key, data and cipher errors), missing paths (OSError), bad or unset
#: ``???`` config values; anything else keeps its traceback
APP_USER_ERRORS: tuple[type[BaseException], ...] = (*USER_ERRORS, OmegaConfBaseException)

_Result = TypeVar("_Result")


def one_line_errors(
    prog: str,
) -> Callable[[Callable[[DictConfig], _Result]], Callable[[DictConfig], _Result]]:
    """Decorate a Hydra task function so that a user error ends a single run as one line
    ``PROG: error: REASON`` on stderr and exit status 2, like the argparse tools, instead of a
    traceback. ``HYDRA_FULL_ERROR=1`` keeps the traceback; multirun jobs are left to Hydra,
    which reports the failed job and stops the sweep.
    """

    def decorate(task: Callable[[DictConfig], _Result]) -> Callable[[DictConfig], _Result]:
        @functools.wraps(task)
        def run(cfg: DictConfig) -> _Result:
            try:
                return task(cfg)
            except Exception as error:
                reason = user_error(error)
                if reason is None or os.environ.get("HYDRA_FULL_ERROR") == "1" or _in_multirun():
                    raise
                print(
                    f"{prog}: error: {one_line(reason)} (HYDRA_FULL_ERROR=1 shows the traceback)",
                    file=sys.stderr,
                )
                raise SystemExit(EXIT_USAGE) from None

        return run

    return decorate


def reject_renamed_overrides(prog: str, argv: Sequence[str] | None = None) -> None:
    """Stop with ``PROG: error: img_size is now image_size: say image_size=32`` (exit 2) when a
    command-line override names a renamed key; Hydra alone would answer with a multi-line
    "Key 'img_size' is not in struct" that does not say the new name."""
    try:
        check_renamed_overrides(sys.argv[1:] if argv is None else argv)
    except ConfigError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None


def user_error(error: BaseException) -> BaseException | None:
    """The user error behind ``error`` (itself, or the project error that Hydra's
    ``instantiate`` wrapped into an ``InstantiationException``), or None for a bug."""
    if isinstance(error, InstantiationException) and error.__cause__ is not None:
        error = error.__cause__
    return error if isinstance(error, APP_USER_ERRORS) else None


def _in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


@contextlib.contextmanager
def close_wandb() -> Iterator[None]:
    """Close a wandb run on the way out (also on failure), so a failed multirun job cannot
    leave its run open for the next one."""
    try:
        yield
    finally:
        import sys

        wandb = sys.modules.get("wandb")
        if wandb is not None and getattr(wandb, "run", None) is not None:
            wandb.finish()


def configure_environment() -> None:
    """Offline wandb unless the user chose otherwise; quiet, deterministic library defaults."""
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
