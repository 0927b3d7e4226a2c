"""Where the victim's (or data owner's) key of a run comes from: ``cfg.key``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from vitlearnenc.ciphers import get_cipher_class, load_key, save_key
from vitlearnenc.ciphers.base import parse_image_size
from vitlearnenc.ciphers.registry import generate_key
from vitlearnenc.runs.config import plain_dict
from vitlearnenc.runs.errors import ConfigError
from vitlearnenc.utils.logging import RankedLogger

log = RankedLogger(__name__)

KEY_FILE_NAME = "key.json"


def resolve_key_source(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Turn ``cfg.key`` into the DataModule's key-source arguments (``key_file``/``key_seed``).

    ``key=random`` draws a key from the OS CSPRNG once and stores it (mode 0600) as
    ``<run_dir>/key.json``; a resumed run or another DDP rank in the same run directory
    reuses that file, so every rank and every restart sees the same key. Nothing returned
    here is key material.
    """
    cipher_cls = get_cipher_class(cfg.cipher.name)
    source = cfg.key.source
    if not cipher_cls.keyed:
        return {}
    image_size = parse_image_size(cfg.image_size)
    block = int(cfg.cipher.block_size)
    if source == "none":
        raise ConfigError(
            f"cipher={cfg.cipher.name} needs a key: use key=random, key=seed (key.seed=N) or "
            "key=file key.path=KEY"
        )
    if source == "seed":
        if cfg.key.seed is None:
            raise ConfigError("key=seed needs key.seed=<non-negative integer>")
        return {"key_seed": int(cfg.key.seed)}
    if source == "file":
        path = Path(cfg.key.path).expanduser()
        load_key(path, method=cfg.cipher.name, image_size=image_size, block_size=block)
        return {"key_file": str(path.resolve())}
    if source == "random":
        path = run_dir / KEY_FILE_NAME
        if path.exists():
            load_key(path, method=cfg.cipher.name, image_size=image_size, block_size=block)
            log.info(f"Reusing this run's key file {path}")
        else:
            key = generate_key(cfg.cipher.name, image_size, block, **cfg.cipher.options)
            save_key(key, path)
            log.info(
                f"New random key (fingerprint {key.fingerprint}) written to {path} (mode 0600)"
            )
        return {"key_file": str(path)}
    raise ConfigError(f"unknown key.source {source!r}; choose random, seed, file or none")


def victim_key(cfg: DictConfig, key_source: dict[str, Any]) -> Any:
    """The researcher's copy of the key that :func:`resolve_key_source` chose (a
    :class:`~vitlearnenc.ciphers.CipherKey`, or None for unkeyed ciphers), for scoring an
    attack's key estimate after the attack has run."""
    size, block = int(cfg.image_size), int(cfg.cipher.block_size)
    if "key_file" in key_source:
        return load_key(key_source["key_file"], cfg.cipher.name, size, block)
    if "key_seed" in key_source:
        options = plain_dict(cfg.cipher.options, "cipher.options")
        return generate_key(cfg.cipher.name, size, block, seed=key_source["key_seed"], **options)
    return None
