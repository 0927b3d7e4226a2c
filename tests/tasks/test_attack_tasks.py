"""Learned attacks: attacker-side encryption, the ITN and GAN tasks, and the threat model (the
victim's key is not reachable from anything an attack is given)."""

from __future__ import annotations

import gc
import types
from collections.abc import Iterator
from typing import Any

import lightning as L
import pytest
import torch

from vitlearnenc.attacks.scoring import PSNR_CAP, restoration_scores
from vitlearnenc.ciphers import Cipher, CipherKey, build_cipher
from vitlearnenc.data import SyntheticDataModule, make_synthetic_images
from vitlearnenc.data.attack import (
    GANDataModule,
    ITNDataModule,
    VictimData,
    encrypt_victim_sets,
    encrypt_with_fresh_keys,
)
from vitlearnenc.tasks.attack_gan import SIAGANAttack
from vitlearnenc.tasks.attack_itn import (
    ITNAttack,
    to_signed_unit,
    to_uint8,
)

SIZE = 16
TINY_UNET = {"name": "unet", "base_channels": 8, "depth": 2}
ADAM = {"name": "adamw", "lr": 3e-3, "weight_decay": 0.0}
SIAGAN_TINY = {
    "generator": {
        "name": "siagan_generator",
        "block_size": 4,
        "img_size": SIZE,
        "width": 8,
        "num_res_blocks": 1,
    },
    "discriminator": {"name": "sagan_discriminator", "img_size": SIZE, "width": 0.0625},
    "classifier": {"name": "vit_micro", "img_size": SIZE},
}
LAB_TINY = {
    "generator": {"name": "lab_generator", "block_size": 4},
    "discriminator": {"name": "dcgan_discriminator", "width": 8},
    "classifier": None,
    "loss": "bce",
    "lr_g": 2e-4,
    "lr_d": 2e-4,
    "betas": (0.5, 0.999),
}


def images(count: int, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    return make_synthetic_images(count, 10, SIZE, seed=0, split=split)


def trainer(**kwargs: Any) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kwargs,
    )


# ----------------------------------------------------------------------- attacker's keys
@pytest.mark.parametrize(("cipher", "block"), [("proposed", 4), ("le", 4), ("etc", 4), ("pe", 1)])
def test_fresh_keys_give_every_image_its_own_key(cipher: str, block: int) -> None:
    same = images(1)[0].expand(6, -1, -1, -1).contiguous()
    options = {"per_image_keys": True} if cipher == "pe" else {}
    encrypted = encrypt_with_fresh_keys(same, cipher, block, options, seed=5)
    assert encrypted.dtype == torch.uint8 and encrypted.shape == same.shape
    distinct = {tuple(image.flatten().tolist()) for image in encrypted}
    assert len(distinct) == 6  # one image, six keys, six ciphertexts
    again = encrypt_with_fresh_keys(same, cipher, block, options, seed=5)
    torch.testing.assert_close(again, encrypted)  # the attacker's stream is reproducible
    other = encrypt_with_fresh_keys(same, cipher, block, options, seed=6)
    assert not torch.equal(other, encrypted)


def test_grouped_keys_share_one_key_per_group() -> None:
    same = images(1)[0].expand(4, -1, -1, -1).contiguous()
    encrypted = encrypt_with_fresh_keys(same, "proposed", 4, images_per_key=2, seed=1)
    torch.testing.assert_close(encrypted[0], encrypted[1])
    torch.testing.assert_close(encrypted[2], encrypted[3])
    assert not torch.equal(encrypted[0], encrypted[2])


def test_fresh_keys_do_not_reproduce_a_victim_key_of_the_same_seed() -> None:
    plain = images(8)[0]
    victim = build_cipher("proposed", SIZE, 4, seed=3).encrypt(plain)
    attacker = encrypt_with_fresh_keys(plain, "proposed", 4, images_per_key=8, seed=3)
    assert not torch.equal(victim, attacker)


def test_proposed_ciphertexts_keep_each_image_pixels() -> None:
    plain = images(4)[0]
    encrypted = encrypt_with_fresh_keys(plain, "proposed", 4, seed=0)
    assert not torch.equal(plain, encrypted)
    for p, e in zip(plain, encrypted, strict=True):  # a permutation of whole RGB pixels
        assert sorted(p.flatten(1).T.tolist()) == sorted(e.flatten(1).T.tolist())


def test_bad_group_size_is_rejected() -> None:
    with pytest.raises(ValueError, match="images_per_key must be >= 1"):
        encrypt_with_fresh_keys(images(2)[0], "proposed", 4, images_per_key=0)


