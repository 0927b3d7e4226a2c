"""``vitlearnenc-attack``: attack a cipher and score the restorations (a Hydra app).

Examples::

    vitlearnenc-attack attack=fr cipher=pe data=cifar10_folder
    vitlearnenc-attack attack=itn cipher=proposed data=cifar10_folder key=seed key.seed=1
    vitlearnenc-attack -m attack=fr,itn,jigsaw cipher=pe,le,proposed data=cifar10_folder

One run, in three steps that keep the threat model by construction:

1. **victim** (:func:`prepare_inputs`): a DataModule holding the victim's key encrypts a random
   subset of the test set (``attack.num_victim_images``) and, where the attack needs them, some
   training images; only tensors leave the function, so nothing later can reach the key.
2. **attack** (:func:`run_attack`): from ciphertexts (and the attacker's own public images) to
   restored images. Learned attacks (``itn``, ``gan``) train a LightningModule; the others
   (``fr``, ``fr_advanced``, ``jigsaw``, ``kpa``) need no trainer. ``reference_plain`` (the
   plain images: the ceiling) and ``reference_random`` (an unrelated test image: the floor)
   calibrate the scores.
3. **scoring** (researcher side): SSIM/PSNR against the plain images, key-recovery rates
   against the victim key for ``jigsaw``/``kpa``; ``metrics.json``, a Fig. 4-style
   ``grid.png`` and ``samples.pt`` (the first images, for combined figures) in the run
   directory, and the same numbers and grid to the configured loggers.

An attack that does not apply to the cipher (e.g. jigsaw on PE) writes ``metrics.json`` with
``applicable: false`` and its reason instead of failing, so that sweeps run through.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf

from vitlearnenc.attacks.fr import fr_advanced, fr_basic
from vitlearnenc.attacks.grid import make_grid_tensor, save_attack_grid
from vitlearnenc.attacks.jigsaw import (
    JigsawResult,
    direct_accuracy,
    largest_component,
    neighbour_accuracy,
    solve_jigsaw,
    symmetry_between,
)
from vitlearnenc.attacks.jigsaw_etc import (
    EtCJigsawResult,
    ImagePrior,
    placement_scores,
    solve_etc_jigsaw,
)
from vitlearnenc.attacks.kpa import (
    KPAResult,
    LEKPAResult,
    decrypt_with_recovered,
    recover_le_key,
    recover_proposed_key,
)
from vitlearnenc.attacks.scoring import summarize
from vitlearnenc.ciphers import CipherKey, generate_key, get_cipher_class, load_key
from vitlearnenc.cli.common import (
    close_wandb,
    configure_environment,
    instantiate_loggers,
    one_line_errors,
    resolve_key_source,
    validate_config,
)
from vitlearnenc.cli.train import build_datamodule
from vitlearnenc.tasks.attack_data import (
    VictimData,
    encrypt_victim_sets,
    load_public_images,
)
from vitlearnenc.tasks.attack_itn import PSNR_CAP, restoration_scores
from vitlearnenc.utils.files import write_json_atomic
from vitlearnenc.utils.logging import RankedLogger
from vitlearnenc.utils.paths import check_conf_dir, register_resolvers

log = RankedLogger(__name__)

LEARNED = ("itn", "gan")
DIRECT = ("fr", "fr_advanced", "jigsaw", "kpa")
REFERENCES = ("reference_plain", "reference_random")
KINDS = LEARNED + DIRECT + REFERENCES


class NotApplicableError(ValueError):
    """The attack does not apply to this cipher (the message says why)."""


@dataclass
class AttackInputs:
    """Everything an attack run works on. ``victim`` holds tensors only (no key)."""

    victim: VictimData
    public: torch.Tensor | None = None


@dataclass
class AttackOutcome:
    """Restored victim images plus what the attack estimated and how much it trained.

    Attributes:
        restored: ``(N, 3, H, W)`` uint8 restorations of the victim ciphertexts.
        estimate: the attack's key estimate (jigsaw/kpa), scored against the victim key later.
        budget: training budget and cost of the attack (all attacks report ``seconds``).
    """

    restored: torch.Tensor
    estimate: JigsawResult | EtCJigsawResult | KPAResult | LEKPAResult | None = None
    budget: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------- checks
def check_applicable(cfg: DictConfig) -> None:
    """Raise :class:`NotApplicableError` if ``cfg.attack`` cannot attack ``cfg.cipher``."""
    kind, cipher = cfg.attack.kind, cfg.cipher.name
    if kind not in KINDS:
        raise ValueError(f"unknown attack.kind {kind!r}; choose one of {', '.join(KINDS)}")
    if kind in REFERENCES:
        return
    size = (int(cfg.img_size), int(cfg.img_size))
    cls = get_cipher_class(cipher)
    probe = cls(
        generate_key(cipher, size, int(cfg.cipher.block_size), seed=0, **cfg.cipher.options)
    )
    if probe.output_shape(3) != (3, *size):
        raise NotApplicableError(
            f"the {cipher} cipher changes the image layout to {probe.output_shape(3)}; the "
            "attacks here restore images of the plain layout"
        )
    if kind == "jigsaw" and not _jigsaw_applies(cfg):
        if cipher == "etc":
            reason = (
                "etc_channel_mode=original duplicates colour channels, so its pieces are not "
                "rotated/flipped/negated/colour-shuffled views of the plain blocks"
            )
        else:
            reason = (
                "the solvers reassemble scrambled blocks whose content is intact up to one shared, "
                "channel-tied pixel shuffle (the proposed cipher) or up to a rotation/flip, "
                f"negation and colour order per block (EtC); {cipher} has no such blocks"
            )
        raise NotApplicableError(reason)
    if kind == "kpa":
        if cipher == "pe":
            raise NotApplicableError(
                "pe draws an independent key per image, so a known pair reveals nothing about "
                "the other images' keys"
            )
        if cipher not in ("proposed", "le") or cfg.cipher.options.get("channel_mix"):
            raise NotApplicableError(
                f"known-plaintext key recovery is implemented for the channel-tied proposed "
                f"cipher and le, not {cipher}"
            )


def _jigsaw_applies(cfg: DictConfig) -> bool:
    """Whether a jigsaw solver exists for the configured cipher."""
    options = cfg.cipher.options
    if cfg.cipher.name == "proposed":
        return not options.get("channel_mix")
    return cfg.cipher.name == "etc" and options.get("etc_channel_mode", "permute") == "permute"


# ---------------------------------------------------------------------------------- victim
def _subset(count: int, size: int, seed: int, what: str) -> torch.Tensor:
    """The first ``count`` of a seeded permutation of ``range(size)`` (CIFAR folders are sorted
    by class, so a prefix would be one class)."""
    if count > size:
        raise ValueError(f"{what} asks for {count} images but the split has {size}")
    return torch.randperm(size, generator=torch.Generator().manual_seed(seed))[:count]


def prepare_inputs(cfg: DictConfig, run_dir: Path) -> AttackInputs:
    """The victim step: encrypt the victim sets with the victim key, read the public images.

    The DataModule that holds the key lives only inside this function.
    """
    attack = cfg.attack
    datamodule = build_datamodule(cfg, run_dir)
    test_size = len(datamodule.load_split("test"))
    num_victim = test_size if attack.num_victim_images is None else int(attack.num_victim_images)
    test_indices = _subset(
        num_victim, test_size, int(cfg.victim_subset_seed), "attack.num_victim_images"
    )
    train_size = len(datamodule.load_split("train"))
    victim_train = {"gan": "num_victim_train", "kpa": "num_known_pairs"}.get(attack.kind)
    public_count = {"itn": "num_public_images", "gan": "num_natural"}.get(attack.kind)
    if attack.kind == "jigsaw" and cfg.cipher.name == "etc":  # the prior of the EtC solver
        public_count = "num_public_images"
    num_train = int(attack[victim_train]) if victim_train else 0
    num_public = int(attack[public_count]) if public_count else 0
    # disjoint training images: the victim's labelled ciphertexts first, the public ones after
    pool = _subset(
        num_train + num_public, train_size, int(cfg.seed), "the attack's training images"
    )
    victim = encrypt_victim_sets(datamodule, test_indices, pool[:num_train] if num_train else None)
    public = load_public_images(datamodule, pool[num_train:]) if num_public else None
    log.info(
        "victim: %d test ciphertexts (%s, key %s)%s",
        num_victim,
        cfg.cipher.name,
        victim.key_fingerprint or "none",
        f", {num_train} training ciphertexts" if num_train else "",
    )
    return AttackInputs(victim=victim, public=public)


# ---------------------------------------------------------------------------------- attacks
def run_attack(cfg: DictConfig, inputs: AttackInputs, loggers: list[Logger]) -> AttackOutcome:
    """Restore the victim ciphertexts with ``cfg.attack``; no key is involved."""
    kind, victim = cfg.attack.kind, inputs.victim
    started = time.perf_counter()
    if kind in LEARNED:
        outcome = _run_learned(cfg, inputs, loggers)
    elif kind == "reference_plain":
        outcome = AttackOutcome(victim.test_plain.clone())
    elif kind == "reference_random":
        count = len(victim.test_plain)
        if count < 2:
            raise ValueError("reference_random needs at least 2 victim images")
        # image i is scored against the plain image count/2 positions further on: unrelated
        outcome = AttackOutcome(victim.test_plain.roll(count // 2, dims=0))
    elif kind == "fr":
        outcome = AttackOutcome(fr_basic(victim.test_ciphertexts, rescale=bool(cfg.attack.rescale)))
    elif kind == "fr_advanced":
        outcome = AttackOutcome(fr_advanced(victim.test_ciphertexts))
    elif kind == "jigsaw" and cfg.cipher.name == "etc":
        public = inputs.public
        prior = ImagePrior.fit(public) if public is not None else None
        etc_result = solve_etc_jigsaw(victim.test_ciphertexts, int(cfg.cipher.block_size), prior)
        budget = {"prior_images": 0 if public is None else len(public)}
        outcome = AttackOutcome(etc_result.restored, estimate=etc_result, budget=budget)
    elif kind == "jigsaw":
        result = solve_jigsaw(victim.test_ciphertexts, int(cfg.cipher.block_size))
        outcome = AttackOutcome(result.restored, estimate=result)
    else:  # kpa
        outcome = _run_kpa(cfg, victim)
    outcome.budget["seconds"] = round(time.perf_counter() - started, 2)
    return outcome


def _run_kpa(cfg: DictConfig, victim: VictimData) -> AttackOutcome:
    """Recover the key from the known (plain, cipher) training pairs, decrypt the test set."""
    assert victim.train_plain is not None and victim.train_ciphertexts is not None
    block = int(cfg.cipher.block_size)
    recover = recover_proposed_key if cfg.cipher.name == "proposed" else recover_le_key
    result = recover(victim.train_plain, victim.train_ciphertexts, block)
    restored = decrypt_with_recovered(result, victim.test_ciphertexts)
    return AttackOutcome(restored, estimate=result, budget={"known_pairs": len(victim.train_plain)})


def _trainer(cfg: DictConfig, loggers: list[Logger]) -> L.Trainer:
    return hydra.utils.instantiate(cfg.trainer, logger=loggers or False)


def _predict(trainer: L.Trainer, task: L.LightningModule, datamodule: Any) -> torch.Tensor:
    outputs = trainer.predict(task, datamodule=datamodule)
    restored = torch.cat([o["restored"] for o in outputs])
    index = torch.cat([o["index"] for o in outputs])
    return restored[index.argsort()]


def _run_learned(cfg: DictConfig, inputs: AttackInputs, loggers: list[Logger]) -> AttackOutcome:
    """Fit the ITN or GAN attack on the attacker's data, test and predict on the victim's."""
    from vitlearnenc.tasks.attack_data import GANDataModule, ITNDataModule
    from vitlearnenc.tasks.attack_gan import SIAGANAttack
    from vitlearnenc.tasks.attack_itn import ITNAttack

    attack, victim = cfg.attack, inputs.victim
    assert inputs.public is not None
    container = OmegaConf.to_container(attack, resolve=True)
    assert isinstance(container, dict)
    if attack.kind == "itn":
        datamodule: L.LightningDataModule = ITNDataModule(
            public_images=inputs.public,
            victim_ciphertexts=victim.test_ciphertexts,
            cipher=cfg.cipher.name,
            block_size=int(cfg.cipher.block_size),
            cipher_options=OmegaConf.to_container(cfg.cipher.options, resolve=True),
            victim_plain=victim.test_plain,
            images_per_key=int(attack.images_per_key),
            key_seed=int(attack.attacker_seed),
            val_fraction=float(attack.val_fraction),
            batch_size=int(attack.batch_size),
            num_workers=int(attack.num_workers),
        )
        task: L.LightningModule = ITNAttack(net=container["net"], optim=container.get("optim"))
    else:
        assert victim.train_ciphertexts is not None and victim.train_labels is not None
        datamodule = GANDataModule(
            scrambled=victim.train_ciphertexts,
            labels=victim.train_labels,
            natural=inputs.public,
            victim_ciphertexts=victim.test_ciphertexts,
            victim_plain=victim.test_plain,
            batch_size=int(attack.batch_size),
            num_workers=int(attack.num_workers),
        )
        task = SIAGANAttack(
            generator=container["generator"],
            discriminator=container["discriminator"],
            classifier=container.get("classifier"),
            num_classes=int(victim.train_labels.max()) + 1,
            **{k: container[k] for k in _GAN_SETTINGS if k in container},
        )
    trainer = _trainer(cfg, loggers)
    started = time.perf_counter()
    trainer.fit(task, datamodule=datamodule)
    fit_seconds = round(time.perf_counter() - started, 2)
    restored = _predict(trainer, task, datamodule)  # scored below, like every other attack
    iterations = int(trainer.fit_loop.epoch_loop.batch_progress.total.completed)
    budget = {
        "epochs": int(trainer.current_epoch),
        "iterations": iterations,
        "optimizer_steps": int(trainer.global_step),
        "batch_size": int(attack.batch_size),
        "images_seen": iterations * int(attack.batch_size),
        "fit_seconds": fit_seconds,
        "parameters": {
            name: sum(p.numel() for p in module.parameters())
            for name, module in task.named_children()
            if any(True for _ in module.parameters())
        },
    }
    if attack.kind == "itn":
        budget.update(
            public_images=len(inputs.public),
            images_per_key=int(attack.images_per_key),
            net=container["net"],
            optim=task.optim_settings,  # type: ignore[attr-defined]
        )
    else:
        budget.update(
            victim_train_ciphertexts=len(victim.train_ciphertexts),  # type: ignore[arg-type]
            natural_images=len(inputs.public),
            generator=container["generator"],
            discriminator=container["discriminator"],
            classifier=container.get("classifier"),
        )
    return AttackOutcome(restored, budget=budget)


_GAN_SETTINGS = (
    "loss",
    "lr_g",
    "lr_d",
    "lr_c",
    "betas",
    "classifier_betas",
    "classifier_weight",
)


# ---------------------------------------------------------------------------------- scoring
def victim_key_for_scoring(cfg: DictConfig, key_source: dict[str, Any]) -> CipherKey | None:
    """The researcher's copy of the victim key, for key-recovery rates after the attack."""
    size, block = int(cfg.img_size), int(cfg.cipher.block_size)
    if "key_file" in key_source:
        return load_key(key_source["key_file"], cfg.cipher.name, size, block)
    if "key_seed" in key_source:
        options = OmegaConf.to_container(cfg.cipher.options, resolve=True)
        assert isinstance(options, dict)
        return generate_key(cfg.cipher.name, size, block, seed=key_source["key_seed"], **options)
    return None


