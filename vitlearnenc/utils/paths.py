"""Where the project's files are: the source tree (for ``conf/``) of the installed package.

``conf/`` lives beside the package, not inside it, so the entry points need the project root;
the package is installed editable (``make install``), which keeps this path valid.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from omegaconf import OmegaConf

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONF_DIR = PROJECT_ROOT / "conf"
#: longest sweep sub-directory name kept verbatim (file systems allow 255 bytes per name)
MAX_DIRNAME_BYTES = 120


def short_dirname(name: str) -> str:
    """One directory name for a sweep job's override list: ``/`` becomes ``_`` (a swept
    ``experiment=paper/vit_b16_plain`` or a path value must not nest directories), and beyond
    :data:`MAX_DIRNAME_BYTES` the start is kept plus a hash of the whole, so that a sweep over
    many overrides still gets a unique name that the same overrides find again (resume), where
    Hydra's ``override_dirname`` alone can exceed 255 bytes."""
    name = name.replace("/", "_")
    encoded = name.encode()
    if len(encoded) <= MAX_DIRNAME_BYTES:
        return name
    digest = hashlib.sha256(encoded).hexdigest()[:12]
    start = encoded[: MAX_DIRNAME_BYTES - len(digest) - 1].decode(errors="ignore")
    return f"{start}-{digest}"


def register_resolvers() -> None:
    """Register ``${vitlearnenc.project_root:}`` and ``${vitlearnenc.short_dirname:NAME}`` for
    the configs (idempotent)."""
    if not OmegaConf.has_resolver("vitlearnenc.project_root"):
        OmegaConf.register_new_resolver("vitlearnenc.project_root", lambda: str(PROJECT_ROOT))
    if not OmegaConf.has_resolver("vitlearnenc.short_dirname"):
        OmegaConf.register_new_resolver("vitlearnenc.short_dirname", short_dirname)


def check_conf_dir() -> Path:
    """The config directory, or a clear error when the package was not installed editable."""
    if not (CONF_DIR / "train.yaml").is_file():
        raise FileNotFoundError(
            f"Hydra configs not found at {CONF_DIR}; install the project in editable mode from "
            "its source tree (make install, or pip install -e .)"
        )
    return CONF_DIR
