"""One training run from a composed ``train`` config: DataModule, classifier (with the data
owner's key absorbed when ``model.key_adapt``), trainer, fit and test, then ``metrics.json``
and a short report in the run directory. ``vitlearnenc-train`` (:mod:`vitlearnenc.cli.train`)
only composes the config and calls :func:`train`; tests and sweeps call the same function."""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from omegaconf import DictConfig, OmegaConf

from vitlearnenc.runs.build import (
    build_datamodule,
    instantiate_callbacks,
    instantiate_loggers,
    trainer_plugins,
)
from vitlearnenc.runs.config import check_slurm_layout, network_config, validate_config
from vitlearnenc.runs.keys import KEY_FILE_NAME
from vitlearnenc.utils.checkpoint_io import LoaderStateCallback, RNGStateCallback
from vitlearnenc.utils.files import write_json_atomic
from vitlearnenc.utils.logging import RankedLogger

log = RankedLogger(__name__)


def resolve_ckpt_path(ckpt_path: str | None, run_dir: Path) -> str | None:
    """``auto`` resumes from the run directory's newest checkpoint: ``checkpoints/last.ckpt``
    (end of the last finished epoch) or an ``hpc_ckpt_N.ckpt`` that Lightning wrote when SLURM
    asked for a requeue; None (a fresh start) when there is neither."""
    if ckpt_path != "auto":
        return ckpt_path
    found = [run_dir / "checkpoints" / "last.ckpt", *run_dir.glob("hpc_ckpt_*.ckpt")]
    found = [path for path in found if path.is_file()]
    return str(max(found, key=lambda path: path.stat().st_mtime_ns)) if found else None


def prepare_data_in_turn(datamodule: L.LightningDataModule, run_dir: Path) -> None:
    """``prepare_data`` (downloads) one process at a time on each node.

    The Trainer would run it on each node's first process only, behind a barrier, but it does
    not exist yet here (the data gives the model its number of classes), and every rank runs
    this function. Without a lock all ranks of a node downloaded into one folder at once;
    with it the first downloads and the others find the files (``prepare_data`` only fetches
    what is missing). The lock file is in the node's temporary folder (named after the run
    directory), so a failed start leaves nothing in the run directory.
    """
    from filelock import FileLock

    name = hashlib.sha256(str(run_dir.resolve()).encode()).hexdigest()[:16]
    with FileLock(Path(tempfile.gettempdir()) / f"vitlearnenc-prepare-{name}.lock"):
        datamodule.prepare_data()


@contextlib.contextmanager
def _drop_new_key_on_error(run_dir: Path) -> Iterator[None]:
    """Remove the key file that ``key=random`` drew in this block if the block fails (e.g.
    missing data): nothing was encrypted with it yet, so a failed start leaves no stray key,
    and the rerun draws a fresh one. Keys of runs that got further are always kept."""
    path = run_dir / KEY_FILE_NAME
    existed = path.exists()
    try:
        yield
    except BaseException:
        if not existed:
            path.unlink(missing_ok=True)
        raise


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit (and test) a classifier as configured; returns the final metrics."""
    from vitlearnenc.models.key_transform import transform_vit
    from vitlearnenc.tasks.classifier import ClassifierModule

    validate_config(cfg)
    check_slurm_layout(cfg)
    run_dir = Path(cfg.paths.output_dir)
    L.seed_everything(cfg.seed, workers=True)
    with _drop_new_key_on_error(run_dir):
        datamodule = build_datamodule(cfg, run_dir)
        prepare_data_in_turn(datamodule, run_dir)
        datamodule.setup("fit")
    task = ClassifierModule(
        net=network_config(cfg),
        num_classes=datamodule.num_classes,
        optim=OmegaConf.to_container(cfg.optim, resolve=True),
        label_smoothing=cfg.label_smoothing,
        compile=cfg.compile,
        channels_last=cfg.channels_last,
        class_names=datamodule.class_names,
    )
    if cfg.model.get("key_adapt"):
        # data owner's side: absorb the key into the (pre)trained weights before fine-tuning
        transform_vit(
            task.net,
            datamodule.cipher.key,
            inplace=True,
            mean=datamodule.mean,
            std=datamodule.std,
        )
        log.info("Transformed the ViT's weights with the data owner's key (model.key_adapt=true)")
    # first, so that it sees the RNG state before any other callback's on_fit_start
    callbacks = [
        RNGStateCallback(),
        LoaderStateCallback(),
        *instantiate_callbacks(cfg.get("callbacks")),
    ]
    loggers = instantiate_loggers(cfg.get("logger"))
    trainer: L.Trainer = hydra.utils.instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers, plugins=trainer_plugins(cfg)
    )
    for logger in loggers:
        logger.log_hyperparams(_loggable_config(cfg))
    trainer.fit(task, datamodule=datamodule, ckpt_path=resolve_ckpt_path(cfg.ckpt_path, run_dir))
    metrics: dict[str, Any] = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if cfg.get("test"):
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        results = trainer.test(task, datamodule=datamodule, ckpt_path=best or None)
        metrics.update({k: float(v) for k, v in (results[0] if results else {}).items()})
    if trainer.is_global_zero:
        _write_summary(cfg, run_dir, metrics, datamodule, trainer)
    return metrics


def _loggable_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as plain containers. It names the key *source* (random/seed/file
    path), never key material, which lives only in the key file."""
    return dict(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]


def _write_summary(
    cfg: DictConfig, run_dir: Path, metrics: dict[str, Any], datamodule: Any, trainer: L.Trainer
) -> None:
    """metrics.json in the run directory and a short report of where everything is."""
    from vitlearnenc.utils.plots import plot_training_curves

    cipher = getattr(datamodule, "cipher", None)
    summary = {
        "metrics": metrics,
        "cipher": cfg.cipher.name,
        "key_source": cfg.key.source,
        "key_fingerprint": cipher.key.fingerprint if cipher is not None and cipher.keyed else None,
        "key_space_bits": cipher.key_space_bits() if cipher is not None else 0.0,
        "model": cfg.model.name,
        "data": cfg.data.name,
        "seed": cfg.seed,
        "epochs": trainer.current_epoch,
        "global_steps": trainer.global_step,
    }
    write_json_atomic(summary, run_dir / "metrics.json")
    plot = plot_training_curves(run_dir)
    lines = [f"Run directory: {run_dir}", f"Metrics: {run_dir / 'metrics.json'}"]
    if "test/acc" in metrics:
        lines.insert(
            0, f"Test accuracy on {cfg.cipher.name}-encrypted images: {metrics['test/acc']:.4f}"
        )
    if plot is not None:
        lines.append(f"Training curves: {plot}")
    if (run_dir / "key.json").exists():
        lines.append(f"Key file (secret, mode 0600): {run_dir / 'key.json'}")
    for line in lines:
        log.info(line)
