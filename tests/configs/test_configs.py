"""Every option of every config group composes and instantiates; entry points print configs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import hydra
import pytest
from omegaconf import OmegaConf

from tests.helpers.hydra import composed
from vitlearnenc.ciphers import canonical_cipher_name, get_cipher_class
from vitlearnenc.models import build_classifier
from vitlearnenc.runs.build import build_datamodule, instantiate_callbacks, instantiate_loggers
from vitlearnenc.runs.config import network_config, validate_config
from vitlearnenc.runs.keys import resolve_key_source
from vitlearnenc.utils.paths import CONF_DIR

BIN = Path(sys.executable).parent


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def test_conf_dir_is_found_from_the_installed_package() -> None:
    import vitlearnenc

    assert Path(vitlearnenc.__file__).resolve().parents[1] / "conf" == CONF_DIR
    assert (CONF_DIR / "train.yaml").is_file()


@pytest.mark.parametrize("cipher", options("cipher"))
def test_every_cipher_option_builds_its_datamodule(cipher: str, tmp_path: Path) -> None:
    model = "resnet20_cifar" if cipher in {"le", "ele", "etc", "etc_gray", "pe"} else "vit_micro"
    key = "seed" if get_cipher_class(cipher).keyed else "none"
    overrides = [f"cipher={cipher}", f"key={key}", "data=synthetic", f"model={model}"]
    with composed("train", overrides, tmp_path) as cfg:
        validate_config(cfg)
        datamodule = build_datamodule(cfg, tmp_path / "run")
        datamodule.setup("fit")
        assert datamodule.cipher.name == canonical_cipher_name(cipher)  # none: pre_encrypted


@pytest.mark.parametrize("model", options("model"))
def test_every_model_option_builds(model: str, tmp_path: Path) -> None:
    overrides = [f"model={model}", "cipher=plain", "key=none"]
    if model == "vit_b16":
        overrides.append("image_size=224")
    with composed("train", overrides, tmp_path) as cfg:
        validate_config(cfg)
        net_cfg = network_config(cfg)
    if model in {"vit_b16", "pyramidnet_shakedrop", "resnet18_cifar"}:
        import torch

        with torch.device("meta"):  # large networks: check construction, skip allocation
            net = build_classifier(num_classes=10, **net_cfg)
    else:
        net = build_classifier(num_classes=10, **net_cfg)
    assert sum(p.numel() for p in net.parameters()) > 0


@pytest.mark.parametrize("key", options("key"))
def test_every_key_option_resolves(key: str, tmp_path: Path) -> None:
    from vitlearnenc.ciphers import generate_key, save_key

    key_path = save_key(generate_key("proposed", 32, 4, seed=0), tmp_path / "owner.key")
    overrides = [f"key={key}", "cipher=plain" if key == "none" else "cipher=proposed"]
    if key == "file":
        overrides.append(f"key.path={key_path}")
    with composed("train", overrides, tmp_path) as cfg:
        source = resolve_key_source(cfg, tmp_path / "run")
    expected = {"none": set(), "seed": {"key_seed"}, "file": {"key_file"}, "random": {"key_file"}}[
        key
    ]
    assert set(source) == expected


@pytest.mark.parametrize("group", ["logger", "callbacks"])
def test_every_logger_and_callback_option_instantiates(group: str, tmp_path: Path) -> None:
    for option in options(group):
        with composed("train", [f"{group}={option}"], tmp_path) as cfg:
            made = (instantiate_loggers if group == "logger" else instantiate_callbacks)(
                cfg.get(group)
            )
            assert isinstance(made, list)


@pytest.mark.parametrize("trainer", options("trainer"))
def test_every_trainer_option_instantiates(trainer: str, tmp_path: Path) -> None:
    with composed("train", [f"trainer={trainer}", "trainer.accelerator=cpu"], tmp_path) as cfg:
        made = hydra.utils.instantiate(cfg.trainer, logger=False)
    assert made.max_epochs >= 1


@pytest.mark.parametrize("optim", options("optim"))
def test_every_optim_option_builds_an_optimizer(optim: str, tmp_path: Path) -> None:
    import torch

    from vitlearnenc.tasks.optim import OptimConfig, build_optimizer, lr_lambda

    with composed("train", [f"optim={optim}"], tmp_path) as cfg:
        settings = OptimConfig(**OmegaConf.to_container(cfg.optim, resolve=True))
    optimizer = build_optimizer([{"params": [torch.nn.Parameter(torch.zeros(1))]}], settings)
    factors = [lr_lambda(settings, 100)(step) for step in range(100)]
    assert optimizer.param_groups[0]["lr"] == settings.lr
    assert all(0 <= f <= 1 for f in factors) and max(factors) == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize("launcher", ["submitit_local", "submitit_slurm", "local", "slurm"])
def test_launcher_configs_compose(launcher: str, tmp_path: Path) -> None:
    with composed("train", [f"hydra/launcher={launcher}"], tmp_path) as cfg:
        assert cfg.task_name == "train"


@pytest.mark.parametrize("config_name", ["train", "eval", "predict"])
def test_primary_configs_compose(config_name: str, tmp_path: Path) -> None:
    with composed(config_name, [], tmp_path) as cfg:
        text = OmegaConf.to_yaml(cfg)
    assert "task_name" in text


def test_saved_config_has_no_key_material(tmp_path: Path) -> None:
    """The config names the key source only; resolving it writes the key to a file."""
    with composed("train", ["key=random"], tmp_path) as cfg:
        resolve_key_source(cfg, tmp_path / "run")
        text = OmegaConf.to_yaml(cfg, resolve=True)
    from vitlearnenc.ciphers import load_key

    key = load_key(tmp_path / "run" / "key.json")
    assert str(key["block_perm"].tolist())[1:40] not in text
    assert "block_perm" not in text


@pytest.mark.parametrize(
    ("script", "args"),
    [
        ("vitlearnenc-train", []),
        ("vitlearnenc-eval", ["ckpt_path=x.ckpt", "key.path=k.json"]),
        ("vitlearnenc-predict", ["ckpt_path=x.ckpt", "input_dir=in"]),
    ],
)
def test_console_scripts_print_their_config(script: str, args: list[str]) -> None:
    result = subprocess.run(
        [str(BIN / script), *args, "--cfg", "job"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "task_name:" in result.stdout


def test_slurm_layout_must_match_the_trainer(tmp_path: Path) -> None:
    from vitlearnenc.runs.config import check_slurm_layout
    from vitlearnenc.runs.errors import ConfigError

    with composed("train", ["trainer=ddp"], tmp_path) as cfg:
        check_slurm_layout(cfg, {"SLURM_NTASKS_PER_NODE": "2", "SLURM_JOB_NUM_NODES": "1"})
        with pytest.raises(ConfigError, match="tasks_per_node=2"):
            check_slurm_layout(cfg, {"SLURM_NTASKS_PER_NODE": "1"})
        with pytest.raises(ConfigError, match="trainer.num_nodes=1"):
            check_slurm_layout(cfg, {"SLURM_NTASKS_PER_NODE": "2", "SLURM_JOB_NUM_NODES": "2"})