# ------------------------------------------------------------------------ value scaling
def test_value_scaling_round_trips_and_scores_perfect_restorations() -> None:
    plain = images(4)[0]
    unit = to_signed_unit(plain)
    assert unit.min() >= -1 and unit.max() <= 1
    torch.testing.assert_close(to_uint8(unit), plain)
    scores = restoration_scores(plain, plain)
    torch.testing.assert_close(scores["ssim"], torch.ones(4))
    torch.testing.assert_close(scores["psnr"], torch.full((4,), PSNR_CAP))


def test_real_valued_ciphertexts_reach_the_network_on_the_uint8_scale() -> None:
    plain = images(4)[0]
    torch.testing.assert_close(to_signed_unit(plain.float() / 255), to_signed_unit(plain))


# ----------------------------------------------------------------------------- data modules
def test_itn_datamodule_pairs_attacker_ciphertexts_with_plain_images() -> None:
    public, _ = images(40)
    victim = build_cipher("pe", SIZE, 1, seed=0).encrypt(images(8, "test")[0])
    dm = ITNDataModule(public, victim, "pe", 1, {"per_image_keys": True}, batch_size=16)
    dm.setup("fit")
    assert len(dm.train_set) == 36 and len(dm.val_set) == 4
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"image", "plain"} and batch["image"].dtype == torch.uint8
    # PE flips values and swaps colours but keeps the folded value range of every pixel
    folded = torch.minimum(batch["image"], 255 - batch["image"]).sort(dim=1).values
    plain = torch.minimum(batch["plain"], 255 - batch["plain"]).sort(dim=1).values
    torch.testing.assert_close(folded, plain)
    dm.setup("predict")
    predict = next(iter(dm.predict_dataloader()))
    assert set(predict) == {"image", "index"}
    with pytest.raises(ValueError, match="pass victim_plain"):
        dm.setup("test")


def test_gan_datamodule_checks_its_inputs() -> None:
    scrambled, labels = images(8)
    with pytest.raises(ValueError, match="batch_size=16 exceeds"):
        GANDataModule(scrambled, labels, scrambled, scrambled, batch_size=16)
    with pytest.raises(ValueError, match="labels must have shape"):
        GANDataModule(scrambled, labels[:4], scrambled, scrambled, batch_size=4)
    with pytest.raises(ValueError, match="uint8 tensor"):
        GANDataModule(scrambled.float(), labels, scrambled, scrambled, batch_size=4)


# ------------------------------------------------------------------------------------ ITN
@pytest.mark.slow
def test_itn_trained_on_pe_beats_its_untrained_self() -> None:
    torch.manual_seed(0)
    public, _ = images(512)
    test_plain = images(64, "test")[0]
    victim = build_cipher("pe", SIZE, 1, seed=9).encrypt(test_plain)
    dm = ITNDataModule(
        public, victim, "pe", 1, {"per_image_keys": True}, victim_plain=test_plain, batch_size=32
    )
    task = ITNAttack(TINY_UNET, ADAM)
    untrained = trainer().test(task, dm, verbose=False)[0]
    dm.setup("fit")
    val = next(iter(dm.val_dataloader()))

    def val_mse() -> float:
        task.eval()
        with torch.no_grad():
            output = task(to_signed_unit(val["image"]))
        task.train()
        return float(torch.nn.functional.mse_loss(output, to_signed_unit(val["plain"])))

    before = val_mse()
    fit = trainer(max_steps=45)
    fit.fit(task, dm)
    assert fit.global_step == 45
    assert val_mse() < 0.85 * before
    trained = fit.test(task, dm, verbose=False)[0]
    assert trained["test/ssim"] > untrained["test/ssim"] + 0.02
    assert trained["test/psnr"] > untrained["test/psnr"]


def test_itn_predict_restores_every_victim_image_in_order() -> None:
    plain = images(12, "test")[0]
    victim = build_cipher("proposed", SIZE, 4, seed=0).encrypt(plain)
    dm = ITNDataModule(plain, victim, "proposed", 4, victim_plain=plain, batch_size=5)
    outputs = trainer().predict(ITNAttack(TINY_UNET), dm)
    restored = torch.cat([o["restored"] for o in outputs])
    assert restored.shape == plain.shape and restored.dtype == torch.uint8
    torch.testing.assert_close(torch.cat([o["index"] for o in outputs]), torch.arange(12))


# ------------------------------------------------------------------------------------ GAN
def gan_data(count: int = 32, batch_size: int = 8) -> GANDataModule:
    plain, labels = images(2 * count)
    cipher = build_cipher("proposed", SIZE, 4, seed=1)
    test_plain = images(8, "test")[0]
    return GANDataModule(
        cipher.encrypt(plain[:count]),
        labels[:count],
        plain[count:],
        cipher.encrypt(test_plain),
        test_plain,
        batch_size=batch_size,
    )


