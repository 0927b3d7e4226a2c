"""``vitlearnenc-eval``: evaluate a checkpoint on a dataset encrypted with a cipher and key.

Example::

    vitlearnenc-eval ckpt_path=logs/train/runs/RUN/checkpoints/last.ckpt \
        key=file key.path=logs/train/runs/RUN/key.json data=cifar10_folder
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
from vitlearnenc.runs.evaluate import evaluate
from vitlearnenc.utils.paths import check_conf_dir, register_resolvers

__all__ = ["evaluate", "main"]


@one_line_errors("vitlearnenc-eval")
def _main(cfg: DictConfig) -> float | None:
    configure_environment()
    with close_wandb():
        metrics = evaluate(cfg)
    return metrics.get(f"{cfg.split}/acc")


def main() -> None:
    """Console-script entry point."""
    reject_renamed_overrides("vitlearnenc-eval")
    register_resolvers()
    hydra.main(version_base="1.3", config_path=str(check_conf_dir()), config_name="eval")(_main)()
