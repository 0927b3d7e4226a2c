"""The aggregation runs on a tiny sweep that the test makes itself."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from experiments.aggregate import collect, main, read_attack_ssim
from tests.helpers.hydra import composed
from vitlearnenc.cli.train import train


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sweep")
    for cipher, seed in [("plain", 0), ("plain", 1), ("proposed", 0), ("proposed", 1)]:
        overrides = [
            "data=synthetic",
            "data.num_train=64",
            "data.num_test=32",
            "data.batch_size=16",
            "data.num_workers=0",
            "model=vit_micro",
            "trainer=fast_dev_run",
            "callbacks=none",
            f"cipher={cipher}",
            "key=seed",
            f"key.seed={seed}",
            f"seed={seed}",
        ]
        with composed("train", overrides, root / f"{cipher}{seed}") as cfg:
            train(cfg)
    return root


def test_table_and_plots(sweep: Path, tmp_path: Path) -> None:
    rows = collect([sweep])
    assert [(r.cipher, len(r.accuracies)) for r in rows] == [("plain", 2), ("proposed", 2)]
    attacks = tmp_path / "attacks.csv"
    with attacks.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerows(
            [
                ["cipher", "attack", "ssim_mean"],
                ["proposed", "fr", "0.05"],
                ["proposed", "jigsaw", "0.6"],
                ["plain", "reference_plain", "1.0"],
            ]
        )
    out = tmp_path / "out"
    main([str(sweep), "--out", str(out), "--attacks", str(attacks)])
    table = (out / "table.md").read_text()
    assert "| synthetic | proposed | vit_micro |" in table and "minus plain" in table
    records = list(csv.DictReader((out / "table.csv").open()))
    expected = (
        100
        * sum(
            json.loads(p.read_text())["metrics"]["test/acc"]
            for p in sweep.rglob("metrics.json")
            if json.loads(p.read_text())["cipher"] == "plain"
        )
        / 2
    )
    plain = next(r for r in records if r["encryption"] == "plain")
    assert float(plain["accuracy (%)"].split(" ± ")[0]) == pytest.approx(expected, abs=0.01)
    assert plain["runs"] == "2"
    proposed = next(r for r in records if r["encryption"] == "proposed")
    assert proposed["best attack SSIM (32 px)"] == "0.600 (jigsaw)"  # strongest of fr / jigsaw
    assert plain["best attack SSIM (32 px)"] == "—"  # reference rows are not attacks
    assert (out / "accuracy.png").stat().st_size > 0 and (
        out / "privacy_utility.png"
    ).stat().st_size > 0


def test_paper_numbers_for_matching_rows() -> None:
    from experiments.aggregate import Row

    row = Row("cifar10", "proposed", "vit_mini", None, [90.0])
    assert row.paper() == 96.64
    assert Row("cifar100", "le", "resnet20_cifar", "le", [50.0]).paper() == 75.48
    assert Row("cifar10", "le", "vit_mini", None, [50.0]).paper() is None
    assert Row("cifar10", "pe", "resnet20_cifar", None, [50.0]).paper_network == "ResNet-18"
    assert Row("cifar10", "etc", "resnet20_cifar", None, [50.0]).paper_network == "ShakeDrop"
    # full-scale runs are compared with their own network's row
    assert Row("cifar10", "plain", "resnet18_cifar", None, [50.0]).paper() == 95.53
    assert Row("cifar10", "plain", "pyramidnet110_shakedrop", None, [50.0]).paper() == 96.70
    assert Row("cifar100", "plain", "resnet18_cifar", None, [50.0]).paper() is None
    assert Row("cifar10", "le", "pyramidnet110_shakedrop", None, [50.0]).paper() is None  # no LE
    vit_b16 = Row("cifar100", "plain", "vit_base_patch16_224.augreg_in21k", None, [50.0])
    assert vit_b16.paper() == 92.48 and vit_b16.paper_network == "ViT-B/16"


def test_gap_pairs_runs_by_seed() -> None:
    from experiments.aggregate import Row, gaps

    plain = Row("cifar10", "plain", "vit_mini", None, [50.0, 52.0, 60.0], [0, 1, 2])
    proposed = Row("cifar10", "proposed", "vit_mini", None, [51.0, 50.0], [1, 0])
    other = Row("cifar10", "proposed", "resnet20_cifar", None, [40.0], [0])  # no plain row
    by_network = gaps([plain, proposed, other])
    assert list(by_network) == [("cifar10", "vit_mini")]
    gap = by_network[("cifar10", "vit_mini")]
    assert gap.of_means == pytest.approx(50.5 - 54.0)
    assert gap.per_seed == {0: 0.0, 1: -1.0}  # seed 2 has no proposed run to pair with
    line = gap.describe()
    assert "-3.50 points" in line and "2 proposed and 3 plain runs" in line
    assert "per seed 0: +0.00, 1: -1.00; paired -0.50 ± 0.71 over 2 seeds" in line
    single = gaps([plain, Row("cifar10", "proposed", "vit_mini", None, [55.0], [0])])
    assert "paired" not in single[("cifar10", "vit_mini")].describe()  # one pair: no spread


def test_best_attack_takes_population_rows_at_32_px_and_ignores_kpa(tmp_path: Path) -> None:
    attacks = tmp_path / "attacks.csv"
    with attacks.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerows(
            [
                ["cipher", "attack", "image_size", "ssim_mean"],
                ["le", "fr", "32", "0.05"],
                ["le", "population", "32", "0.99"],
                ["le", "kpa", "32", "1.0"],
                ["pe", "fr", "32", "0.22"],
                ["pe", "population", "32", "0.01"],
                ["etc", "population", "224", "1.0"],
                ["etc", "fr", "32", "0.1"],
                ["orthomix", "frontier_covariance", "32", "0.2"],
                ["orthomix", "frontier_ica", "32", "0.21"],
                ["orthomix", "frontier_kpa", "32", "1.0"],
            ]
        )
    best = read_attack_ssim(attacks)
    assert best == {
        "le": (0.99, "population"),
        "pe": (0.22, "fr"),
        "etc": (0.1, "fr"),
        "orthomix": (0.21, "frontier_ica"),
    }
