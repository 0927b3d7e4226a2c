"""``vitlearnenc-predict``: label a folder of encrypted images with a trained checkpoint.

The provider's side: the folder was written by ``vitlearnenc-encrypt`` and this process holds
no key (``cipher=pre_encrypted``, the default). Writes ``predictions.csv`` (file, label, class,
confidence) to the run directory.

Example::

    vitlearnenc-predict ckpt_path=.../last.ckpt input_dir=encrypted_images/
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from vitlearnenc.cli.common import (
    configure_environment,
    one_line_errors,
    reject_renamed_overrides,
)
from vitlearnenc.runs.predict import predict
from vitlearnenc.utils.paths import check_conf_dir, register_resolvers

__all__ = ["main", "predict"]


@one_line_errors("vitlearnenc-predict")
def _main(cfg: DictConfig) -> None:
    configure_environment()
    predict(cfg)


def main() -> None:
    """Console-script entry point."""
    reject_renamed_overrides("vitlearnenc-predict")
    register_resolvers()
    hydra.main(version_base="1.3", config_path=str(check_conf_dir()), config_name="predict")(
        _main
    )()
