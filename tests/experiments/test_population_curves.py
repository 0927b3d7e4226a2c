"""The population curves' table: smallest N per cipher, strict and up to orientation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from experiments.attacks.population.curves import aggregate


def row(cipher: str, n: int, ssim: float, exact: bool, oriented: bool = True) -> dict:
    up_to = 1.0 if exact else ssim
    record = {
        "cipher": cipher, "image_size": 32, "block_size": 4, "n": n, "public_images": 5,
        "ssim_mean": ssim if oriented else 0.2, "ssim_median": ssim, "exact_images": float(exact),
        "psnr_mean_clamped_100": 30.0, "attack_seconds": 1.0, "peak_rss_mb": 1.0,
        "orientation_right": oriented, "ssim_mean_up_to_orientation": up_to,
    }  # fmt: skip
    if cipher != "pe":
        record |= {"k1_accuracy": float(exact), "map_accuracy": float(exact), "exact": exact}
        record |= {"k1_accuracy_up_to_orientation": float(exact), "exact_up_to_orientation": exact}
        if not oriented:
            record |= {"k1_accuracy": 0.0, "map_accuracy": 0.0, "exact": False}
    return record


#: one set of rows for every test of the table: the strict and turned cells, unreached N, PE,
#: and several attacks of one cipher as separate curves
ROWS = [
    row("proposed", 1, 0.06, False),
    row("proposed", 10, 1.0, True),
    row("proposed", 10, 0.1, False) | {"attack": "nibble"},
    row("ele", 100, 0.05, False),
    row("ele", 1000, 0.99, True, oriented=False),
    row("ele", 10000, 1.0, True),
    row("pe", 10, 0.01, False),
    row("orthomix_sub", 1, 0.0, False) | {"attack": "covariance"},
    row("orthomix_sub", 10, 0.99, False) | {"attack": "covariance"},
    row("orthomix_sub", 10, 0.5, False) | {"attack": "ica"},
]


@pytest.fixture(scope="module")
def aggregated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results folder with :data:`ROWS` as row JSONs, aggregated once."""
    results = tmp_path_factory.mktemp("population")
    (results / "runs").mkdir()
    for index, record in enumerate(ROWS):
        (results / "runs" / f"{index}.json").write_text(json.dumps(record))
    aggregate(results)
    return results


def test_table_reports_smallest_n_and_what_was_not_reached(aggregated: Path) -> None:
    table = (aggregated / "table.md").read_text()
    assert "| 32/4 (ran up to 10) | proposed | 10 | 10 | 10 | 10 |" in table
    assert "| 32/4 | ELE | 10,000 | 1,000 | 10,000 | 1,000 |" in table
    assert "| 32/4 (ran up to 10) | PE | not reached at 10 | not reached at 10 |" in table
    assert (aggregated / "curves.png").stat().st_size > 0
    assert len((aggregated / "curves.csv").read_text().splitlines()) == len(ROWS) + 1


def test_attacks_of_one_cipher_are_separate_curves(aggregated: Path) -> None:
    table = (aggregated / "table.md").read_text()
    assert "| orthomix_sub (2nd order) | 10 | 10 | not at 10 | not at 10 |" in table
    assert "| orthomix_sub (ICA) | not reached at 10 |" in table
    assert "| proposed | 10 |" in table and "| proposed (nibble correlation attack" in table


def test_strongest_attack_per_cipher_takes_the_smallest_n_over_its_attacks(
    aggregated: Path,
) -> None:
    table = (aggregated / "table.md").read_text()
    assert "| 32/4 | orthomix_sub | 10 | orthomix_sub (2nd order) | 10 |" in table
    assert "| 32/4 | ELE | 10,000 | ELE | 1,000 | ELE |" in table
    assert "| 32/4 | PE | not reached at 10 | any run | not reached at 10 | any run |" in table
