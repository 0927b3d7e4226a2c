"""``vitlearnenc-attack`` end to end on tiny synthetic data, through the Hydra configs."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers.hydra import composed
from vitlearnenc.cli.attack import attack
from vitlearnenc.utils.paths import CONF_DIR, PROJECT_ROOT

BIN = Path(sys.executable).parent
TINY = [
    "data=synthetic",
    "data.native_size=16",
    "data.num_train=192",
    "data.num_test=48",
    "image_size=16",
    "attack.num_victim_images=24",
    "attack.grid_images=4",
    "logger=none",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]
LEARNED = {
    "itn": [
        "attack.num_public_images=96",
        "attack.net.base_channels=4",
        "attack.net.depth=2",
        "attack.max_epochs=1",
        "attack.batch_size=32",
    ],
    "itn_blockwise": ["attack.num_public_images=96", "attack.max_epochs=1", "attack.batch_size=32"],
    "gan": [
        "attack.num_victim_train=64",
        "attack.num_natural=64",
        "attack.batch_size=32",
        "attack.max_epochs=1",
        "attack.generator.width=8",
        "attack.generator.num_res_blocks=1",
        "attack.discriminator.width=0.0625",
        "attack.classifier.name=vit_micro",
        "+attack.classifier.img_size=16",
    ],
    "gan_lab": [
        "attack.num_victim_train=64",
        "attack.num_natural=64",
        "attack.batch_size=32",
        "attack.max_epochs=1",
        "attack.discriminator.width=8",
    ],
}


def run_attack(name: str, cipher: str, tmp_path: Path, extra: list[str] | None = None) -> dict:
    overrides = [f"attack={name}", f"cipher={cipher}", "key=seed", *TINY, *LEARNED.get(name, [])]
    with composed("attack", [*overrides, *(extra or [])], tmp_path) as cfg:
        summary = attack(cfg)
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert written["attack"] == summary["attack"] == name
    return written


def attack_options() -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / "attack").glob("*.yaml"))


def test_every_attack_option_is_covered() -> None:
    direct = {"fr", "fr_advanced", "jigsaw", "kpa", "population", "reference_plain"}
    direct |= {"reference_random", "frontier_covariance", "frontier_ica", "frontier_kpa"}
    assert set(attack_options()) == direct | set(LEARNED)


@pytest.mark.parametrize(
    "name", ["fr", "fr_advanced", "jigsaw", "kpa", "reference_plain", "reference_random"]
)
def test_direct_attacks_write_metrics_and_grid(name: str, tmp_path: Path) -> None:
    summary = run_attack(name, "proposed", tmp_path)
    run = tmp_path / "run"
    assert summary["applicable"] and summary["n"] == 24
    assert summary["block_size"] == 4 and summary["image_size"] == 16
    assert {"mean", "std", "median"} <= set(summary["ssim"]) and summary["ssim"]["n"] == 24
    assert (run / "grid.png").stat().st_size > 0
    samples = torch.load(run / "samples.pt")
    assert samples["restored"].shape == (4, 3, 16, 16) and samples["restored"].dtype == torch.uint8


@pytest.mark.parametrize("name", sorted(LEARNED))
def test_learned_attacks_write_metrics_grid_and_budget(name: str, tmp_path: Path) -> None:
    cipher = "pe" if name.startswith("itn") else "le"
    summary = run_attack(name, cipher, tmp_path)
    assert summary["applicable"] and summary["n"] == 24 and summary["cipher"] == cipher
    budget = summary["budget"]
    assert budget["epochs"] == 1 and budget["iterations"] >= 1 and budget["seconds"] > 0
    if name.startswith("itn"):
        assert budget["public_images"] == 96 and budget["images_per_key"] == 1
    else:
        assert budget["victim_train_ciphertexts"] == 64 and budget["natural_images"] == 64
    assert -1 <= summary["ssim"]["mean"] <= 1
    assert (tmp_path / "run" / "grid.png").stat().st_size > 0


def test_itn_runs_through_the_cli_path(tmp_path: Path) -> None:
    summary = run_attack("itn", "proposed", tmp_path)
    assert summary["budget"]["iterations"] == 3  # 86 training pairs in batches of 32
    assert summary["budget"]["net"]["name"] == "unet"


def test_reference_rows_bound_the_scores(tmp_path: Path) -> None:
    ceiling = run_attack("reference_plain", "pe", tmp_path / "plain")
    floor = run_attack("reference_random", "pe", tmp_path / "random")
    assert ceiling["ssim"]["mean"] == pytest.approx(1.0)
    assert ceiling["psnr"]["mean"] == pytest.approx(ceiling["psnr_cap_db"])
    assert floor["ssim"]["mean"] < 0.5 and floor["psnr"]["mean"] < 20


def test_kpa_recovers_the_proposed_key_from_one_pair(tmp_path: Path) -> None:
    summary = run_attack("kpa", "proposed", tmp_path)
    recovery = summary["key_recovery"]
    assert recovery["block_perm_fraction"] == 1.0 and recovery["pixel_perm_fraction"] == 1.0
    assert summary["ssim"]["mean"] == pytest.approx(1.0)


def test_jigsaw_reports_key_recovery(tmp_path: Path) -> None:
    summary = run_attack("jigsaw", "proposed", tmp_path)
    recovery = summary["key_recovery"]
    assert 0 <= recovery["block_direct_mean"] <= 1
    assert recovery["pixel_perm_fraction"] == 1.0  # K2 (2x2) is recovered from 24 ciphertexts


def test_jigsaw_on_etc_solves_variant_pieces_with_a_public_prior(tmp_path: Path) -> None:
    summary = run_attack("jigsaw", "etc", tmp_path, ["attack.num_public_images=48"])
    assert summary["applicable"] and summary["n"] == 24
    assert summary["budget"]["prior_images"] == 48
    assert 0 <= summary["ssim"]["mean"] <= 1
    recovery = summary["key_recovery"]
    assert 0 < recovery["block_neighbour_mean_best_orientation"] <= 1


def test_population_attack_recovers_the_proposed_key_from_the_corpus(tmp_path: Path) -> None:
    summary = run_attack("population", "proposed", tmp_path, ["attack.corpus_size=150"])
    assert summary["applicable"] and summary["n"] == 24
    assert summary["budget"]["corpus_size"] == 150 and summary["budget"]["public_images"] == 0
    assert summary["key_recovery"]["exact"] is True
    assert summary["key_recovery"]["k1_accuracy"] == 1.0
    assert summary["ssim"]["mean"] == pytest.approx(1.0)


def test_population_attack_on_pe_is_the_control_and_fails(tmp_path: Path) -> None:
    extra = ["attack.corpus_size=120", "attack.num_public_images=64"]
    summary = run_attack("population", "pe", tmp_path, extra)
    assert summary["applicable"] and summary["budget"]["public_images"] == 64
    assert summary["key_recovery"] == {}  # a fresh key per image: no key to score
    assert summary["ssim"]["mean"] < 0.3


def test_population_attack_on_channel_mix_says_why(tmp_path: Path) -> None:
    summary = run_attack("population", "proposed", tmp_path, ["cipher.options.channel_mix=true"])
    assert summary["applicable"] is False and "channel_mix" in summary["reason"]


def test_jigsaw_on_etc_original_colour_mode_is_not_applicable(tmp_path: Path) -> None:
    summary = run_attack("jigsaw", "etc", tmp_path, ["cipher.options.etc_channel_mode=original"])
    assert summary["applicable"] is False and "duplicates colour channels" in summary["reason"]


@pytest.mark.slow
@pytest.mark.data
def test_fr_restores_real_pe_images_above_the_floor(cifar10_jpeg: Path, tmp_path: Path) -> None:
    real = [f"data.root={cifar10_jpeg}", "attack.num_victim_images=200", "logger=none"]
    overrides = ["cipher=pe", "key=seed", "data=cifar10_folder", *real]
    results = {}
    for name in ("fr", "reference_random"):
        with composed("attack", [f"attack={name}", *overrides], tmp_path / name) as cfg:
            results[name] = attack(cfg)["ssim"]["mean"]
    assert results["fr"] > results["reference_random"] + 0.1  # natural images: edges survive NP


@pytest.mark.parametrize(
    ("name", "cipher"),
    [
        ("jigsaw", "pe"), ("jigsaw", "le"), ("kpa", "pe"),
        ("fr", "orthomix"), ("fr_advanced", "orthomix_sub"), ("jigsaw", "orthomix"),
    ],
)  # fmt: skip
def test_inapplicable_attacks_say_why_instead_of_failing(
    name: str, cipher: str, tmp_path: Path
) -> None:
    summary = run_attack(name, cipher, tmp_path)
    assert summary["applicable"] is False and summary["reason"]
    if name.startswith("fr"):
        assert "real-valued" in summary["reason"]
    assert not (tmp_path / "run" / "grid.png").exists()


def test_itn_trains_on_real_valued_orthomix_ciphertexts(tmp_path: Path) -> None:
    summary = run_attack("itn", "orthomix", tmp_path)
    assert summary["applicable"] and summary["n"] == 24 and summary["cipher"] == "orthomix"
    assert summary["budget"]["images_per_key"] == 1 and summary["budget"]["iterations"] == 3
    samples = torch.load(tmp_path / "run" / "samples.pt")
    assert samples["restored"].dtype == torch.uint8


def test_random_victim_key_is_stored_and_only_its_fingerprint_reported(tmp_path: Path) -> None:
    overrides = ["attack=fr", "cipher=proposed", "key=random", *TINY]
    with composed("attack", overrides, tmp_path) as cfg:
        summary = attack(cfg)
    key_file = tmp_path / "run" / "key.json"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(summary["key_fingerprint"]) == 12
    assert "block_perm" not in (tmp_path / "run" / "metrics.json").read_text()


def test_attack_config_composes_for_224_with_block_16(tmp_path: Path) -> None:
    overrides = ["attack=itn", "image_size=224", "cipher.block_size=16"]
    with composed("attack", overrides, tmp_path) as cfg:
        assert cfg.trainer.max_epochs == cfg.attack.max_epochs
        assert cfg.trainer.gradient_clip_val is None
        assert cfg.run_name.endswith("proposed-b16-itn-224px")


@pytest.mark.slow  # a fresh interpreter: 5-15 s on the shared host
def test_console_script_prints_its_config() -> None:
    result = subprocess.run(
        [str(BIN / "vitlearnenc-attack"), "attack=gan", "cipher=pe", "--cfg", "job"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "task_name: attack" in result.stdout and "sagan_discriminator" in result.stdout


@pytest.mark.slow
def test_multirun_sweep_writes_one_summary_per_job(tmp_path: Path) -> None:
    args = ["-m", "attack=fr,jigsaw", "cipher=pe,proposed", "key=seed", "experiment_name=grid"]
    tiny = [o for o in TINY if not o.startswith("trainer.")]
    result = subprocess.run(
        [str(BIN / "vitlearnenc-attack"), *args, *tiny, f"paths.log_dir={tmp_path}"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        # this checkout's code, also when the console script belongs to another install
        env={"OMP_NUM_THREADS": "1", "PATH": str(BIN), "PYTHONPATH": str(PROJECT_ROOT)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summaries = [
        json.loads(path.read_text())
        for path in (tmp_path / "attack" / "multiruns" / "grid").glob("*/metrics.json")
    ]
    applicable = {(s["attack"], s["cipher"]): s["applicable"] for s in summaries}
    assert len(summaries) == 4
    assert applicable == {
        ("fr", "pe"): True,
        ("fr", "proposed"): True,
        ("jigsaw", "pe"): False,  # said why in its metrics.json; the sweep went on
        ("jigsaw", "proposed"): True,
    }
