"""Error policy: the project's own errors end a run in one line with exit status 2; anything
else (a bug, e.g. a ValueError inside torch or numpy) keeps its traceback."""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from vitlearnenc.ciphers import KeyMismatchError
from vitlearnenc.cli import run_cli
from vitlearnenc.cli.common import one_line_errors
from vitlearnenc.errors import InputError, VitlearnencError
from vitlearnenc.runs.errors import ConfigError

PACKAGE = Path(__file__).resolve().parents[2] / "vitlearnenc"


def _task(error: BaseException):  # noqa: ANN202 - a Hydra task function
    @one_line_errors("vitlearnenc-test")
    def task(cfg: object) -> None:
        raise error

    return task


@pytest.mark.parametrize(
    "error",
    [
        InputError("image_size=30 is odd"),
        ConfigError("set cipher.block_size=4"),
        FileNotFoundError(2, "x"),
    ],
)
def test_project_errors_are_one_line(
    error: BaseException, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        _task(error)(OmegaConf.create({}))
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("vitlearnenc-test: error: ") and "Traceback" not in err


@pytest.mark.parametrize("error", [ValueError("a bug in numpy"), KeyError("k"), RuntimeError("r")])
def test_other_errors_keep_their_traceback(error: BaseException) -> None:
    with pytest.raises(type(error)):
        _task(error)(OmegaConf.create({}))


def test_argparse_tools_follow_the_same_policy(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="vitlearnenc-tool")

    def mismatch(args: argparse.Namespace) -> int:
        raise KeyMismatchError("the key was made for 32x32 images")

    def bug(args: argparse.Namespace) -> int:
        raise ValueError("a bug")

    assert run_cli(parser, [], mismatch) == 2
    assert capsys.readouterr().err.startswith("vitlearnenc-tool: error: the key was made")
    with pytest.raises(ValueError, match="a bug"):
        run_cli(parser, [], bug)


def test_project_errors_keep_their_builtin_bases() -> None:
    assert issubclass(InputError, ValueError) and issubclass(ConfigError, VitlearnencError)


def test_no_assert_statements_for_runtime_checks() -> None:
    found = [
        f"{path.relative_to(PACKAGE)}:{node.lineno}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Assert)
    ]
    assert not found, "python -O strips asserts; raise a project error instead: " + ", ".join(found)
