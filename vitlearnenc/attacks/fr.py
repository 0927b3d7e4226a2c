"""FR-Attack, feature reconstruction (Chang et al., arXiv 2004.13263; spec §2.1).

Ciphertext-only attacks on the negative-positive (NP) transform ``v -> 255 - v``: NP mirrors
intensities but keeps every edge and texture, so folding the value range or choosing, pixel by
pixel, the NP/colour-order candidate that best continues the neighbourhood brings the image's
structure back without the key.

* :func:`fr_basic` works on any cipher of 8-bit ciphertexts (the Kiya-lab pipeline applies it
  to every baseline).
* :func:`fr_advanced` targets PE (per-pixel NP of each colour value + colour shuffle).

Neither applies to real-valued ciphertexts (orthomix): they hold no 8-bit values to fold or
negate, and the attack says so instead of scoring a meaningless fold.
"""

from __future__ import annotations

import itertools

import torch

from vitlearnenc.attacks.registry import AttackContext, AttackOutcome, register_attack
from vitlearnenc.attacks.scoring import check_image_batch
from vitlearnenc.ciphers import Cipher
from vitlearnenc.errors import InputError

#: the 6 colour orders x 8 NP patterns of one RGB pixel, as (gather index, XOR mask) pairs
_ORDERS = torch.tensor(list(itertools.permutations(range(3))), dtype=torch.long)
_NP_BITS = torch.tensor([[(k >> 2) & 1, (k >> 1) & 1, k & 1] for k in range(8)], dtype=torch.int16)
_CANDIDATE_ORDER = _ORDERS.repeat_interleave(len(_NP_BITS), dim=0)  # (48, 3)
_CANDIDATE_MASK = _NP_BITS.repeat(len(_ORDERS), 1) * 255  # (48, 3), 0 or 255


def fr_basic(encrypted: torch.Tensor, rescale: bool = False) -> torch.Tensor:
    """Fold every value into the lower half: ``v`` if ``v <= 127`` else ``255 - v``.

    Values the cipher did not negate and that were at most 127 come back exactly; the rest
    are mirrored into [0, 127], so the output is a dark, structure-preserving version of the
    plain image. ``rescale=False`` is the default because it is what the reference pipeline
    scores (its MATLAB script writes the folded image as is), and because SSIM against the
    plain image then stays exact on the unchanged dark half; ``rescale=True`` doubles the
    values to fill 0..254 for viewing, which distorts that half too (on PE-encrypted CIFAR-10
    images: mean SSIM 0.24 folded, 0.11 doubled).

    Args:
        encrypted: ``(B, C, H, W)`` uint8 ciphertexts, any cipher and any key per image.
        rescale: map [0, 127] to [0, 254] by doubling.

    Returns:
        ``(B, C, H, W)`` uint8 in [0, 127] (or even values in [0, 254] with ``rescale``),
        on the input's device.
    """
    check_image_batch(encrypted, "encrypted")
    folded = torch.minimum(encrypted, 255 - encrypted)
    return folded * 2 if rescale else folded


def fr_advanced(
    encrypted: torch.Tensor, first_pixel: tuple[int, int, int] | None = None
) -> torch.Tensor:
    """Advanced FR-Attack on PE: per-pixel choice among 6 colour orders x 8 NP patterns.

    Pixels are reconstructed in raster order; each takes, of its 48 candidates, the one with
    the smallest L1 distance to its already reconstructed neighbour: the left one in row 0,
    the one above elsewhere. Rows after the first depend only on the row above, so each is
    decided at once; row 0 is sequential along the columns. Work is vectorised over the
    batch, the candidates and (after row 0) the columns: ``H + W`` small tensor steps.

    The first pixel cannot be decided from the ciphertext (every candidate is consistent);
    the result is the plain image up to one global colour order and NP pattern set by that
    guess, plus errors that propagate along the chain.

    Args:
        encrypted: ``(B, 3, H, W)`` uint8 PE ciphertexts (any key per image).
        first_pixel: RGB guess for pixel (0, 0) of every image; default: its basic fold
            (every value at most 127), the guess :func:`fr_basic` makes.

    Returns:
        ``(B, 3, H, W)`` uint8 on the input's device.
    """
    check_image_batch(encrypted, "encrypted", channels=3)
    device = encrypted.device
    order = _CANDIDATE_ORDER.to(device)
    mask = _CANDIDATE_MASK.to(device)[None, :, :, None]
    source = encrypted.to(torch.int16)
    height, width = source.shape[-2:]
    restored = torch.empty_like(source)

    def candidates(row: torch.Tensor) -> torch.Tensor:
        # (B, 3, W') -> (B, 48, 3, W'): every colour order, every NP pattern
        return row[:, order] ^ mask

    def closest(cands: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        # the candidate nearest (L1) to the reference pixels; first one on ties
        distance = (cands - reference[:, None]).abs().sum(dim=2)  # (B, 48, W')
        best = distance.argmin(dim=1)[:, None, None, :].expand(-1, 1, 3, -1)
        return cands.gather(1, best)[:, 0]

    if first_pixel is None:
        restored[:, :, 0, 0] = torch.minimum(source[:, :, 0, 0], 255 - source[:, :, 0, 0])
    else:
        if len(first_pixel) != 3 or not all(0 <= int(v) <= 255 for v in first_pixel):
            raise InputError(f"first_pixel must be three values in 0..255, got {first_pixel!r}")
        restored[:, :, 0, 0] = torch.tensor(first_pixel, dtype=torch.int16, device=device)
    row_zero = candidates(source[:, :, 0, :])
    for col in range(1, width):
        restored[:, :, 0, col] = closest(
            row_zero[..., col : col + 1], restored[:, :, 0, col - 1 : col]
        )[..., 0]
    for row in range(1, height):
        restored[:, :, row, :] = closest(
            candidates(source[:, :, row, :]), restored[:, :, row - 1, :]
        )
    return restored.to(torch.uint8)


def needs_8bit_ciphertexts(cipher: Cipher) -> str | None:
    """Applicability: FR folds and negates 8-bit values, which real-valued ciphertexts lack."""
    if cipher.real_valued_ciphertexts:
        return (
            f"FR undoes the negative-positive transform by folding 8-bit values; {cipher.name} "
            "ciphertexts are real-valued linear mixes of pixel values, with no such transform"
        )
    return None


@register_attack("fr", applies=needs_8bit_ciphertexts)
def run_fr(context: AttackContext) -> AttackOutcome:
    """FR-Attack (basic) on the victim ciphertexts; any 8-bit cipher of the plain layout."""
    rescale = bool(context.settings.get("rescale", False))
    return AttackOutcome(fr_basic(context.victim_ciphertexts, rescale=rescale))


@register_attack("fr_advanced", applies=needs_8bit_ciphertexts)
def run_fr_advanced(context: AttackContext) -> AttackOutcome:
    """FR-Attack (advanced) on the victim ciphertexts; any 8-bit cipher of the plain layout."""
    return AttackOutcome(fr_advanced(context.victim_ciphertexts))
