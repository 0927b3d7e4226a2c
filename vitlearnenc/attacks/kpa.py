"""Known-plaintext key recovery for the proposed cipher (spec §2.5).

One (plain, cipher) pair of the proposed cipher gives away both keys, because every operation
is a position map that keeps values:

1. K1 (``block_perm``): sorting the RGB triplets of each sub-block removes the pixel shuffle,
   so a block's four sorted sub-blocks are a signature that the encrypted block shares with
   its plain source.
2. K2 (``pixel_perm``): with the blocks aligned, shuffled position k of every sub-block holds
   plain position ``pixel_perm[k]``; the values at one position over all aligned sub-blocks
   and channels form a sequence that (in natural images) no other position shares.

Blocks or positions whose content is not unique (uniform blocks, flat images) cannot be told
apart from one pair; they are reported as ambiguous and resolved by passing several pairs made
with the same key. Assigning them arbitrarily is harmless for the images given.

The same matching breaks LE (:func:`recover_le_key`): its one nibble permutation is shared by
every block, so encrypted nibble j's values over all blocks equal (or, where reversed, mirror)
plain nibble ``perm[j]``'s values.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from vitlearnenc.attacks.registry import (
    AttackContext,
    AttackOutcome,
    Input,
    InputKind,
    register_attack,
)
from vitlearnenc.attacks.scoring import check_image_batch
from vitlearnenc.ciphers.base import Cipher, Structure
from vitlearnenc.ciphers.keys import CipherKey
from vitlearnenc.ciphers.le import LECipher
from vitlearnenc.ciphers.nibbles import block_nibble_positions, reversal_mask
from vitlearnenc.ciphers.proposed import ProposedCipher
from vitlearnenc.errors import InputError, VitlearnencError


class KnownPlaintextError(VitlearnencError, ValueError):
    """The given pairs cannot come from the proposed cipher with this block size."""


@dataclass(frozen=True, repr=False, eq=False)
class KPAResult:
    """Recovered proposed-cipher key and what the pairs could not decide.

    Attributes:
        block_perm: ``(N,)`` int64, encrypted block i = plain block ``block_perm[i]``.
        pixel_perm: ``((M/2)^2,)`` int64, encrypted pixel k of a sub-block = plain pixel
            ``pixel_perm[k]``.
        ambiguous_blocks: encrypted block indices whose plain source is not unique (their
            content occurs in several blocks of every pair).
        ambiguous_pixels: shuffled positions whose plain position is not unique.
        image_size: (H, W) of the pairs.
        block_size: M.
    """

    block_perm: np.ndarray
    pixel_perm: np.ndarray
    ambiguous_blocks: np.ndarray
    ambiguous_pixels: np.ndarray
    image_size: tuple[int, int]
    block_size: int

    @property
    def exact(self) -> bool:
        """True if no block and no position was ambiguous: the key is determined."""
        return self.ambiguous_blocks.size == 0 and self.ambiguous_pixels.size == 0

    @property
    def key(self) -> CipherKey:
        """The recovered key as a proposed-cipher :class:`CipherKey`."""
        material = {"block_perm": self.block_perm, "pixel_perm": self.pixel_perm}
        return CipherKey(
            "proposed", self.image_size, self.block_size, material, {"channel_mix": False}
        )

    def __repr__(self) -> str:  # never show key material
        return (
            f"KPAResult(image_size={self.image_size}, block_size={self.block_size}, "
            f"ambiguous_blocks={self.ambiguous_blocks.size}, "
            f"ambiguous_pixels={self.ambiguous_pixels.size})"
        )


def recover_proposed_key(
    plain: torch.Tensor, encrypted: torch.Tensor, block_size: int
) -> KPAResult:
    """Recover the proposed cipher's K1 and K2 from known (plain, encrypted) pairs.

    Args:
        plain: ``(C, H, W)`` uint8 plain image, or ``(P, C, H, W)`` for P pairs made with the
            same key (more pairs resolve ambiguous blocks and positions).
        encrypted: the matching ciphertexts, same shape.
        block_size: M, even, dividing H and W (the cipher's block size is public).

    Returns:
        The recovered key with its ambiguous blocks and positions.

    Raises:
        KnownPlaintextError: the pairs are not a channel-tied proposed-cipher encryption with
            this block size (wrong block size, misaligned or modified images).
    """
    plain_np, enc_np = _as_pairs(plain, encrypted)
    _, _, height, width = plain_np.shape
    if block_size <= 0 or block_size % 2 or height % block_size or width % block_size:
        raise InputError(
            f"block size must be even and divide the image size {height}x{width}, got {block_size}"
        )
    plain_sub = _subblocks(plain_np, block_size)  # (N, P, 4, C, s*s)
    enc_sub = _subblocks(enc_np, block_size)
    num_blocks, positions = plain_sub.shape[0], plain_sub.shape[-1]

    # K1 from pixel-permutation-invariant signatures: sorted packed RGB values per sub-block
    block_perm, block_ambiguous = _match_rows(_signatures(plain_sub), _signatures(enc_sub), "block")

    # K2 from value sequences over the uniquely aligned blocks (all blocks if none is unique)
    reliable = ~block_ambiguous if (~block_ambiguous).any() else np.ones(num_blocks, bool)
    aligned_plain = plain_sub[block_perm[reliable]]
    aligned_enc = enc_sub[reliable]
    pixel_perm, pixel_ambiguous = _match_rows(
        aligned_plain.reshape(-1, positions).T, aligned_enc.reshape(-1, positions).T, "pixel"
    )

    # refine K1 on exact content: blocks that only shared a signature become unique
    unshuffled = np.empty_like(enc_sub)
    unshuffled[..., pixel_perm] = enc_sub
    # (an arbitrary choice among equal positions can break exact matching: keep signatures then)
    with contextlib.suppress(KnownPlaintextError):
        block_perm, block_ambiguous = _match_rows(
            plain_sub.reshape(num_blocks, -1), unshuffled.reshape(num_blocks, -1), "block"
        )

    return KPAResult(
        block_perm=block_perm,
        pixel_perm=pixel_perm,
        ambiguous_blocks=np.flatnonzero(block_ambiguous),
        ambiguous_pixels=np.flatnonzero(pixel_ambiguous),
        image_size=(height, width),
        block_size=block_size,
    )


@dataclass(frozen=True, repr=False, eq=False)
class LEKPAResult:
    """Recovered LE key and the nibble positions the pairs could not decide.

    Attributes:
        perm: ``(2*C*M^2,)`` int64 LE key (encrypted nibble j = plain nibble ``perm[j]``,
            reversal mask derived from it as in the cipher).
        ambiguous: encrypted nibble positions whose source was not unique.
        image_size: (H, W) of the pairs.
        block_size: M.
        channels: C.
    """

    perm: np.ndarray
    ambiguous: np.ndarray
    image_size: tuple[int, int]
    block_size: int
    channels: int

    @property
    def exact(self) -> bool:
        """True if every nibble position was decided."""
        return self.ambiguous.size == 0

    @property
    def key(self) -> CipherKey:
        """The recovered key as an LE :class:`CipherKey`."""
        return CipherKey(
            "le", self.image_size, self.block_size, {"perm": self.perm}, {"channels": self.channels}
        )

    def __repr__(self) -> str:  # never show key material
        return (
            f"LEKPAResult(image_size={self.image_size}, block_size={self.block_size}, "
            f"ambiguous={self.ambiguous.size})"
        )


def recover_le_key(plain: torch.Tensor, encrypted: torch.Tensor, block_size: int) -> LEKPAResult:
    """Recover an LE key (Tanaka 2018) from known (plain, encrypted) pairs.

    Every block uses the same nibble permutation, so encrypted nibble j of every block is
    plain nibble ``perm[j]`` of the same block, reversed (``15 - v``) or not, one choice for
    all blocks. The sequence of encrypted nibble j over all blocks (and pairs) is therefore
    matched against each plain nibble's sequence and its reversal.

    Args:
        plain: ``(C, H, W)`` uint8 plain image or ``(P, C, H, W)`` pairs of one key.
        encrypted: the matching LE ciphertexts.
        block_size: M, dividing H and W.

    Returns:
        The recovered key with its ambiguous positions. Unlike the proposed cipher's, an
        arbitrary choice at an ambiguous position is not harmless: LE derives its reversal
        mask from the permutation, so it can change the reversal of other nibbles. Pass more
        pairs until ``exact`` (one 32x32 CIFAR-10 image with M = 4 is exact for ~96 % of images).

    Raises:
        KnownPlaintextError: the pairs are not an LE encryption with this block size.
    """
    plain_np, enc_np = _as_pairs(plain, encrypted)
    pairs, channels, height, width = plain_np.shape
    if block_size <= 0 or height % block_size or width % block_size:
        raise InputError(
            f"block size must divide the image size {height}x{width}, got {block_size}"
        )
    positions = block_nibble_positions((height, width), block_size, channels)  # (N, L)
    length = positions.shape[1]

    def sequences(images: np.ndarray) -> np.ndarray:
        flat = images.reshape(pairs, -1)
        nibbles = np.concatenate([flat & 15, flat >> 4], axis=1)  # the ciphers' nibble vector
        return nibbles[:, positions].transpose(2, 0, 1).reshape(length, -1)  # (L, P*N)

    source, target = sequences(plain_np), sequences(enc_np)
    candidates = np.concatenate([source, 15 - source])  # row q: nibble q, row L + q: reversed
    _, group = np.unique(np.concatenate([candidates, target]), axis=0, return_inverse=True)
    group = group.reshape(-1)
    members: dict[int, list[int]] = {}
    for row, gid in enumerate(group[: 2 * length].tolist()):
        members.setdefault(gid, []).append(row % length)
    options = [sorted(set(members.get(gid, []))) for gid in group[2 * length :].tolist()]
    if any(not option for option in options):
        raise KnownPlaintextError(
            f"{sum(not option for option in options)} encrypted nibble position(s) match no "
            "plain nibble: the pair is not an LE encryption with this block size (check the "
            "block size and that the images are the same pair)"
        )
    perm = _assign_options(options, length)
    ambiguous = np.array([len(option) > 1 for option in options])
    reversed_ = reversal_mask(perm)
    flips = reversed_ != reversed_[perm]
    observed = target != np.where(flips[:, None], 15 - source[perm], source[perm])
    if observed[~ambiguous].any():
        raise KnownPlaintextError(
            "the recovered nibble permutation does not reproduce the ciphertext: the pair is "
            "not an LE encryption with this block size"
        )
    return LEKPAResult(perm, np.flatnonzero(ambiguous), (height, width), block_size, channels)


def decrypt_with_recovered(
    result: KPAResult | LEKPAResult, encrypted_batch: torch.Tensor
) -> torch.Tensor:
    """Decrypt other ciphertexts of the same key with a recovered key.

    Args:
        result: output of :func:`recover_proposed_key` or :func:`recover_le_key`.
        encrypted_batch: ``(B, C, H, W)`` uint8 ciphertexts of the image size of ``result``.

    Returns:
        ``(B, C, H, W)`` uint8 restored images, on the input's device.
    """
    check_image_batch(encrypted_batch, "encrypted_batch")
    if isinstance(result, LEKPAResult):
        return LECipher(result.key).decrypt(encrypted_batch)
    return ProposedCipher(result.key).decrypt(encrypted_batch)


def recovery_rates(
    result: KPAResult, true_block_perm: np.ndarray, true_pixel_perm: np.ndarray
) -> dict[str, float]:
    """Fractions of key entries recovered exactly (researcher-side scoring; needs the key).

    Returns:
        ``block`` and ``pixel``: fraction of ``block_perm`` / ``pixel_perm`` entries equal to
        the true key's (ambiguous entries may differ without harm).
    """
    return {
        "block": float(np.mean(result.block_perm == np.asarray(true_block_perm))),
        "pixel": float(np.mean(result.pixel_perm == np.asarray(true_pixel_perm))),
    }


def _as_pairs(plain: torch.Tensor, encrypted: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Validate the pairs and return them as ``(P, C, H, W)`` uint8 NumPy arrays."""
    if plain.ndim == 3:
        plain, encrypted = plain.unsqueeze(0), encrypted.unsqueeze(0)
    check_image_batch(plain, "plain")
    check_image_batch(encrypted, "encrypted")
    if plain.shape != encrypted.shape:
        raise InputError(
            f"plain {tuple(plain.shape)} and encrypted {tuple(encrypted.shape)} differ in shape; "
            "pass matching pairs"
        )
    return plain.cpu().numpy(), encrypted.cpu().numpy()


def _subblocks(images: np.ndarray, block_size: int) -> np.ndarray:
    """``(P, C, H, W)`` -> ``(N, P, 4, C, s*s)``: blocks row-major, sub-blocks TL TR BL BR, each
    flattened row-major (the layout of the proposed cipher's keys)."""
    pairs, channels, height, width = images.shape
    sub = block_size // 2
    grid_h, grid_w = height // block_size, width // block_size
    view = images.reshape(pairs, channels, grid_h, 2, sub, grid_w, 2, sub)
    # axes: P C gh 2 s gw 2 s -> gh gw P 2 2 C s s
    view = view.transpose(2, 5, 0, 3, 6, 1, 4, 7)
    return view.reshape(grid_h * grid_w, pairs, 4, channels, sub * sub)


def _signatures(subblocks: np.ndarray) -> np.ndarray:
    """``(N, P, 4, C, s*s)`` -> ``(N, P*4*s*s)``: each pixel's channel values packed into one
    integer, sorted within every sub-block, so the signature ignores the pixel shuffle."""
    packed = np.zeros(subblocks.shape[:3] + subblocks.shape[-1:], dtype=np.int64)
    for channel in range(subblocks.shape[3]):
        packed = (packed << 8) | subblocks[:, :, :, channel].astype(np.int64)
    return np.sort(packed, axis=-1).reshape(subblocks.shape[0], -1)


def _match_rows(source: np.ndarray, target: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Match each target row to an equal source row, one to one.

    Args:
        source: ``(n, L)`` rows of the plain side.
        target: ``(n, L)`` rows of the encrypted side.
        what: ``"block"`` or ``"pixel"``, for the error message.

    Returns:
        ``assign`` (target row i equals source row ``assign[i]``) and a boolean mask of target
        rows whose value occurs more than once (their match is one arbitrary choice).

    Raises:
        KnownPlaintextError: the two sides are not the same multiset of rows.
    """
    count = source.shape[0]
    _, group = np.unique(np.concatenate([source, target]), axis=0, return_inverse=True)
    group = group.reshape(-1)
    source_group, target_group = group[:count], group[count:]
    source_order = np.argsort(source_group, kind="stable")
    target_order = np.argsort(target_group, kind="stable")
    if not np.array_equal(source_group[source_order], target_group[target_order]):
        groups = group.max() + 1
        surplus = np.bincount(target_group, minlength=groups) - np.bincount(
            source_group, minlength=groups
        )
        unmatched = int(np.clip(surplus, 0, None).sum())
        raise KnownPlaintextError(
            f"{unmatched} encrypted {what}(s) have no plain counterpart: the pair is not a "
            "channel-tied proposed-cipher encryption with this block size (check the block "
            "size, that the images are the same pair, and that nothing was resized or compressed)"
        )
    assign = np.empty(count, dtype=np.int64)
    assign[target_order] = source_order
    ambiguous = np.bincount(source_group, minlength=group.max() + 1)[target_group] > 1
    return assign, ambiguous


def _assign_options(options: list[list[int]], length: int) -> np.ndarray:
    """A permutation taking each position's single option, then filling positions with several
    options from their unused options (or any unused value): ``(length,)`` int64."""
    perm = np.full(length, -1, dtype=np.int64)
    used = np.zeros(length, dtype=bool)
    for position, option in enumerate(options):
        if len(option) == 1:
            if used[option[0]]:
                raise KnownPlaintextError(
                    "two encrypted nibble positions map to one plain nibble: the pair is not an "
                    "LE encryption with this block size"
                )
            perm[position], used[option[0]] = option[0], True
    for position, option in enumerate(options):
        if perm[position] < 0:
            free = [value for value in option if not used[value]] or np.flatnonzero(~used).tolist()
            perm[position], used[free[0]] = free[0], True
    return perm


def score_kpa(estimate: KPAResult | LEKPAResult, key: CipherKey) -> dict[str, Any]:
    """How much of the victim key the recovered key got right (researcher side)."""
    if isinstance(estimate, LEKPAResult):
        return {
            "perm_fraction": float(np.mean(estimate.perm == key["perm"])),
            "exact": estimate.exact,
        }
    return {
        "block_perm_fraction": float(np.mean(estimate.block_perm == key["block_perm"])),
        "pixel_perm_fraction": float(np.mean(estimate.pixel_perm == key["pixel_perm"])),
        "ambiguous_blocks": int(estimate.ambiguous_blocks.size),
        "ambiguous_pixels": int(estimate.ambiguous_pixels.size),
        "exact": estimate.exact,
    }


#: the key structures whose key this module recovers, with the recovery function
_RECOVERERS = {
    Structure.PIXEL_SHUFFLED_BLOCKS: recover_proposed_key,
    Structure.SHARED_NIBBLE_PERMUTATION: recover_le_key,
}


def _kpa_applies(cipher: Cipher) -> str | None:
    if cipher.per_image_keys:
        return (
            f"{cipher.name} draws an independent key per image, so a known pair reveals nothing "
            "about the other images' keys"
        )
    if cipher.structure not in _RECOVERERS:
        return (
            f"known-plaintext key recovery is implemented for the channel-tied proposed "
            f"cipher and le, not {cipher.name}"
        )
    return None


@register_attack(
    "kpa",
    applies=_kpa_applies,
    inputs=(Input(InputKind.KNOWN_PAIRS, "num_known_pairs"),),
    score_key=score_kpa,
)
def run_kpa(context: AttackContext) -> AttackOutcome:
    """Recover the key from the known pairs, then decrypt the victim ciphertexts with it."""
    plain, encrypted = context.need("known_plain"), context.need("known_ciphertexts")
    recover = _RECOVERERS[str(context.cipher.structure)]
    result = recover(plain, encrypted, context.cipher.block_size)
    restored = decrypt_with_recovered(result, context.victim_ciphertexts)
    return AttackOutcome(restored, estimate=result, budget={"known_pairs": len(plain)})
