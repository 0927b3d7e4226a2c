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


#: the synthetic data of a run that trains in seconds on the CPU
SYNTHETIC_DATA = {"num_train": 256, "num_test": 64, "batch_size": 32}


def tiny_run(data: str = "synthetic", callbacks: str = "none", **data_options: object) -> list[str]:
    """Overrides for a vit_micro run that trains in seconds on the CPU, quietly: ``data`` with
    ``data_options`` (``data.<name>=<value>``; synthetic data: 256 training and 64 test images,
    batch 32, unless given), no loader workers, the ``callbacks`` group, no progress bar or model
    summary. Tests add the cipher, key and trainer settings they are about."""
    options = (SYNTHETIC_DATA if data == "synthetic" else {}) | data_options | {"num_workers": 0}
    return [
        f"data={data}",
        *(f"data.{name}={value}" for name, value in options.items()),
        "model=vit_micro",
        f"callbacks={callbacks}",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
    ]
