"""``vitlearnenc-train``: train a classifier on encrypted images (a Hydra app).

Examples::

    vitlearnenc-train                                  # small ViT, CIFAR-10, fresh random key
    vitlearnenc-train cipher=plain                     # the plain baseline
    vitlearnenc-train -m cipher=plain,proposed key=seed key.seed=0,1,2
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from vitlearnenc.cli.common import (
    close_wandb,
    configure_environment,
    one_line_errors,
    reject_renamed_overrides,
)
from vitlearnenc.runs.train import train
from vitlearnenc.utils.paths import check_conf_dir, register_resolvers

__all__ = ["main", "train"]


@one_line_errors("vitlearnenc-train")
def _main(cfg: DictConfig) -> float | None:
    configure_environment()
    with close_wandb():
        metrics = train(cfg)
    # the value a Hydra sweeper optimises
    return metrics.get("test/acc", metrics.get("val/acc"))


def main() -> None:
    """Console-script entry point."""
    reject_renamed_overrides("vitlearnenc-train")
    register_resolvers()
    hydra.main(version_base="1.3", config_path=str(check_conf_dir()), config_name="train")(_main)()
