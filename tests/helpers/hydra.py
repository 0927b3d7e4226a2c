"""Compose the project's Hydra configs in tests, with every path sent to a temporary folder."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from vitlearnenc.utils.paths import CONF_DIR, register_resolvers


@contextmanager
def composed(
    config_name: str, overrides: list[str], tmp_path: Path, keep_hydra: bool = False
) -> Iterator[DictConfig]:
    """The composed config (as the app would see it) with HydraConfig set and outputs in
    ``tmp_path``; clears the global Hydra state afterwards. ``keep_hydra`` leaves the
    ``hydra`` node in, so that its interpolations of the job's settings (the launcher's
    ``${trainer.devices}``) resolve against the config."""
    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            config_name,
            overrides=[
                f"paths.log_dir={tmp_path / 'logs'}",
                f"paths.data_dir={tmp_path / 'data'}",
                *overrides,
            ],
            return_hydra_config=True,
        )
        run_dir = tmp_path / "run"
        run_dir.mkdir(parents=True, exist_ok=True)
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(run_dir)
            cfg.hydra.job.num = 0
        HydraConfig.instance().set_config(cfg)
        if not keep_hydra:
            with open_dict(cfg):
                del cfg["hydra"]
        try:
            yield cfg
        finally:
            GlobalHydra.instance().clear()
