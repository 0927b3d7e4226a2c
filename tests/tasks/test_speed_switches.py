"""The speed switches (channels_last, bf16-mixed, torch.compile) change how a step runs, not
what it computes, and every one of them runs through the training app."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.helpers.hydra import composed, tiny_run
from vitlearnenc.cli.train import train
from vitlearnenc.tasks.classifier import ClassifierModule

SMALL = [
    *tiny_run(num_train=64, num_test=32, batch_size=16),
    "trainer=fast_dev_run",
    "key=seed",
]


def _module(channels_last: bool) -> ClassifierModule:
    torch.manual_seed(0)
    module = ClassifierModule(
        net={"name": "resnet20_cifar"}, num_classes=10, channels_last=channels_last
    )
    module.configure_model()
    return module.eval()


def test_channels_last_converts_weights_and_inputs_but_not_the_logits() -> None:
    reference, switched = _module(False), _module(True)
    switched.load_state_dict(reference.state_dict())
    conv = next(m for m in switched.net.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert not conv.weight.is_contiguous()  # really NHWC, not a 1x1 corner case
    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(switched(images), reference(images), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "switches",
    [
        ["channels_last=true", "model=resnet20_cifar"],
        ["trainer.precision=bf16-mixed", "model=vit_micro"],
    ],
    ids=["channels_last", "bf16_mixed"],
)
def test_training_app_runs_with_switch(tmp_path: Path, switches: list[str]) -> None:
    with composed("train", [*SMALL, *switches], tmp_path) as cfg:
        metrics = train(cfg)
    assert 0.0 <= metrics["test/acc"] <= 1.0


@pytest.mark.slow
def test_training_app_runs_compiled(tmp_path: Path) -> None:
    with composed("train", [*SMALL, "compile=true", "model=vit_micro"], tmp_path) as cfg:
        metrics = train(cfg)
    assert 0.0 <= metrics["test/acc"] <= 1.0