def key_recovery(
    estimate: JigsawResult | EtCJigsawResult | KPAResult | LEKPAResult | None,
    key: CipherKey | None,
) -> dict[str, Any]:
    """How much of the victim key the attack's estimate got right (researcher side)."""
    if estimate is None or key is None:
        return {}
    if isinstance(estimate, JigsawResult):
        truth_blocks, truth_pixels = key["block_perm"], key["pixel_perm"]
        direct = [direct_accuracy(perm, truth_blocks) for perm in estimate.block_perms]
        neighbour = [neighbour_accuracy(perm, truth_blocks) for perm in estimate.block_perms]
        component = [largest_component(perm, truth_blocks) for perm in estimate.block_perms]
        return {
            "pixel_perm_exact": bool(np.array_equal(estimate.pixel_perm, truth_pixels)),
            "pixel_perm_fraction": float(np.mean(estimate.pixel_perm == truth_pixels)),
            "pixel_perm_symmetry": symmetry_between(estimate.pixel_perm, truth_pixels),
            "block_direct_mean": float(np.mean(direct)),
            "block_neighbour_mean": float(np.mean(neighbour)),
            "block_largest_component_mean": float(np.mean(component)),
            "images_all_blocks_right": float(np.mean(np.asarray(direct) == 1.0)),
        }
    if isinstance(estimate, EtCJigsawResult):
        scores = [placement_scores(p, key["block_perm"]) for p in estimate.block_positions]
        return {
            f"block_{name}_mean_best_orientation": float(np.mean([s[name] for s in scores]))
            for name in ("direct", "neighbour", "largest_component")
        }
    if isinstance(estimate, LEKPAResult):
        return {
            "perm_fraction": float(np.mean(estimate.perm == key["perm"])),
            "exact": estimate.exact,
        }
    return {
        "block_perm_fraction": float(np.mean(estimate.block_perm == key["block_perm"])),
        "pixel_perm_fraction": float(np.mean(estimate.pixel_perm == key["pixel_perm"])),
        "ambiguous_blocks": int(estimate.ambiguous_blocks.size),
        "ambiguous_pixels": int(estimate.ambiguous_pixels.size),
        "exact": estimate.exact,
    }


