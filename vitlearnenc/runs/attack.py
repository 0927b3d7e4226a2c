"""One attack run from a composed ``attack`` config, in three steps that keep the threat model
by construction:

1. **victim** (:func:`prepare_context`): a DataModule holding the victim's key encrypts a random
   subset of the test set (``attack.num_victim_images``) and whatever the attack declared it
   needs (known pairs, labelled ciphertexts, a corpus, public images); only tensors leave the
   function, so nothing later can reach the key.
2. **attack**: the registered attack (:mod:`vitlearnenc.attacks.registry`) restores the victim
   ciphertexts from that context; no key is involved.
3. **scoring** (researcher side): SSIM/PSNR against the plain images, the attack's own
   key-recovery rates against the victim key; ``metrics.json``, a Fig. 4-style ``grid.png`` and
   ``samples.pt`` (the first images, for combined figures) in the run directory, and the same
   numbers and grid to the configured loggers.

An attack that does not apply to the cipher writes ``metrics.json`` with ``applicable: false``
and its reason instead of failing, so that sweeps run through.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, cast

import hydra
import lightning as L
import torch
from lightning.pytorch.loggers import Logger, WandbLogger
from omegaconf import DictConfig, OmegaConf

from vitlearnenc.attacks.grid import make_grid_tensor, save_attack_grid
from vitlearnenc.attacks.registry import (
    VICTIM_TRAIN_KINDS,
    Attack,
    AttackContext,
    AttackOutcome,
    InputKind,
    NotApplicableError,
    get_attack,
)
from vitlearnenc.attacks.scoring import PSNR_CAP, restoration_scores, summarize
from vitlearnenc.ciphers import Cipher, probe_cipher
from vitlearnenc.data.attack import VictimData, encrypt_victim_sets, load_public_images
from vitlearnenc.data.base import EncryptedDataModule
from vitlearnenc.runs.build import build_datamodule, instantiate_loggers
from vitlearnenc.runs.config import plain_dict, validate_config
from vitlearnenc.runs.errors import ConfigError
from vitlearnenc.runs.keys import resolve_key_source, victim_key
from vitlearnenc.utils.files import write_json_atomic
from vitlearnenc.utils.logging import RankedLogger

log = RankedLogger(__name__)


def _subset(count: int, size: int, seed: int, what: str) -> torch.Tensor:
    """The first ``count`` of a seeded permutation of ``range(size)`` (CIFAR folders are sorted
    by class, so a prefix would be one class)."""
    if count > size:
        raise ConfigError(f"{what} asks for {count} images but the split has {size}")
    return torch.randperm(size, generator=torch.Generator().manual_seed(seed))[:count]


def _count(settings: dict[str, Any], option: str | None, name: str) -> int:
    """The size of an input: the attack option ``option``, which must be set."""
    if option is None or settings.get(option) is None:
        raise ConfigError(f"attack {name} needs attack.{option}=<number of images>")
    return int(settings[option])


def prepare_context(
    cfg: DictConfig, run_dir: Path, attack: Attack, cipher: Cipher
) -> tuple[AttackContext, VictimData]:
    """The victim step: encrypt the victim sets with the victim key, read the public images.

    The DataModule that holds the key lives only inside this function. Returns the attack's
    context and, for scoring only, the victim data (with the plain test images).
    """
    settings = plain_dict(cfg.attack, "attack")
    datamodule = cast(EncryptedDataModule, build_datamodule(cfg, run_dir))
    test_size = len(datamodule.load_split("test"))
    requested = settings.get("num_victim_images")
    num_victim = test_size if requested is None else int(requested)
    test_indices = _subset(
        num_victim, test_size, int(cfg.victim_subset_seed), "attack.num_victim_images"
    )
    train_size = len(datamodule.load_split("train"))
    inputs = {i.kind: i for i in attack.inputs_for(cipher)}
    train_kind = next((kind for kind in VICTIM_TRAIN_KINDS if kind in inputs), None)
    num_train = _count(settings, inputs[train_kind].count, attack.name) if train_kind else 0
    public = inputs.get(InputKind.PUBLIC_IMAGES)
    num_public = _count(settings, public.count, attack.name) if public else 0
    # disjoint training images: the victim's ciphertexts first, the public ones after
    pool = _subset(
        num_train + num_public, train_size, int(cfg.seed), "the attack's training images"
    )
    victim = encrypt_victim_sets(datamodule, test_indices, pool[:num_train] if num_train else None)
    log.info(
        "victim: %d test ciphertexts (%s, key %s)%s",
        num_victim,
        cfg.cipher.name,
        victim.key_fingerprint or "none",
        f", {num_train} training ciphertexts" if num_train else "",
    )
    by_kind: dict[InputKind | None, dict[str, Any]] = {
        InputKind.KNOWN_PAIRS: {
            "known_plain": victim.train_plain,
            "known_ciphertexts": victim.train_ciphertexts,
        },
        InputKind.LABELLED_CIPHERTEXTS: {
            "labelled_ciphertexts": victim.train_ciphertexts,
            "labels": victim.train_labels,
        },
        InputKind.VICTIM_CORPUS: {"corpus": victim.train_ciphertexts},
    }
    train = by_kind.get(train_kind, {})
    context = AttackContext(
        victim_ciphertexts=victim.test_ciphertexts,
        cipher=cipher,
        cipher_options=plain_dict(cfg.cipher.options, "cipher.options"),
        settings=settings,
        public_images=load_public_images(datamodule, pool[num_train:]) if num_public else None,
        victim_plain=victim.test_plain if InputKind.VICTIM_PLAIN in inputs else None,
        **train,
    )
    return context, victim


def _log_results(
    loggers: list[Logger], scores: dict[str, dict[str, float]], grid: torch.Tensor
) -> None:
    """Summary numbers and the grid to every logger that takes them."""
    flat = {
        f"attack/{name}_{stat}": value for name, s in scores.items() for stat, value in s.items()
    }
    for logger in loggers:
        logger.log_metrics({k: float(v) for k, v in flat.items()})
        experiment: Any = getattr(logger, "experiment", None)
        if hasattr(experiment, "add_image"):  # TensorBoard
            experiment.add_image("attack/grid", grid, global_step=0)
        elif isinstance(logger, WandbLogger):
            logger.log_image("attack/grid", [grid.permute(1, 2, 0).numpy()])
        logger.save()


def write_outputs(
    cfg: DictConfig,
    run_dir: Path,
    victim: VictimData,
    outcome: AttackOutcome,
    recovery: dict[str, Any],
    loggers: list[Logger],
) -> dict[str, Any]:
    """Score the restorations; write ``metrics.json``, ``grid.png``, ``samples.pt``; log."""
    per_image = restoration_scores(
        outcome.restored, victim.test_plain, gaussian=bool(cfg.score_gaussian_ssim)
    )
    scores = {name: summarize(values) for name, values in per_image.items()}
    rows = min(int(cfg.attack.grid_images), len(victim.test_plain))
    columns = {cfg.attack.name: outcome.restored[:rows].clone()}
    labels = {cfg.attack.name: per_image["ssim"][:rows].clone()}
    # clones: a slice would drag the whole tensor's storage into samples.pt
    plain, encrypted = victim.test_plain[:rows].clone(), victim.test_ciphertexts[:rows].clone()
    grid_path = save_attack_grid(plain, encrypted, columns, labels, run_dir / "grid.png", rows)
    samples = {"plain": plain, "encrypted": encrypted, "restored": columns[cfg.attack.name]}
    torch.save({**samples, "ssim": labels[cfg.attack.name]}, run_dir / "samples.pt")
    if loggers:
        _log_results(loggers, scores, make_grid_tensor(plain, encrypted, columns, labels, rows))
    summary = {
        "applicable": True,
        "attack": cfg.attack.name,
        "kind": cfg.attack.kind,
        "cipher": cfg.cipher.name,
        "cipher_options": OmegaConf.to_container(cfg.cipher.options, resolve=True),
        "block_size": int(cfg.cipher.block_size),
        "image_size": int(cfg.image_size),
        "data": cfg.data.name,
        "key_source": cfg.key.source,
        "key_fingerprint": victim.key_fingerprint,
        "n": len(victim.test_plain),
        "seed": int(cfg.seed),
        "ssim": scores["ssim"],
        "psnr": scores["psnr"],
        "psnr_cap_db": PSNR_CAP,
        "budget": outcome.budget,
        "key_recovery": recovery,
        "grid": grid_path.name,
    }
    if "ssim_gaussian" in scores:
        summary["ssim_gaussian"] = scores["ssim_gaussian"]
    write_json_atomic(summary, run_dir / "metrics.json")
    log.info(
        "%s on %s: SSIM %.4f +- %.4f, PSNR %.2f dB over %d images -> %s",
        cfg.attack.name,
        cfg.cipher.name,
        scores["ssim"]["mean"],
        scores["ssim"]["std"],
        scores["psnr"]["mean"],
        len(victim.test_plain),
        run_dir / "metrics.json",
    )
    return summary


def attack(cfg: DictConfig, loggers: list[Logger] | None = None) -> dict[str, Any]:
    """Run ``cfg.attack`` against ``cfg.cipher`` on ``cfg.data``; returns the metrics summary.

    ``loggers`` default to the ones ``cfg.logger`` configures.
    """
    validate_config(cfg)
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    attack_ = get_attack(cfg.attack.kind)
    options = plain_dict(cfg.cipher.options, "cipher.options")
    cipher = probe_cipher(
        cfg.cipher.name, int(cfg.image_size), int(cfg.cipher.block_size), **options
    )
    try:
        attack_.check_applicable(cipher)
    except NotApplicableError as error:
        log.warning("attack %s skipped on %s: %s", cfg.attack.name, cfg.cipher.name, error)
        summary = {
            "applicable": False,
            "reason": str(error),
            "attack": cfg.attack.name,
            "cipher": cfg.cipher.name,
            "block_size": int(cfg.cipher.block_size),
            "image_size": int(cfg.image_size),
        }
        write_json_atomic(summary, run_dir / "metrics.json")
        return summary
    L.seed_everything(cfg.seed, workers=True)
    key_source = resolve_key_source(cfg, run_dir)
    context, victim = prepare_context(cfg, run_dir, attack_, cipher)
    if loggers is None:
        loggers = instantiate_loggers(cfg.get("logger"))
    trainer_loggers = loggers
    context = dataclasses.replace(
        context,
        make_trainer=lambda: hydra.utils.instantiate(cfg.trainer, logger=trainer_loggers or False),
    )
    for logger in loggers:
        logger.log_hyperparams(plain_dict(cfg, "config"))  # key source only
    started = time.perf_counter()
    outcome = attack_.run(context)
    outcome.budget["seconds"] = round(time.perf_counter() - started, 2)
    recovery = attack_.score(outcome.estimate, victim_key(cfg, key_source))
    return write_outputs(cfg, run_dir, victim, outcome, recovery, loggers)
