"""``vitlearnenc-attack``: attack a cipher and score the restorations (a Hydra app).

Examples::

    vitlearnenc-attack attack=fr cipher=pe data=cifar10_folder
    vitlearnenc-attack attack=itn cipher=proposed data=cifar10_folder key=seed key.seed=1
    vitlearnenc-attack -m attack=fr,itn,jigsaw cipher=pe,le,proposed data=cifar10_folder

The attacks are registered objects (:mod:`vitlearnenc.attacks.registry`); ``attack.kind``
names one. The run itself (victim step, attack, scoring, outputs) is
:func:`vitlearnenc.runs.attack.attack`; this module only composes the config and reports.
An attack that does not apply to the cipher writes ``metrics.json`` with
``applicable: false`` and its reason instead of failing, so that sweeps run through.
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
from vitlearnenc.runs.attack import attack
from vitlearnenc.utils.paths import check_conf_dir, register_resolvers

__all__ = ["attack", "main"]


@one_line_errors("vitlearnenc-attack")
def _main(cfg: DictConfig) -> float | None:
    configure_environment()
    with close_wandb():
        summary = attack(cfg)
    # the value a Hydra sweeper optimises: how well the attack restored the images
    return summary["ssim"]["mean"] if summary.get("applicable") else None


def main() -> None:
    """Console-script entry point."""
    reject_renamed_overrides("vitlearnenc-attack")
    register_resolvers()
    hydra.main(version_base="1.3", config_path=str(check_conf_dir()), config_name="attack")(_main)()
