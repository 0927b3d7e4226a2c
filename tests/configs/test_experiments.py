"""Every experiment config composes and runs one fast_dev_run batch with a tiny model, so
that none of the full-scale configs rots."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.hydra import composed
from vitlearnenc.cli.train import train
from vitlearnenc.utils.paths import CONF_DIR

EXPERIMENTS = sorted(
    str(p.relative_to(CONF_DIR / "experiment").with_suffix(""))
    for p in (CONF_DIR / "experiment").rglob("*.yaml")
)
# tiny stand-ins of the full-scale networks (same family, same interfaces)
TINY_MODEL = {
    "vit": ["model.name=vit_micro", "model.patch_size=4"],
    "pyramidnet": ["model.name=pyramidnet_shakedrop_mini"],
    "resnet": ["model.name=resnet20_cifar"],
}


def tiny_overrides(model_name: str) -> list[str]:
    family = next(f for f in TINY_MODEL if model_name.startswith(f))
    return TINY_MODEL[family]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_runs_fast_dev_run(experiment: str, tmp_path: Path) -> None:
    common = [
        f"experiment={experiment}",
        "data=synthetic",
        "data.num_train=64",
        "data.num_test=16",
        "data.batch_size=8",
        "data.num_workers=0",
        "trainer=fast_dev_run",
        "trainer.accelerator=cpu",
        "trainer.precision=32-true",
        "callbacks=none",
        "image_size=32",
        "model.pretrained=false",
    ]
    with composed("train", common, tmp_path) as cfg:
        model_name = cfg.model.name
    with composed("train", [*common, *tiny_overrides(model_name)], tmp_path) as cfg:
        assert cfg.tags, "experiments set tags"
        metrics = train(cfg)
    assert "test/acc" in metrics
