"""The frontier table generator on synthetic result files: the strongest attack is picked, the
known-plaintext and reference rows are not attacks, missing cells say "not run", one seed shows
no spread, and no key material reaches the outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from experiments.frontier import table as frontier

FINGERPRINT = "f1n6e7p71n7a"  # a key fingerprint in the inputs: must not reach the outputs


def write(root: Path, relative: str, content: dict[str, Any] | list[Any]) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))


def attack_run(cipher: str, attack: str, ssim: float, size: int = 32, **extra: Any) -> dict:
    run = {
        "cipher": cipher,
        "attack": attack,
        "image_size": size,
        "block_size": 4 if size == 32 else 16,
        "n": 1000,
        "ssim": {"mean": ssim},
        "psnr": {"mean": 10.0},
        "budget": {"seconds": 1.0},
        "key_fingerprint": FINGERPRINT,
    }
    return run | extra


def curve_run(cipher: str, attack: str, n: int, ssim: float, oriented: float) -> dict:
    return {
        "cipher": cipher,
        "attack": attack,
        "image_size": 32,
        "block_size": 4,
        "n": n,
        "public_images": 5000,
        "ssim_mean": ssim,
        "ssim_mean_up_to_orientation": oriented,
        "attack_seconds": 3.0,
    }


def frontier_score(ssim: float) -> dict:
    budget = {"ciphertexts": 1000.0, "public_images": 5000.0, "seconds": 2.0}
    return {"ssim": ssim, "k1_accuracy": 0.0, "budget": budget}


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """A repository tree with one result of every kind the generator reads."""
    runs = "experiments/results/attacks/runs"
    write(tmp_path, f"{runs}/32px-proposed-fr.json", attack_run("proposed", "fr", 0.05))
    write(tmp_path, f"{runs}/32px-proposed-jigsaw.json", attack_run("proposed", "jigsaw", 0.6))
    write(
        tmp_path,
        f"{runs}/32px-proposed-kpa.json",
        attack_run("proposed", "kpa", 1.0, budget={"known_pairs": 1}, key_recovery={"exact": True}),
    )
    for attack, ssim in (("reference_plain", 1.0), ("reference_random", 0.04)):
        write(tmp_path, f"{runs}/32px-proposed-{attack}.json", attack_run("proposed", attack, ssim))
    write(
        tmp_path,
        f"{runs}/32px-pe-kpa.json",
        attack_run("pe", "kpa", 0.0, applicable=False, reason="a fresh key per image"),
    )
    write(
        tmp_path,
        f"{runs}/32px-pe-jigsaw.json",
        attack_run("pe", "jigsaw", 0.0, applicable=False, reason="no blocks"),
    )
    write(tmp_path, f"{runs}/32px-pe-fr.json", attack_run("pe", "fr", 0.22))
    curves = "experiments/results/attacks/population/runs"
    write(
        tmp_path,
        f"{curves}/32px-proposed-n10.json",
        curve_run("proposed", "population", 10, 0.95, 0.95),
    )
    write(tmp_path, f"{curves}/32px-orthomix-ica-n10000.json", curve_run("orthomix", "ica", 10000, 0.21, 0.90))  # fmt: skip
    orthomix = {
        "cipher": "orthomix",
        "image_size": 32,
        "block_size": 4,
        "second_order": frontier_score(0.206),
        "ica": frontier_score(0.223),
        "kpa": {"runs": [{"k": 1}, {"k": 2}], "smallest_k": 2},
    }
    matched = {
        "cipher": "orthomix",
        "victims": 1000,
        "public_images": 5000,
        **frontier_score(0.998),
    }
    bench = {"batch": 64, "threads": 2, "ratio_vs_clone": 0.02, "images_per_s": 180.0}
    write(
        tmp_path,
        "experiments/results/frontier/results.json",
        {"rows": [orthomix], "matched_domain": [matched], "throughput": {"orthomix": bench}},
    )
    utility = "experiments/results/frontier/utility"
    for seed, acc in enumerate((0.60, 0.62)):
        record = {"group": "scratch", "cipher": "plain", "seed": seed, "final_test_acc": acc}
        write(tmp_path, f"{utility}/scratch-plain-seed{seed}.json", record | {"epochs": 8})
    record = {"group": "scratch", "cipher": "orthomix", "seed": 0, "final_test_acc": 0.47}
    write(tmp_path, f"{utility}/scratch-orthomix-seed0.json", record | {"epochs": 8})
    metrics = {"cipher": "pe", "data": "cifar10", "model": "vit_mini", "seed": 0, "epochs": 6}
    write(
        tmp_path,
        "experiments/results/mini/runs/train/runs/cifar10-pe-vit_mini-seed0/metrics.json",
        metrics | {"metrics": {"test/acc": 0.15}, "key_fingerprint": FINGERPRINT},
    )
    rows = [
        {"cipher": label, "dtype": "uint8", "encrypt_ratio_to_clone": ratio,
         "encrypt_images_per_s": 1000 * ratio}
        for label, ratio in (("proposed", 0.5), ("pe", 0.4), ("pe-per-image", 0.06))
    ]  # fmt: skip
    write(
        tmp_path,
        "experiments/results/bench/ciphers_cpu.json",
        {"batch_shape": [256, 3, 224, 224], "repeats": 7, "machine": {"torch_threads": 2},
         "rows": rows},
    )  # fmt: skip
    return tmp_path


@pytest.fixture
def built(results: Path) -> dict[str, dict[str, Any]]:
    frontier.main(["--root", str(results)])
    table = json.loads((results / frontier.OUT / "frontier.json").read_text())
    return {row["cipher"]: row for row in table["rows"]}


def test_outputs_are_written(results: Path, built: dict) -> None:
    out = results / frontier.OUT
    assert (out / "privacy_utility.png").read_bytes()[:4] == b"\x89PNG"
    assert "| cipher |" in (out / "frontier.md").read_text()
    # every registered cipher has a row; pre_encrypted (no cipher) has none
    assert {"plain", "proposed", "le", "ele", "etc", "pe", "orthomix", "orthomix_sub"} <= set(built)
    assert "pre_encrypted" not in built


def test_strongest_ciphertext_only_attack_is_picked(built: dict) -> None:
    proposed = built["proposed"]["attacks"]["32/4"]
    # the population curve (0.95) beats jigsaw and FR; KPA (1.0) and the ceiling row (1.0) are
    # not ciphertext-only attacks
    assert [r["ssim"] for r in proposed] == [0.95]
    assert proposed[0]["attack"] == "population attack (pooled)"
    assert "N = 10 ciphertexts" in proposed[0]["budget"]
    assert built["proposed"]["privacy_loss"]["32/4"] == pytest.approx(0.95)
    assert built["pe"]["attacks"]["32/4"][0]["ssim"] == pytest.approx(0.22)


def test_matched_domain_and_mirror_are_shown_beside_the_standard_setting(built: dict) -> None:
    shown = built["orthomix"]["attacks"]["32/4"]
    assert [r["label"] for r in shown] == ["", "standard setting", "up to a mirror image or turn"]
    assert shown[0]["ssim"] == pytest.approx(0.998) and "one class" in shown[0]["setting"]
    assert shown[1]["ssim"] == pytest.approx(0.223)  # ICA beats second order (0.206)
    assert shown[2]["privacy_loss"] == pytest.approx(0.90)
    # the plot's x: the standard setting's (mirror included), the matched domain beside it
    assert built["orthomix"]["privacy_loss"]["32/4"] == pytest.approx(0.90)
    assert built["orthomix"]["privacy_loss_special_setting"]["32/4"] == pytest.approx(0.998)


def test_known_plaintext_column(built: dict) -> None:
    assert built["proposed"]["kpa"]["32/4"]["pairs"] == 1
    assert built["orthomix"]["kpa"]["32/4"]["pairs"] == 2
    assert built["pe"]["kpa"]["32/4"]["reason"] == "a fresh key per image"
    assert built["le"]["kpa"]["32/4"] is None


def test_missing_cells_say_not_run(results: Path, built: dict) -> None:
    md = (results / frontier.OUT / "frontier.md").read_text()
    ele = next(line for line in md.splitlines() if line.startswith("| ELE |"))
    cells = [c.strip() for c in ele.strip("|").split("|")]
    # accuracy (both recipes), both attack settings, KPA at both settings, throughput
    assert cells[1:5] == ["not run"] * 4
    assert cells[5] == "not run · not run"
    assert cells[7] == "not run"
    assert float(cells[6].split(" · ")[0].replace(",", "")) > 0  # key bits: computed, not run


def test_accuracy_columns_keep_recipes_apart_and_one_seed_has_no_spread(
    results: Path, built: dict
) -> None:
    plain = built["plain"]["accuracy"]
    assert plain["frontier_recipe"]["n"] == 2 and plain["table_i_recipe"] is None
    assert plain["frontier_recipe"]["text"] == "61.00 ± 1.41 (n=2)"
    orthomix = built["orthomix"]["accuracy"]["frontier_recipe"]
    assert orthomix["text"] == "47.00 (n=1)" and orthomix["std"] is None
    pe = built["pe"]["accuracy"]
    assert pe["frontier_recipe"] is None and pe["table_i_recipe"]["text"] == "15.00 (n=1)"
    assert "mini Table I recipe" in pe["table_i_recipe"]["recipe"]
    md = (results / frontier.OUT / "frontier.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| orthomix |"))
    assert "47.00 (n=1)" in row and "47.00 ±" not in row


def test_throughput_uses_the_per_image_key_row_for_pe(built: dict) -> None:
    assert built["pe"]["throughput"]["ratio_vs_clone"] == pytest.approx(0.06)
    assert built["proposed"]["throughput"]["ratio_vs_clone"] == pytest.approx(0.5)
    assert "frontier study" in built["orthomix"]["throughput"]["setting"]
    assert built["ele"]["throughput"] is None


def test_no_key_material_in_the_outputs(results: Path, built: dict) -> None:
    for name in ("frontier.json", "frontier.md"):
        text = (results / frontier.OUT / name).read_text()
        assert FINGERPRINT not in text and "fingerprint" not in text


def test_frontier_study_table_carries_the_mirror_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    """The orthomix study's table (experiments/attacks/frontier/run.py) puts the pooled attack's
    score up to a mirror image beside its second-order number."""
    from experiments.attacks.frontier import run
    from experiments.frontier.attacks import AttackResult

    def curves(root: Path) -> list[AttackResult]:
        return [
            AttackResult("orthomix", 32, 4, "ICA (pooled)", "", 0.21, "x", 0.90, corpus=10000),
            AttackResult("orthomix", 32, 4, "ICA (pooled)", "", 0.22, "x", 0.70, corpus=1000),
        ]

    monkeypatch.setattr(run, "curve_results", curves)
    storage = {"float32": {"bytes_per_value": 4, "max_abs_error_steps": 0.0,
                           "rms_error_steps": 0.0, "wrong_values": 0, "values": 1}}  # fmt: skip
    row = {
        "cipher": "orthomix", "image_size": 32, "block_size": 4, "victims": 1000,
        "public_images": 5000, "key_space_bits": 552.0, "floor_ciphertext_ssim": 0.015,
        "second_order": frontier_score(0.206) | {"psnr": 13.7},
        "kpa": {"smallest_k": 1},
        "weight_matching": {"k1_exact": True, "matrix_max_error": 1e-9},
        "storage": storage,
    }  # fmt: skip
    text = run.table({"rows": [row], "throughput": {}})
    line = next(x for x in text.splitlines() if x.startswith("| orthomix | 32/4 | **0.206**"))
    assert "**0.900 up to a mirror image** (as restored 0.210; ICA (pooled), N = 10,000)" in line
    assert "the second-order 0.206 understates" in text


def test_cell_names_the_fewest_ciphertexts_that_restore_and_the_floor() -> None:
    from experiments.frontier.attacks import FEWEST, AttackResult, strongest

    results = [
        AttackResult("c", 32, 4, "2nd order (pooled)", "N = 10", 0.992, "a", corpus=10),
        AttackResult("c", 32, 4, "2nd order (pooled)", "N = 1,000", 1.0, "b", corpus=1000),
        AttackResult("c", 32, 4, "FR", "1 s", 0.05, "c"),
        AttackResult(
            "d", 224, 16, "population attack (pooled)", "N = 1,000", 0.3, "d", corpus=1000
        ),
    ]
    shown = strongest(results, "c", 32)
    assert [(label, r.corpus) for label, r in shown] == [("", 1000), (FEWEST, 10)]
    assert strongest(results, "c", 224) == []
    cell = frontier.attack_cell(
        [r.as_dict() | {"label": label} for label, r in strongest(results, "d", 224)], "d", 0.367
    )
    assert cell.startswith("**0.300**") and cell.endswith("below an unrelated image's 0.367")


def test_mirror_is_shown_when_the_strongest_attack_itself_restores_a_mirror_image() -> None:
    """orthomix at 224/16: the strongest attack as restored (0.51) also scores 0.97 up to a
    mirror image; the cell must say so, not only 0.51."""
    from experiments.frontier.attacks import MIRRORED, AttackResult, strongest

    result = AttackResult("orthomix", 224, 16, "2nd order (pooled)", "N = 1,000", 0.51, "x.json",
                          ssim_up_to_orientation=0.97, corpus=1000)  # fmt: skip
    weaker = AttackResult("orthomix", 224, 16, "ICA (pooled)", "N = 100", 0.50, "y.json",
                          ssim_up_to_orientation=0.96, corpus=100)  # fmt: skip
    shown = strongest([weaker, result], "orthomix", 224)
    assert [(label, r.source) for label, r in shown] == [("", "x.json"), (MIRRORED, "x.json")]
    plain_only = AttackResult("le", 224, 16, "population", "N = 10", 0.35, "z.json", corpus=10)
    assert [label for label, _ in strongest([plain_only], "le", 224)] == [""]
