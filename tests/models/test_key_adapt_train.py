"""``model.key_adapt=true`` end to end through the train app, for every absorbable cipher: at
step 0 the key-adapted ViT on encrypted images gives the plain ViT's logits and loss on the plain
images (same seed, so the same initial weights, batches and augmentation)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from tests.helpers.hydra import composed, tiny_run
from vitlearnenc.cli.train import train
from vitlearnenc.models.key_transform import absorbable_cipher_names

RUN = [
    *tiny_run(num_train=64, num_test=16, batch_size=16),
    "image_size=32",
    "logger=none",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=1",
    "+trainer.limit_val_batches=0",
    "test=false",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    f"+callbacks.probe._target_={__name__}.StepZeroProbe",
]


class StepZeroProbe(L.Callback):
    """Save the first training batch's logits, pre-logit features and the task's loss."""

    def __init__(self) -> None:
        self.record: dict[str, torch.Tensor] = {}

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step or batch_idx:
            return
        net = pl_module.net
        with torch.no_grad():
            features = net.forward_features(batch["image"])
            self.record["pre_logits"] = net.forward_head(features, pre_logits=True)
            self.record["logits"] = net.forward_head(features)
            self.record["loss_recomputed"] = F.cross_entropy(self.record["logits"], batch["label"])

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, idx: int
    ) -> None:
        if trainer.global_step == 1 and "loss" not in self.record:
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            self.record["loss"] = loss.detach()
            torch.save(self.record, Path(trainer.default_root_dir) / "step0.pt")


def _step0(tmp_path: Path, overrides: list[str]) -> dict[str, torch.Tensor]:
    with composed("train", [*RUN, *overrides], tmp_path) as cfg:
        train(cfg)
    return torch.load(tmp_path / "run" / "step0.pt")


@pytest.fixture(scope="module")
def plain_step0(tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.Tensor]:
    return _step0(tmp_path_factory.mktemp("plain"), ["cipher=plain", "key=none"])


@pytest.mark.parametrize("cipher", absorbable_cipher_names())
def test_key_adapted_step0_equals_plain(
    cipher: str, tmp_path: Path, plain_step0: dict[str, torch.Tensor]
) -> None:
    keyed = [f"cipher={cipher}", "key=seed", "key.seed=3"]
    adapted = _step0(tmp_path / "adapted", [*keyed, "model.key_adapt=true"])
    for name in ("logits", "pre_logits", "loss_recomputed", "loss"):
        torch.testing.assert_close(adapted[name], plain_step0[name], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(adapted["loss"], adapted["loss_recomputed"])
    # without the adaptation the same encrypted batch gives other features: the test can fail
    unadapted = _step0(tmp_path / "unadapted", keyed)
    assert (unadapted["pre_logits"] - plain_step0["pre_logits"]).abs().max() > 1e-3


def test_linear_cipher_key_adapt_absorbs_the_data_normalisation(tmp_path: Path) -> None:
    """The train app hands the data's mean/std to transform_vit: with a normalisation other than
    0.5 the key-adapted orthomix model still starts exactly where the plain model does."""
    norm = ["data.mean=[0.4,0.5,0.6]", "data.std=[0.2,0.25,0.3]"]
    plain = _step0(tmp_path / "plain", ["cipher=plain", "key=none", *norm])
    keyed = ["cipher=orthomix", "key=seed", "key.seed=3", *norm]
    adapted = _step0(tmp_path / "adapted", [*keyed, "model.key_adapt=true"])
    for name in ("logits", "pre_logits", "loss"):
        torch.testing.assert_close(adapted[name], plain[name], atol=1e-5, rtol=1e-5)
