"""A toy cipher defined here only (no other file): registered, it gets keys, key files, the
attack pipeline and the ViT key-adaptation checks from its capabilities alone.

It stands for the CONTRIBUTING.md example "add a cipher": one class with ``@register_cipher``,
its capabilities and a gather plan (plus, in the project, a ``conf/cipher/*.yaml`` entry;
here Hydra overrides take its place).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.helpers.hydra import composed
from vitlearnenc.ciphers import (
    CipherKey,
    GatherPlan,
    IndexCipher,
    build_cipher,
    list_ciphers,
    load_key,
    register_cipher,
    registry,
    save_key,
)
from vitlearnenc.ciphers.base import block_grid_index, check_block_grid
from vitlearnenc.ciphers.keys import KeyRNG
from vitlearnenc.ciphers.validation import check_fields, check_geometry, reject_unknown_options
from vitlearnenc.cli.attack import attack
from vitlearnenc.runs.config import validate_config
from vitlearnenc.runs.errors import ConfigError


class BlockRollCipher(IndexCipher):
    """Toy: every block moves ``shift`` places along the row-major block order.

    Key field ``shift`` (length 1): encrypted block i = plain block (i + shift) mod N.
    """

    name = "toy_block_roll"
    #: a block permutation with the identity as the shared in-block map
    absorbable_by_vit = True

    @classmethod
    def generate_key(
        cls, image_size: tuple[int, int], block_size: int, rng: KeyRNG, **options: Any
    ) -> CipherKey:
        reject_unknown_options(cls.name, options)
        grid_h, grid_w = check_block_grid(image_size, block_size)
        return CipherKey(
            cls.name, image_size, block_size, {"shift": rng.integers(grid_h * grid_w, 1)}
        )

    @classmethod
    def validate_key(cls, key: CipherKey) -> None:
        check_fields(key, {"shift"})
        check_geometry(key)

    def build_plan(self, channels: int) -> GatherPlan:
        blocks = block_grid_index(*self.image_size, self.block_size)
        source = np.roll(blocks, -int(self.key["shift"][0]), axis=0)
        index = np.empty(blocks.size, dtype=np.int64)
        index[blocks.ravel()] = source.ravel()
        return GatherPlan(index, None, spatial=True)

    def key_space_bits(self) -> float:
        return math.log2(len(block_grid_index(*self.image_size, self.block_size)))

    def is_patch_aligned(self, patch_size: int) -> bool:
        return self.block_size % patch_size == 0


@pytest.fixture
def toy_cipher() -> Iterator[None]:
    register_cipher(BlockRollCipher)
    yield
    registry._REGISTRY.pop(BlockRollCipher.name, None)


TOY = ["cipher=plain", f"cipher.name={BlockRollCipher.name}", "key=seed", "key.seed=3"]
TINY_ATTACK = [
    "data=synthetic",
    "data.native_size=16",
    "data.num_train=32",
    "data.num_test=16",
    "image_size=16",
    "attack.num_victim_images=8",
    "attack.grid_images=2",
    "logger=none",
]


def test_keys_files_and_round_trip(toy_cipher: None, tmp_path: Path) -> None:
    assert BlockRollCipher.name in list_ciphers()
    cipher = build_cipher(BlockRollCipher.name, 16, 4, seed=1)
    save_key(cipher.key, tmp_path / "toy.key")
    again = build_cipher(BlockRollCipher.name, key=load_key(tmp_path / "toy.key"))
    images = torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8)
    encrypted = again.encrypt(images)
    assert torch.equal(encrypted, cipher.encrypt(images)) and torch.equal(
        cipher.decrypt(encrypted), images
    )
    shift = int(cipher.key["shift"][0])
    assert torch.equal(
        encrypted[..., :4, :4], images[..., shift // 4 * 4 :, shift % 4 * 4 :][..., :4, :4]
    )


@pytest.mark.parametrize(("kind", "applicable"), [("fr", True), ("jigsaw", False), ("kpa", False)])
def test_the_attack_pipeline_takes_it_by_capability(
    toy_cipher: None, tmp_path: Path, kind: str, applicable: bool
) -> None:
    with composed("attack", [f"attack={kind}", *TOY, *TINY_ATTACK], tmp_path) as cfg:
        summary = attack(cfg)
    assert summary["applicable"] is applicable and summary["cipher"] == BlockRollCipher.name
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["applicable"] is applicable
    if not applicable:
        assert BlockRollCipher.name in summary["reason"]


def test_key_adaptation_is_allowed_because_it_is_absorbable(
    toy_cipher: None, tmp_path: Path
) -> None:
    overrides = [*TOY, "model=vit_micro", "model.key_adapt=true", "data=synthetic"]
    with composed("train", overrides, tmp_path) as cfg:
        validate_config(cfg)  # accepted: absorbable_by_vit
    misaligned = [*overrides, "cipher.block_size=2"]
    with (
        composed("train", misaligned, tmp_path) as cfg,
        pytest.warns(UserWarning, match="not aligned"),
        pytest.raises(ConfigError, match="cipher.block_size=4"),
    ):
        validate_config(cfg)  # a warning for misaligned blocks; key adaptation needs M = P
    with (
        composed(
            "train", ["cipher=le", "model=vit_micro", "model.key_adapt=true"], tmp_path
        ) as cfg,
        pytest.raises(ConfigError, match=f"{BlockRollCipher.name}"),
    ):
        validate_config(cfg)  # the message lists the absorbable ciphers, the toy among them
