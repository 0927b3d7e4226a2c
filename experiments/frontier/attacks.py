"""Every committed attack result, read into one shape, and the strongest per cipher and setting.

Three kinds of result files are read, each by its content (never by its file name), so that new
rows are picked up when the generator runs again:

- the attack table's runs (``experiments/results/attacks/runs/*.json``, one ``metrics.json`` of
  ``vitlearnenc-attack`` each: FR, ITN, GAN, SIA-GAN, jigsaw, population, the frontier attacks,
  the known-plaintext attacks);
- the population curves (``experiments/results/attacks/population/runs/*.json``, one per
  cipher, attack and corpus size N, with the score up to the image's orientation);
- the frontier study of the orthomix ciphers (``experiments/results/frontier/results.json``:
  second order and ICA, the matched-domain rows, the smallest known-plaintext k; and
  ``kpa_224.json``).

The strongest attack is chosen among the ciphertext-only attacks, the threat model of the
table; known-plaintext attacks have their own column (pairs needed for the exact key).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from experiments.attacks.aggregate import COLUMNS, budget_text, gan_variant_text

ATTACK_RUNS = Path("experiments/results/attacks/runs")
POPULATION_RUNS = Path("experiments/results/attacks/population/runs")
FRONTIER_RESULTS = Path("experiments/results/frontier/results.json")
FRONTIER_KPA_224 = Path("experiments/results/frontier/kpa_224.json")
#: the (image size, block size) settings of the table
SETTINGS = ((32, 4), (224, 16))

ATTACK_TABLE_NAMES = {
    **COLUMNS,
    "population": "population attack (pooled)",
    "frontier_covariance": "2nd order (pooled)",
    "frontier_ica": "ICA (pooled)",
}
CURVE_NAMES = {
    "population": "population attack (pooled)",
    "covariance": "2nd order (pooled)",
    "ica": "ICA (pooled)",
    "nibble": "nibble correlation (ELE solver, pooled)",
}
MATCHED_DOMAIN = "matched domain: victims and public images all of one class"


@dataclass(frozen=True)
class AttackResult:
    """One attack on one cipher at one setting: mean SSIM as restored and, where measured, up
    to the image's orientation (the best of its 8 rotations/reflections)."""

    cipher: str
    image_size: int
    block_size: int
    attack: str
    budget: str
    ssim: float
    source: str
    ssim_up_to_orientation: float | None = None
    corpus: int | None = None
    setting: str = ""

    @property
    def privacy_loss(self) -> float:
        """What the attack shows of the images: a mirrored restoration shows them as well."""
        return max(self.ssim, self.ssim_up_to_orientation or self.ssim)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"privacy_loss": self.privacy_loss}


@dataclass(frozen=True)
class KnownPlaintext:
    """The smallest number of known pairs that gave the exact key, or why there is none."""

    cipher: str
    image_size: int
    pairs: int | None
    tried: int | None
    source: str
    reason: str = ""

    def describe(self) -> str:
        if self.pairs is not None:
            return str(self.pairs)
        if self.reason:
            return "n/a"
        return f"not exact at {self.tried}"


def _load(path: Path) -> Any:
    return json.loads(path.read_text())


def _files(root: Path, folder: Path) -> list[tuple[str, dict[str, Any]]]:
    return [(str(folder / p.name), _load(p)) for p in sorted((root / folder).glob("*.json"))]


def is_known_plaintext(run: dict[str, Any]) -> bool:
    return run.get("attack") in ("kpa", "frontier_kpa") or "known_pairs" in (
        run.get("budget") or {}
    )


def attack_table_results(root: Path) -> list[AttackResult]:
    """The ciphertext-only runs of the attack table (reference rows and runs that do not apply
    are not attacks)."""
    out = []
    for source, run in _files(root, ATTACK_RUNS):
        attack = run.get("attack", "")
        if (
            not run.get("applicable", True)
            or attack.startswith("reference")
            or is_known_plaintext(run)
        ):
            continue
        name = ATTACK_TABLE_NAMES.get(attack, attack)
        if attack == "gan":
            name += f" ({gan_variant_text(run)})"
        budget = run.get("budget") or {}
        text = budget_text(run)
        if "corpus_size" in budget:
            corpus = corpus_text(budget["corpus_size"], budget.get("public_images", 0))
            text = f"{corpus}, {budget.get('seconds', 0):.0f} s"
        out.append(
            AttackResult(
                cipher=run["cipher"],
                image_size=int(run["image_size"]),
                block_size=int(run["block_size"]),
                attack=name,
                budget=f"{text}; {run['n']:,} victims",
                ssim=float(run["ssim"]["mean"]),
                source=source,
                corpus=budget.get("corpus_size"),
            )
        )
    return out