def _log_results(
    loggers: list[Logger], scores: dict[str, dict[str, float]], grid: torch.Tensor
) -> None:
    """Summary numbers and the grid to every logger that takes them."""
    flat = {
        f"attack/{name}_{stat}": value for name, s in scores.items() for stat, value in s.items()
    }
    for logger in loggers:
        logger.log_metrics({k: float(v) for k, v in flat.items()})
        experiment = getattr(logger, "experiment", None)
        if hasattr(experiment, "add_image"):  # TensorBoard
            experiment.add_image("attack/grid", grid, global_step=0)
        elif type(logger).__name__ == "WandbLogger":
            logger.log_image("attack/grid", [grid.permute(1, 2, 0).numpy()])
        logger.save()


def _write_outputs(
    cfg: DictConfig,
    run_dir: Path,
    inputs: AttackInputs,
    outcome: AttackOutcome,
    recovery: dict[str, Any],
    loggers: list[Logger],
) -> dict[str, Any]:
    victim = inputs.victim
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
        "image_size": int(cfg.img_size),
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


def attack(cfg: DictConfig) -> dict[str, Any]:
    """Run ``cfg.attack`` against ``cfg.cipher`` on ``cfg.data``; returns the metrics summary."""
    validate_config(cfg)
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        check_applicable(cfg)
    except NotApplicableError as error:
        log.warning("attack %s skipped on %s: %s", cfg.attack.name, cfg.cipher.name, error)
        summary = {
            "applicable": False,
            "reason": str(error),
            "attack": cfg.attack.name,
            "cipher": cfg.cipher.name,
            "block_size": int(cfg.cipher.block_size),
            "image_size": int(cfg.img_size),
        }
        write_json_atomic(summary, run_dir / "metrics.json")
        return summary
    L.seed_everything(cfg.seed, workers=True)
    key_source = resolve_key_source(cfg, run_dir)
    inputs = prepare_inputs(cfg, run_dir)
    loggers = instantiate_loggers(cfg.get("logger"))
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))  # key source only
    outcome = run_attack(cfg, inputs, loggers)
    recovery = key_recovery(outcome.estimate, victim_key_for_scoring(cfg, key_source))
    return _write_outputs(cfg, run_dir, inputs, outcome, recovery, loggers)


@one_line_errors("vitlearnenc-attack")
def _main(cfg: DictConfig) -> float | None:
    configure_environment()
    with close_wandb():
        summary = attack(cfg)
    # the value a Hydra sweeper optimises: how well the attack restored the images
    return summary["ssim"]["mean"] if summary.get("applicable") else None


def main() -> None:
    """Console-script entry point."""
    register_resolvers()
    hydra.main(version_base="1.3", config_path=str(check_conf_dir()), config_name="attack")(_main)()
