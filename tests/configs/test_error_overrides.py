"""Every configuration error names an override that Hydra accepts and that fixes the run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers.hydra import composed
from vitlearnenc.cli.common import user_error
from vitlearnenc.errors import VitlearnencError
from vitlearnenc.runs.build import build_datamodule
from vitlearnenc.runs.config import validate_config

OVERRIDE = re.compile(r"\b((?:[a-z_]+\.)*[a-z_]+)=([\w.]+)")


def _first_error(overrides: list[str], tmp_path: Path) -> str:
    """The one-line reason the app would print (Hydra wraps constructor errors)."""
    with composed("train", overrides, tmp_path) as cfg, pytest.raises(Exception) as caught:
        validate_config(cfg)
        build_datamodule(cfg, tmp_path / "run").setup("fit")
    error = user_error(caught.value)
    assert isinstance(error, VitlearnencError), caught.value
    return str(error)


@pytest.mark.parametrize(
    "broken",
    [
        ["cipher=pre_encrypted", "key=none", "data.native_size=16", "image_size=32"],
        ["cipher=proposed", "key=seed", "model=vit_micro", "cipher.block_size=8"],
        ["cipher=le", "key=seed", "model=vit_micro", "model.key_adapt=true", "cipher.block_size=4"],
    ],
    ids=["pre-encrypted-size", "patch-alignment", "key-adapt-cipher"],
)
def test_the_suggested_override_composes_and_fixes_the_run(
    broken: list[str], tmp_path: Path
) -> None:
    base = ["data=synthetic", "data.num_train=16", "data.num_test=8", *broken]
    message = _first_error(base, tmp_path / "broken")
    suggested = [f"{name}={value}" for name, value in OVERRIDE.findall(message)]
    assert suggested, message
    fix = next(s for s in suggested if s not in base)  # the first one that is not the problem
    with composed("train", [*base, fix], tmp_path / "fixed") as cfg:  # Hydra accepts the key
        validate_config(cfg)
        build_datamodule(cfg, tmp_path / "fixed" / "run").setup("fit")
