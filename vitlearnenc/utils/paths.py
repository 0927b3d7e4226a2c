"""Where the project's files are: the source tree (for ``conf/``) of the installed package.

``conf/`` lives beside the package, not inside it, so the entry points need the project root;
the package is installed editable (``make install``), which keeps this path valid.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONF_DIR = PROJECT_ROOT / "conf"


def register_resolvers() -> None:
    """Register ``${vitlearnenc.project_root:}`` for the configs (idempotent)."""
    if not OmegaConf.has_resolver("vitlearnenc.project_root"):
        OmegaConf.register_new_resolver("vitlearnenc.project_root", lambda: str(PROJECT_ROOT))


def check_conf_dir() -> Path:
    """The config directory, or a clear error when the package was not installed editable."""
    if not (CONF_DIR / "train.yaml").is_file():
        raise FileNotFoundError(
            f"Hydra configs not found at {CONF_DIR}; install the project in editable mode from "
            "its source tree (make install, or pip install -e .)"
        )
    return CONF_DIR
