"""The attack table and its figures from a handful of run JSONs the test writes itself."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from experiments.attacks.aggregate import main


def _run(cipher: str, attack: str, ssim: float, iterations: int | None = None) -> dict:
    stats = {"mean": ssim, "std": 0.1, "median": ssim}
    budget: dict = {"seconds": 1.0}
    if iterations is not None:
        budget = {
            "iterations": iterations,
            "epochs": iterations // 250,
            "batch_size": 64,
            "parameters": {"generator": 1000},
            "seconds": 2.0,
            "victim_train_ciphertexts": 16000,
            "natural_images": 16000,
        }
    return {
        "applicable": True,
        "attack": attack,
        "cipher": cipher,
        "image_size": 32,
        "block_size": 4,
        "n": 4,
        "ssim": stats,
        "psnr": {"mean": 10 + 10 * ssim, "std": 1.0, "median": 10.0},
        "budget": budget,
    }


def _write(runs: Path, row: str, run: dict, with_images: bool) -> None:
    (runs / f"{row}.json").write_text(json.dumps(run))
    if with_images:
        images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
        samples = {"plain": images, "encrypted": images, "restored": images}
        torch.save(
            {**samples, "ssim": torch.full((4,), run["ssim"]["mean"])}, runs / f"{row}.samples.pt"
        )


def test_budget_study_and_figures_from_kept_images(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    _write(runs, "32px-le-fr", _run("le", "fr", 0.05), with_images=True)
    _write(runs, "32px-le-gan", _run("le", "gan", 0.10, iterations=500), with_images=True)
    _write(runs, "32px-le-gan-2000it", _run("le", "gan", 0.30, 2000), with_images=True)
    shared = _run("le", "gan", 0.50, 500)
    shared["budget"]["generator"] = {"shared_adaptation": True}
    _write(runs, "32px-le-gan-shared", shared, with_images=True)
    # a row without kept images: the 32-px grid must not be rewritten from half its cells
    _write(runs, "32px-proposed-fr", _run("proposed", "fr", 0.04), with_images=False)

    main(["--results", str(tmp_path), "--log-dir", str(tmp_path / "no-logs")])

    table = (tmp_path / "table.md").read_text()
    # the table's cell is the untagged run; the tagged run only appears in the budget study
    assert "| LE | 0.050 (10.5 dB) | 0.100 (11.0 dB) |" in table
    assert (
        "- LE: 500 it 0.100 (11.0 dB), 2000 it 0.300 (13.0 dB), shared, 500 it 0.500 (15.0 dB)"
        in table
    )
    assert not (tmp_path / "grid_32.png").exists()
    assert (tmp_path / "grid_siagan_32.png").stat().st_size > 0


def test_figures_are_written_when_every_run_kept_its_images(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    for cipher in ("proposed", "le"):
        _write(runs, f"32px-{cipher}-fr", _run(cipher, "fr", 0.05), with_images=True)
    not_applicable = {**_run("pe", "jigsaw", 0.0), "applicable": False, "reason": "no blocks"}
    _write(runs, "32px-pe-fr", _run("pe", "fr", 0.2), with_images=True)
    _write(runs, "32px-pe-jigsaw", not_applicable, with_images=False)

    main(["--results", str(tmp_path), "--log-dir", str(tmp_path / "no-logs")])

    assert (tmp_path / "grid_32.png").stat().st_size > 0
    assert "- jigsaw on PE: no blocks" in (tmp_path / "table.md").read_text()


def test_population_rows_show_their_corpus_size_and_budget(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    _write(runs, "32px-le-fr", _run("le", "fr", 0.05), with_images=False)
    population = _run("le", "population", 1.0)
    population["budget"] = {"corpus_size": 10000, "public_images": 5000, "seconds": 30.2}
    _write(runs, "32px-le-population", population, with_images=False)
    at_224 = {**_run("etc", "population", 0.9), "image_size": 224, "block_size": 16}
    at_224["budget"] = {"corpus_size": 1000, "public_images": 5000, "seconds": 3.0}
    _write(runs, "224px-etc-population", at_224, with_images=False)

    main(["--results", str(tmp_path), "--log-dir", str(tmp_path / "no-logs")])

    table = (tmp_path / "table.md").read_text()
    assert "| LE | 0.050 (10.5 dB) | 1.000 (20.0 dB), N = 10,000 |" in table
    assert "| EtC | 0.900 (19.0 dB), N = 1,000 |" in table  # the 224-px section
    expected = "N = 10000 ciphertexts of the victim key + 5000 public images, 30 s"
    assert f"- `32px-le-population`: {expected}" in table
