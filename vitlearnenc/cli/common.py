"""Pieces shared by the Hydra entry points: config checks, key sources, loggers, run summary."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning import Callback
from lightning.fabric.plugins.environments import ClusterEnvironment, SLURMEnvironment
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from vitlearnenc.ciphers import get_cipher_class, load_key, save_key
from vitlearnenc.ciphers.base import check_block_grid, parse_image_size
from vitlearnenc.ciphers.registry import generate_key
from vitlearnenc.cli import EXIT_USAGE, USER_ERRORS, one_line
from vitlearnenc.utils.logging import RankedLogger

log = RankedLogger(__name__)

KEY_FILE_NAME = "key.json"


class ConfigError(ValueError):
    """A configuration that cannot work; raised before any data is loaded."""


#: errors of the Hydra apps that mean bad input or configuration, not a bug: ConfigError, key
#: and data errors (ValueError subclasses), missing paths (OSError), unset ``???`` values
APP_USER_ERRORS: tuple[type[BaseException], ...] = (
    *USER_ERRORS,
    ValueError,
    OmegaConfBaseException,
)

_Result = TypeVar("_Result")


def one_line_errors(
    prog: str,
) -> Callable[[Callable[[DictConfig], _Result]], Callable[[DictConfig], _Result]]:
    """Decorate a Hydra task function so that a user error ends a single run as one line
    ``PROG: error: REASON`` on stderr and exit status 2, like the argparse tools, instead of a
    traceback. ``HYDRA_FULL_ERROR=1`` keeps the traceback; multirun jobs are left to Hydra,
    which reports the failed job and stops the sweep.
    """

    def decorate(task: Callable[[DictConfig], _Result]) -> Callable[[DictConfig], _Result]:
        @functools.wraps(task)
        def run(cfg: DictConfig) -> _Result:
            try:
                return task(cfg)
            except APP_USER_ERRORS as error:
                if os.environ.get("HYDRA_FULL_ERROR") == "1" or _in_multirun():
                    raise
                print(
                    f"{prog}: error: {one_line(error)} (HYDRA_FULL_ERROR=1 shows the traceback)",
                    file=sys.stderr,
                )
                raise SystemExit(EXIT_USAGE) from None

        return run

    return decorate


def _in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _is_vit(model_cfg: DictConfig | dict) -> bool:
    return str(model_cfg.get("name", "")).startswith("vit")


def validate_config(cfg: DictConfig) -> None:
    """Fail fast, before data is loaded, on combinations that cannot work.

    Checks the cipher name, that its block size divides the model's input size, that a
    block-scrambling cipher on a ViT uses block size = patch size, and that ``key_adapt`` is
    asked for only where the key can be absorbed into the weights.
    """
    cipher_cls = get_cipher_class(cfg.cipher.name)  # clear error listing the known names
    image_size = parse_image_size(cfg.img_size)
    block = int(cfg.cipher.block_size)
    try:
        check_block_grid(image_size, block)
    except ValueError as error:
        raise ConfigError(
            f"cipher.block_size={block} does not fit img_size={cfg.img_size}: {error}"
        ) from None
    model = cfg.get("model") or {}
    patch = model.get("patch_size")
    if _is_vit(model) and patch is not None and cipher_cls.keyed:
        if image_size[0] % patch or image_size[1] % patch:
            raise ConfigError(
                f"img_size={cfg.img_size} is not a multiple of model.patch_size={patch}"
            )
        cipher = cipher_cls(
            generate_key(cfg.cipher.name, image_size, block, seed=0, **cfg.cipher.options)
        )
        if not cipher.is_patch_aligned(int(patch)):
            message = (
                f"cipher {cfg.cipher.name} with block size {block} is not aligned with the ViT's "
                f"patch size {patch}: set cipher.block_size={patch} (or model.patch_size={block})"
            )
            if cfg.cipher.name == "proposed":
                raise ConfigError(message)
            warnings.warn(message, stacklevel=2)
    if model.get("key_adapt"):
        if not _is_vit(model):
            raise ConfigError("model.key_adapt=true needs a ViT model (its weights absorb the key)")
        # issue 16: the linear patch ciphers (orthomix) are absorbable too; to become the
        # absorbable_by_vit capability check of the cipher registry refactor
        if not getattr(cipher_cls, "absorbable_by_vit", cfg.cipher.name == "proposed"):
            raise ConfigError(
                f"model.key_adapt=true needs cipher=proposed, orthomix or orthomix_sub (got "
                f"{cfg.cipher.name}): only block scrambling + one shared map of every patch "
                "can be absorbed into a ViT's weights"
            )
        data = cfg.get("data") or {}
        stats = [*data.get("mean", [0.5]), *data.get("std", [0.5])]
        if hasattr(cipher_cls, "patch_matrix") and any(float(v) != 0.5 for v in stats):
            raise ConfigError(
                f"model.key_adapt=true with cipher={cfg.cipher.name} absorbs the normalisation "
                "mean = std = 0.5; set data.mean=[0.5,0.5,0.5] data.std=[0.5,0.5,0.5]"
            )


def check_slurm_layout(cfg: DictConfig, environ: dict[str, str] | None = None) -> None:
    """Under SLURM, one task per device: ``tasks_per_node`` must equal ``trainer.devices``
    and the job's node count ``trainer.num_nodes``, or Lightning's DDP would hang or
    oversubscribe GPUs."""
    env = os.environ if environ is None else environ
    tasks = env.get("SLURM_NTASKS_PER_NODE")
    nodes = env.get("SLURM_JOB_NUM_NODES") or env.get("SLURM_NNODES")
    devices = cfg.trainer.get("devices", 1)
    if tasks is not None and isinstance(devices, int) and int(tasks) != devices:
        raise ConfigError(
            f"SLURM runs {tasks} task(s) per node but trainer.devices={devices}; set "
            f"hydra.launcher.tasks_per_node={devices} (the slurm launcher config does)"
        )
    if nodes is not None and int(nodes) != int(cfg.trainer.get("num_nodes", 1)):
        raise ConfigError(
            f"SLURM allocated {nodes} node(s) but trainer.num_nodes={cfg.trainer.get('num_nodes', 1)}"
        )


def trainer_plugins(cfg: DictConfig) -> list[Any]:
    """The trainer's plugins: ``cfg.trainer.plugins`` (atomic checkpoint writes) and, inside a
    SLURM job, ``SLURMEnvironment(auto_requeue=True)``.

    Under SLURM, Lightning then handles the requeue signal (SIGUSR1, which the job asks SLURM
    to send before its time limit): it writes ``hpc_ckpt_N.ckpt`` into the run directory and
    runs ``scontrol requeue``; the requeued job resumes from it with ``ckpt_path=auto``. SIGTERM
    (pre-emption, ``scancel``) makes Lightning stop after the current batch. Lightning is the
    one requeue owner: the submitit launcher's own requeue stays off (``max_num_timeout: 0``).
    Outside SLURM (or in an interactive ``srun --job-name=interactive`` shell) nothing is added.
    """
    plugins = [hydra.utils.instantiate(p) for p in cfg.trainer.get("plugins") or []]
    if SLURMEnvironment.detect() and not any(isinstance(p, ClusterEnvironment) for p in plugins):
        plugins.append(SLURMEnvironment(auto_requeue=True, requeue_signal=signal.SIGUSR1))
    return plugins


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
    image_size = parse_image_size(cfg.img_size)
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


def instantiate_callbacks(cfg: DictConfig | None) -> list[Callback]:
    """Instantiate every callback config that has a ``_target_``."""
    return [hydra.utils.instantiate(c) for c in (cfg or {}).values() if c and "_target_" in c]


def instantiate_loggers(cfg: DictConfig | None) -> list[Logger]:
    """Instantiate every logger config that has a ``_target_``."""
    return [hydra.utils.instantiate(c) for c in (cfg or {}).values() if c and "_target_" in c]


def network_config(cfg: DictConfig) -> dict[str, Any]:
    """Keyword arguments of ``build_classifier`` from ``cfg.model`` and ``cfg.img_size``."""
    model = OmegaConf.to_container(cfg.model, resolve=True)
    assert isinstance(model, dict)
    net = {
        "name": model["name"],
        "img_size": cfg.img_size,
        "pretrained": bool(model.get("pretrained", False)),
        "checkpoint": model.get("checkpoint"),
        "adapt": model.get("adapt"),
        **(model.get("kwargs") or {}),
    }
    if model.get("patch_size") is not None:
        net["patch_size"] = model["patch_size"]
    if model.get("adapt") is not None:
        net["adapt_block_size"] = model.get("adapt_block_size", cfg.cipher.block_size)
    return net


@contextlib.contextmanager
def close_wandb() -> Iterator[None]:
    """Close a wandb run on the way out (also on failure), so a failed multirun job cannot
    leave its run open for the next one."""
    try:
        yield
    finally:
        import sys

        wandb = sys.modules.get("wandb")
        if wandb is not None and getattr(wandb, "run", None) is not None:
            wandb.finish()


def configure_environment() -> None:
    """Offline wandb unless the user chose otherwise; quiet, deterministic library defaults."""
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