@pytest.mark.parametrize(("variant", "optimizers"), [(SIAGAN_TINY, 3), (LAB_TINY, 2)])
def test_gan_manual_optimisation_updates_every_network(variant: dict, optimizers: int) -> None:
    torch.manual_seed(0)
    task = SIAGANAttack(**variant)
    assert not task.automatic_optimization
    networks = {name: module for name, module in task.named_children() if name != "means"}
    networks = {n: m for n, m in networks.items() if n != "test_means"}
    before = {n: [p.detach().clone() for p in m.parameters()] for n, m in networks.items()}
    fit = trainer(max_steps=3 * optimizers)  # global_step counts optimiser steps: 3 batches
    fit.fit(task, gan_data())
    assert fit.fit_loop.epoch_loop.batch_progress.total.completed == 3
    losses = {k: float(v) for k, v in fit.callback_metrics.items() if k.startswith("train/")}
    assert {"train/g_loss", "train/d_loss"} <= set(losses)
    assert ("train/c_loss" in losses) == (optimizers == 3)
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    for name, module in networks.items():  # each optimiser stepped its own network
        changed = any(
            not torch.equal(old, new.detach())
            for old, new in zip(before[name], module.parameters(), strict=True)
        )
        assert changed, name
    scores = fit.test(task, gan_data(), verbose=False)[0]
    assert -1 <= scores["test/ssim"] <= 1


def test_gan_rejects_an_unknown_loss() -> None:
    with pytest.raises(ValueError, match="hinge, bce"):
        SIAGANAttack(**{**LAB_TINY, "loss": "wasserstein"})


def test_hinge_and_bce_losses_prefer_a_discriminator_that_separates() -> None:
    hinge = SIAGANAttack(**{**LAB_TINY, "loss": "hinge"})
    bce = SIAGANAttack(**LAB_TINY)
    good, bad = torch.tensor([3.0, 2.0]), torch.tensor([-3.0, -2.0])
    for task in (hinge, bce):
        assert task.discriminator_loss(good, bad) < task.discriminator_loss(bad, good)
        assert task.generator_adversarial_loss(good) < task.generator_adversarial_loss(bad)
    assert float(hinge.discriminator_loss(good, bad)) == 0.0  # both margins met


# ----------------------------------------------------------------------- threat model
def reachable(*roots: object, limit: int = 2_000_000) -> Iterator[object]:
    """Every object reachable from ``roots`` through references, except through classes,
    modules and function globals (shared by everything; they hold no run's data)."""
    seen: set[int] = set()
    stack = list(roots)
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        assert len(seen) < limit, "object graph unexpectedly large"
        yield obj
        if isinstance(obj, type | types.ModuleType | types.CodeType | types.FrameType):
            continue
        if isinstance(obj, types.FunctionType):
            stack.extend(cell.cell_contents for cell in obj.__closure__ or () if _filled(cell))
            stack.extend([obj.__defaults__, obj.__kwdefaults__])
            continue
        stack.extend(gc.get_referents(obj))


def _filled(cell: types.CellType) -> bool:
    try:
        cell.cell_contents  # noqa: B018
    except ValueError:
        return False
    return True


def holds_key(objects: Iterator[object], key: CipherKey) -> bool:
    return any(
        (isinstance(o, CipherKey) and o == key) or (isinstance(o, Cipher) and o.key == key)
        for o in objects
    )


def victim_side() -> tuple[SyntheticDataModule, VictimData]:
    datamodule = SyntheticDataModule(
        num_train=64,
        num_test=16,
        native_size=SIZE,
        cipher="proposed",
        block_size=4,
        key_seed=7,
        num_workers=0,
    )
    victim = encrypt_victim_sets(datamodule, torch.arange(16), torch.arange(32))
    return datamodule, victim


def test_victim_key_is_not_reachable_from_the_attacks() -> None:
    datamodule, victim = victim_side()
    victim_key = datamodule.cipher.key
    # the walk does find the key where it is reachable (the victim's own DataModule)
    assert holds_key(reachable(datamodule), victim_key)
    assert victim.train_ciphertexts is not None and victim.train_labels is not None
    assert victim.key_fingerprint == victim_key.fingerprint
    public = images(48)[0]
    itn_data = ITNDataModule(
        public,
        victim.test_ciphertexts,
        "proposed",
        4,
        victim_plain=victim.test_plain,
        batch_size=16,
    )
    itn = ITNAttack(TINY_UNET)
    gan_data = GANDataModule(
        victim.train_ciphertexts,
        victim.train_labels,
        public,
        victim.test_ciphertexts,
        victim.test_plain,
        batch_size=16,
    )
    gan = SIAGANAttack(**LAB_TINY)
    for task, data in ((itn, itn_data), (gan, gan_data)):
        fit = trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=1)
        fit.fit(task, data)  # attached to a trainer, as in a real run
        fit.test(task, data, verbose=False)
        assert not holds_key(reachable(task, data, fit, victim), victim_key)