def curve_results(root: Path) -> list[AttackResult]:
    """The population curves: one result per cipher, attack and corpus size N."""
    out = []
    for source, run in _files(root, POPULATION_RUNS):
        attack = run.get("attack", "population")
        public = run.get("public_images", 0)
        out.append(
            AttackResult(
                cipher=run["cipher"],
                image_size=int(run["image_size"]),
                block_size=int(run["block_size"]),
                attack=CURVE_NAMES.get(attack, attack),
                budget=f"{corpus_text(run['n'], public)}, {run.get('attack_seconds', 0):.0f} s",
                ssim=float(run["ssim_mean"]),
                ssim_up_to_orientation=run.get("ssim_mean_up_to_orientation"),
                source=source,
                corpus=int(run["n"]),
            )
        )
    return out


def corpus_text(ciphertexts: int, public: int) -> str:
    """``N = 1,000 ciphertexts + 5,000 public images``."""
    plural = "s" if ciphertexts != 1 else ""
    return f"N = {ciphertexts:,} ciphertext{plural} + {public:,} public images"


def _frontier_budget(score: dict[str, Any]) -> str:
    budget = score["budget"]
    corpus = corpus_text(int(budget["ciphertexts"]), int(budget["public_images"]))
    return f"{corpus}, {budget.get('seconds', 0):.0f} s"


def frontier_results(root: Path) -> list[AttackResult]:
    """The frontier study's ciphertext-only rows: second order, ICA and the matched domain."""
    path = root / FRONTIER_RESULTS
    if not path.exists():
        return []
    results, source = _load(path), str(FRONTIER_RESULTS)
    out = []
    for row in results.get("rows", []):
        for key, name in (("second_order", "2nd order"), ("ica", "ICA")):
            if key in row:
                out.append(
                    AttackResult(
                        cipher=row["cipher"],
                        image_size=int(row["image_size"]),
                        block_size=int(row["block_size"]),
                        attack=f"{name} (frontier study)",
                        budget=_frontier_budget(row[key]),
                        ssim=float(row[key]["ssim"]),
                        source=source,
                        corpus=int(row[key]["budget"]["ciphertexts"]),
                    )
                )
    for row in results.get("matched_domain", []):
        out.append(
            AttackResult(
                cipher=row["cipher"],
                image_size=32,
                block_size=4,
                attack="2nd order (frontier study)",
                budget=_frontier_budget(row),
                ssim=float(row["ssim"]),
                source=source,
                corpus=int(row["budget"]["ciphertexts"]),
                setting=MATCHED_DOMAIN,
            )
        )
    return out


def all_results(root: Path) -> list[AttackResult]:
    return [*attack_table_results(root), *curve_results(root), *frontier_results(root)]


def ranked(results: Iterable[AttackResult]) -> list[AttackResult]:
    """Strongest first: highest mean SSIM as restored, then the smaller corpus (an attack that
    needs 10 ciphertexts for the same score is the stronger one)."""
    return sorted(
        results, key=lambda r: (-round(r.ssim, 3), r.corpus or 1, bool(r.setting), r.attack)
    )


#: labels of the entries :func:`strongest` adds after the strongest attack
STANDARD, MIRRORED = "standard setting", "up to a mirror image or turn"
FEWEST = "SSIM ≥ 0.9 already with"
#: the mean SSIM from which the population curves count an image set as restored
RESTORED = 0.9


