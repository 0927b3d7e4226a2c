"""The model's input follows the cipher's output shape: grayscale EtC (one channel, H x 3W)
gets a one-channel, non-square model and the normalisation of its one channel."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.helpers.hydra import composed
from vitlearnenc.models import build_classifier
from vitlearnenc.runs.build import build_datamodule, pooled_statistics
from vitlearnenc.runs.config import model_input_shape, network_config

BASE = ["data=synthetic", "data.num_train=16", "data.num_test=8", "image_size=16", "key=seed"]


@pytest.mark.parametrize(
    "model", [["model=vit_micro", "model.patch_size=4"], ["model=resnet20_cifar"]]
)
def test_a_layout_changing_cipher_gets_a_model_for_its_output(
    model: list[str], tmp_path: Path
) -> None:
    with composed("train", [*BASE, "cipher=etc_gray", *model], tmp_path) as cfg:
        assert model_input_shape(cfg) == (1, 16, 48)
        net = network_config(cfg)
    assert net["in_chans"] == 1 and tuple(net["img_size"]) == (16, 48)
    logits = build_classifier(num_classes=3, **net)(torch.randn(2, 1, 16, 48))
    assert logits.shape == (2, 3)


def test_a_layout_keeping_cipher_keeps_the_network_config(tmp_path: Path) -> None:
    """Ciphers that keep (C, H, W) get the same network config as before (same hparams)."""
    with composed("train", [*BASE, "cipher=proposed", "model=vit_micro"], tmp_path) as cfg:
        assert model_input_shape(cfg) == (3, 16, 16)
        net = network_config(cfg)
    assert "in_chans" not in net and net["img_size"] == 16


def test_pooled_statistics_are_those_of_the_planes_side_by_side() -> None:
    generator = torch.Generator().manual_seed(0)
    planes = torch.rand(3, 8, 8, generator=generator) * torch.tensor([0.3, 0.6, 1.0])[:, None, None]
    mean = planes.mean(dim=(1, 2)).double().tolist()
    std = planes.std(dim=(1, 2), unbiased=False).double().tolist()
    (pooled_mean,), (pooled_std,) = pooled_statistics(mean, std)
    side_by_side = torch.cat(list(planes), dim=1).double()  # H x 3W, as grayscale EtC
    assert pooled_mean == pytest.approx(side_by_side.mean().item(), abs=1e-6)
    assert pooled_std == pytest.approx(side_by_side.std(unbiased=False).item(), abs=1e-6)


def test_the_datamodule_normalises_the_one_channel(tmp_path: Path) -> None:
    overrides = [*BASE, "cipher=etc_gray", "data.mean=[0.4,0.5,0.6]", "data.std=[0.2,0.2,0.2]"]
    with composed("train", overrides, tmp_path) as cfg:
        datamodule = build_datamodule(cfg, tmp_path / "run")
    assert datamodule.mean == pytest.approx((0.5,))
    assert datamodule.std == pytest.approx(((0.04 + (0.16 + 0.25 + 0.36) / 3 - 0.25) ** 0.5,))
    datamodule.setup("fit")
    batch = datamodule.transform_batch(torch.zeros(2, 3, 16, 16, dtype=torch.uint8), train=False)
    assert batch.shape == (2, 1, 16, 48)
