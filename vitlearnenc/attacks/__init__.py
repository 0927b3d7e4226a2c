"""Attacks that need no training — restoration (FR, jigsaw), key recovery (known plaintext,
weight matching) — and the scoring and figures shared with the learned attacks in
:mod:`vitlearnenc.tasks`. Attacks never receive the victim's key; scoring helpers compare
against the truth separately."""

from vitlearnenc.attacks.fr import fr_advanced, fr_basic
from vitlearnenc.attacks.grid import make_grid_tensor, save_attack_grid
from vitlearnenc.attacks.jigsaw import (
    JigsawResult,
    direct_accuracy,
    estimate_pixel_perm,
    jigsaw_attack,
    largest_component,
    neighbour_accuracy,
    solve_block_puzzle,
    solve_jigsaw,
)
from vitlearnenc.attacks.kpa import (
    KnownPlaintextError,
    KPAResult,
    LEKPAResult,
    decrypt_with_recovered,
    recover_le_key,
    recover_proposed_key,
    recovery_rates,
)
from vitlearnenc.attacks.scoring import psnr, ssim, ssim_gaussian, summarize
from vitlearnenc.attacks.weight_matching import (
    WeightMatchResult,
    key_recovery_rate,
    recover_key_from_weights,
)

__all__ = [
    "JigsawResult",
    "KPAResult",
    "KnownPlaintextError",
    "LEKPAResult",
    "WeightMatchResult",
    "decrypt_with_recovered",
    "direct_accuracy",
    "estimate_pixel_perm",
    "fr_advanced",
    "fr_basic",
    "jigsaw_attack",
    "key_recovery_rate",
    "largest_component",
    "make_grid_tensor",
    "neighbour_accuracy",
    "psnr",
    "recover_key_from_weights",
    "recover_le_key",
    "recover_proposed_key",
    "recovery_rates",
    "save_attack_grid",
    "solve_block_puzzle",
    "solve_jigsaw",
    "ssim",
    "ssim_gaussian",
    "summarize",
]