def strongest(
    results: list[AttackResult], cipher: str, image_size: int
) -> list[tuple[str, AttackResult]]:
    """What a cell shows, as (label, result): the strongest attack as restored (label ""); where
    that ran in a special setting (the matched domain), the strongest in the standard setting
    too; the smallest corpus with which a standard-setting attack already reached SSIM 0.9, where
    that is smaller than the strongest one's; and the standard setting's strongest up to
    orientation where that shows more. Empty: nothing ran."""
    mine = [r for r in results if r.cipher == cipher and r.image_size == image_size]
    if not mine:
        return []
    shown = [("", ranked(mine)[0])]
    standard = [r for r in mine if not r.setting]
    if not standard:
        return shown
    base = ranked(standard)[0]
    if shown[0][1].setting:
        shown.append((STANDARD, base))
    reached = [r for r in standard if r.ssim >= RESTORED and r.corpus is not None]
    if reached and base.corpus is not None:
        fewest = min(reached, key=lambda r: (r.corpus or 0, -r.ssim))
        if (fewest.corpus or 0) < base.corpus:
            shown.append((FEWEST, fewest))
    mirrored = max(standard, key=lambda r: r.privacy_loss)
    if mirrored.privacy_loss > base.ssim + 5e-4:  # the base itself may be the mirrored one
        shown.append((MIRRORED, mirrored))
    return shown


def privacy_loss(shown: list[tuple[str, AttackResult]]) -> tuple[float | None, float | None]:
    """(what the standard setting's attacks show, what a special setting's show where more):
    the x of the privacy-utility plot."""
    standard = [r.privacy_loss for _, r in shown if not r.setting]
    special = [r.privacy_loss for _, r in shown if r.setting]
    best = max(standard) if standard else None
    more = max(special) if special and (best is None or max(special) > best) else None
    return best, more


def reference(root: Path, attack: str) -> dict[int, float]:
    """SSIM of a reference row per image size: ``reference_random`` (an unrelated image, the
    floor) or ``reference_plain`` (the plain image itself, the ceiling)."""
    return {
        int(run["image_size"]): float(run["ssim"]["mean"])
        for _, run in _files(root, ATTACK_RUNS)
        if run.get("attack") == attack
    }


def known_plaintext(root: Path) -> list[KnownPlaintext]:
    """Every known-plaintext result: the attack table's (exact key or not, or why the attack
    does not apply) and the frontier study's smallest k at 32/4 and 224/16."""
    out = []
    for source, run in _files(root, ATTACK_RUNS):
        if not is_known_plaintext(run):
            continue
        size = int(run["image_size"])
        if not run.get("applicable", True):
            out.append(KnownPlaintext(run["cipher"], size, None, None, source, run["reason"]))
            continue
        pairs = int(run["budget"]["known_pairs"])
        exact = bool((run.get("key_recovery") or {}).get("exact"))
        out.append(KnownPlaintext(run["cipher"], size, pairs if exact else None, pairs, source))
    path = root / FRONTIER_RESULTS
    if path.exists():
        for row in _load(path).get("rows", []):
            kpa = row["kpa"]
            tried = max(r["k"] for r in kpa["runs"])
            out.append(
                KnownPlaintext(
                    row["cipher"], int(row["image_size"]), kpa["smallest_k"], tried,
                    str(FRONTIER_RESULTS),
                )
            )  # fmt: skip
    path = root / FRONTIER_KPA_224
    if path.exists():
        for cipher, kpa in _load(path).items():
            if isinstance(kpa, dict) and "runs" in kpa:
                tried = max(r["k"] for r in kpa["runs"])
                out.append(
                    KnownPlaintext(cipher, 224, kpa["smallest_k"], tried, str(FRONTIER_KPA_224))
                )
    return out


def fewest_pairs(
    results: Iterable[KnownPlaintext], cipher: str, size: int
) -> KnownPlaintext | None:
    """The result with the fewest pairs for the exact key; else the largest k tried without
    it; else the reason the attack does not apply."""
    mine = [r for r in results if r.cipher == cipher and r.image_size == size]
    exact = [r for r in mine if r.pairs is not None]
    if exact:
        return min(exact, key=lambda r: r.pairs or 0)
    tried = [r for r in mine if r.tried is not None]
    if tried:
        return max(tried, key=lambda r: r.tried or 0)
    return mine[0] if mine else None
