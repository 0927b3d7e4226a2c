"""The training entry point end to end on synthetic data, through the Hydra configs."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import torch

from tests.helpers.hydra import composed, tiny_run
from vitlearnenc.cli.train import train
from vitlearnenc.runs.errors import ConfigError
from vitlearnenc.tasks.classifier import ClassifierModule

SMALL = tiny_run()


def test_fast_dev_run_encrypted(tmp_path: Path) -> None:
    with composed(
        "train", [*SMALL, "trainer=fast_dev_run", "key=seed", "key.seed=3"], tmp_path
    ) as cfg:
        metrics = train(cfg)
    assert "test/acc" in metrics and 0.0 <= metrics["test/acc"] <= 1.0
    summary = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert summary["cipher"] == "proposed" and summary["key_source"] == "seed"


def test_training_learns_on_encrypted_images_and_reports(tmp_path: Path) -> None:
    overrides = [
        *SMALL,
        "trainer.max_epochs=3",
        "optim.lr=3e-3",
        "callbacks=default",
        "callbacks.progress_bar=null",
        "key=random",
    ]
    with composed("train", overrides, tmp_path) as cfg:
        metrics = train(cfg)
    run = tmp_path / "run"
    assert metrics["test/acc"] > 0.3  # 10 classes: chance is 0.1
    key_file = run / "key.json"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    summary = json.loads((run / "metrics.json").read_text())
    assert summary["metrics"]["test/acc"] == pytest.approx(metrics["test/acc"])
    assert summary["key_fingerprint"] and summary["key_space_bits"] > 0
    assert (run / "curves.png").stat().st_size > 0
    assert (run / "samples.png").stat().st_size > 0
    # the checkpoint rebuilds itself without Hydra and predicts like the trained module
    ckpt = run / "checkpoints" / "last.ckpt"
    restored = ClassifierModule.load_from_checkpoint(ckpt, map_location="cpu")
    assert restored.hparams.net["name"] == "vit_micro"


def test_resume_continues_from_last_checkpoint(tmp_path: Path) -> None:
    base = [
        *tiny_run(callbacks="model_checkpoint"),
        "key=seed",
        "trainer.limit_train_batches=2",
        "test=false",
    ]
    with composed("train", [*base, "trainer.max_epochs=1"], tmp_path) as cfg:
        train(cfg)
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    first = torch.load(ckpt, weights_only=False)
    assert first["global_step"] == 2
    with composed("train", [*base, "trainer.max_epochs=2", "ckpt_path=auto"], tmp_path) as cfg:
        train(cfg)
    state = torch.load(ckpt, weights_only=False)
    assert state["global_step"] == 4  # 2 steps before the restart + 2 after, not 2 + 4


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["cipher.block_size=8"], "not aligned with the ViT's patch size 4"),
        (["image_size=30"], "does not fit image_size=30"),
        (["model=resnet20_cifar", "model.key_adapt=true"], "needs a ViT"),
        (["cipher=etc", "model.key_adapt=true"], "needs cipher=.*proposed.* \\(got etc\\)"),
        (["cipher=proposed", "key=none"], "needs a key"),
    ],
)
def test_config_errors_before_data_is_loaded(
    tmp_path: Path, overrides: list[str], message: str
) -> None:
    with (
        composed("train", [*SMALL, *overrides], tmp_path) as cfg,
        pytest.raises(ConfigError, match=message),
    ):
        train(cfg)
    assert not (tmp_path / "data").exists()


def test_exported_network_starts_a_new_run_through_model_checkpoint(tmp_path: Path) -> None:
    from vitlearnenc.tasks.classifier import export_network_weights

    overrides = [
        *tiny_run(callbacks="model_checkpoint"),
        "cipher=plain",
        "key=none",
        "trainer.max_epochs=1",
        "test=false",
    ]
    with composed("train", overrides, tmp_path / "b") as cfg:
        train(cfg)
    ckpt = next((tmp_path / "b" / "run" / "checkpoints").glob("last.ckpt"))
    weights = export_network_weights(ckpt, tmp_path / "net.safetensors")
    source = ClassifierModule.load_from_checkpoint(ckpt, map_location="cpu").net
    from vitlearnenc.models import build_classifier

    restored = build_classifier("vit_micro", num_classes=5, img_size=32, checkpoint=str(weights))
    for name, tensor in restored.state_dict().items():
        if not name.startswith("head"):
            torch.testing.assert_close(tensor, source.state_dict()[name], rtol=0, atol=0)
