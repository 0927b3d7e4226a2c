"""PE: pixel-based encryption (Sirichotedumrong, Kinoshita, Kiya, IEEE Access 2019), spec §1.5.

Per pixel: (1) negative-positive transform (``v -> 255 - v``) of each colour value independently,
one key bit per value; (2) shuffle the pixel's three colour components with one of the 6
permutations (:data:`~vitlearnenc.ciphers.etc.COLOUR_PERMUTATIONS`).

PE is meant to be used "without key management" (spec open question 9): every image gets an
independent random key that nobody keeps, and the classifier learns to ignore it. That is the
default (``per_image_keys=True``); ``per_image_keys=False`` gives an ordinary fixed-key cipher.
The fixed key is one gather plus one negation per batch
(:class:`~vitlearnenc.ciphers.base.IndexCipher`); per-image keys are applied on the batch's device
with bitwise channel selection and an in-place negation (:func:`_select_channels`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from vitlearnenc.ciphers.base import (
    CipherInputError,
    GatherPlan,
    IndexCipher,
    NotInvertibleError,
    Structure,
    check_block_grid,
)
from vitlearnenc.ciphers.etc import COLOUR_PERMUTATIONS
from vitlearnenc.ciphers.fastpath import as_integers, chunk_size, flag_operands, negate_
from vitlearnenc.ciphers.keys import CipherKey, KeyFileError, KeyRNG, check_range
from vitlearnenc.ciphers.registry import register_cipher
from vitlearnenc.ciphers.validation import check_fields, check_geometry, reject_unknown_options
from vitlearnenc.errors import InputError

#: inverse colour permutations: plain channel c = encrypted channel ``_INVERSE[code][c]``
_INVERSE_PERMUTATIONS = np.argsort(COLOUR_PERMUTATIONS, axis=1)


@register_cipher
class PECipher(IndexCipher):
    """Pixel-wise NP of every colour value + per-pixel colour shuffling.

    Option ``per_image_keys`` (bool, default True):

    - True: the key holds no secret material. :meth:`encrypt` draws a fresh key for every image
      of the batch on the batch's device and discards it, so :meth:`decrypt` raises
      :class:`NotInvertibleError` (and ``invertible`` is False for this instance). Use
      :meth:`encrypt_with_keys` / :meth:`decrypt_with_keys` when the keys are needed (tests,
      attacks that simulate the owner).
    - False: a fixed key with the fields ``negate`` (3*H*W bits; ``negate[c*H*W + y*W + x]`` =
      NP of the *plain* value (c, y, x), applied before the shuffle) and ``channel_perm`` (H*W
      codes 0..5, row-major pixels; encrypted channel c of pixel p = NP'd plain channel
      ``COLOUR_PERMUTATIONS[channel_perm[p]][c]`` of p).

    ``block_size`` is kept in the key for the common interface but unused (PE is pixel-wise).
    :meth:`key_space_bits` is the per-image key space 2^(3HW)·6^(HW) in both modes.
    """

    name = "pe"

    def __init__(self, key: CipherKey) -> None:
        super().__init__(key)
        self._tables: dict[str, torch.Tensor] = {}
        self.per_image_keys = bool(key.options["per_image_keys"])
        if self.per_image_keys:
            self.invertible = False  # per key; the class flags are the defaults
        else:  # one key for every image: each pixel keeps one value map
            self.structure = Structure.PER_PIXEL_VALUE_MAPS

    @classmethod
    def fixed_key_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        return {**options, "per_image_keys": False}

    @classmethod
    def generate_key(
        cls,
        image_size: tuple[int, int],
        block_size: int,
        rng: KeyRNG,
        per_image_keys: bool = True,
        **options: Any,
    ) -> CipherKey:
        reject_unknown_options(cls.name, options)
        if not isinstance(per_image_keys, bool):
            raise InputError(f"per_image_keys must be True or False, got {per_image_keys!r}")
        check_block_grid(image_size, block_size)
        pixels = image_size[0] * image_size[1]
        material = (
            {}
            if per_image_keys
            else {
                "negate": rng.integers(2, 3 * pixels),
                "channel_perm": rng.integers(len(COLOUR_PERMUTATIONS), pixels),
            }
        )
        key_options = {"per_image_keys": per_image_keys}
        return CipherKey(cls.name, image_size, block_size, material, key_options)

    @classmethod
    def validate_key(cls, key: CipherKey) -> None:
        per_image = key.options.get("per_image_keys")
        if not isinstance(per_image, bool):
            raise KeyFileError("a pe key needs the option per_image_keys (true or false)")
        check_geometry(key)
        if per_image:
            if key.material:
                raise KeyFileError(
                    "a pe key with per_image_keys=true holds no material, got the fields "
                    f"{sorted(key.material)}"
                )
            return
        check_fields(key, {"negate", "channel_perm"})
        pixels = key.image_size[0] * key.image_size[1]
        check_range(key["negate"], 3 * pixels, 2, "negate")
        check_range(key["channel_perm"], pixels, len(COLOUR_PERMUTATIONS), "channel_perm")

    def build_plan(self, channels: int) -> GatherPlan:
        if self.per_image_keys:
            raise NotInvertibleError("a per-image pe key has no fixed plan")
        _check_rgb(channels)
        pixels = self.image_size[0] * self.image_size[1]
        source_channel = COLOUR_PERMUTATIONS[self.key["channel_perm"]].T  # (3, H*W)
        index = (source_channel * pixels + np.arange(pixels)).ravel()
        return GatherPlan(index, self.key["negate"][index].astype(bool), spatial=False)

    def encrypt(
        self, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Encrypt ``(B, 3, H, W)`` uint8/float images (same dtype and device).

        With per-image keys, every image gets its own key drawn from ``generator`` (which must
        live on the batch's device; None: torch's default generator of that device).
        """
        if not self.per_image_keys:
            return super().encrypt(images)
        return self.encrypt_with_keys(images, generator)[0]

    def decrypt(self, images: torch.Tensor) -> torch.Tensor:
        if self.per_image_keys:
            raise NotInvertibleError(
                "pe with per_image_keys=True draws a fresh key for every image and keeps none, so "
                "its images cannot be decrypted; use encrypt_with_keys/decrypt_with_keys, or a "
                "fixed key (per_image_keys=False)"
            )
        return super().decrypt(images)

    def encrypt_with_keys(
        self, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Encrypt every image with a fresh random key (in either mode) and return the keys.

        Returns:
            The encrypted batch and the per-image keys on the batch's device: ``negate``
            ``(B, 3*H*W)`` uint8 0/1 and ``channel_perm`` ``(B, H*W)`` uint8 0..5, laid out as the
            fixed-key fields of the class docstring.
        """
        self.check_input(images)
        _check_rgb(images.shape[1])
        batch, device = images.shape[0], images.device
        pixels = self.image_size[0] * self.image_size[1]
        keys = {
            "negate": torch.randint(
                0, 2, (batch, 3 * pixels), generator=generator, device=device, dtype=torch.uint8
            ),
            "channel_perm": torch.randint(
                0,
                len(COLOUR_PERMUTATIONS),
                (batch, pixels),
                generator=generator,
                device=device,
                dtype=torch.uint8,
            ),
        }
        return self._apply_per_image(images, keys, decrypt=False), keys

    def decrypt_with_keys(
        self, images: torch.Tensor, per_image_keys: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """Invert :meth:`encrypt_with_keys` given the keys it returned."""
        self.check_input(images)
        _check_rgb(images.shape[1])
        return self._apply_per_image(images, per_image_keys, decrypt=True)

    def _apply_per_image(
        self, images: torch.Tensor, keys: dict[str, torch.Tensor], decrypt: bool
    ) -> torch.Tensor:
        batch = images.shape[0]
        pixels = self.image_size[0] * self.image_size[1]
        negate, codes = keys["negate"], keys["channel_perm"]
        if tuple(negate.shape) != (batch, 3 * pixels) or tuple(codes.shape) != (batch, pixels):
            raise CipherInputError(
                f"per-image pe keys must be negate (B, 3*H*W) and channel_perm (B, H*W) for a "
                f"batch of {batch} images; got {tuple(negate.shape)} and {tuple(codes.shape)}"
            )
        if decrypt and batch and (int(negate.max()) > 1 or int(codes.max()) >= 6):
            # keys from outside: out-of-range values would select garbage instead of failing
            raise CipherInputError(
                "per-image pe keys hold negate bits 0/1 and channel_perm codes 0..5; pass the keys "
                "that encrypt_with_keys returned"
            )
        device = images.device
        negate = negate.to(device, torch.uint8).reshape(batch, 3, pixels)
        codes = codes.to(device, torch.uint8)
        members = self._membership_bits(device, inverse=decrypt)
        out = torch.empty(images.shape, dtype=images.dtype, device=device)
        source, target = images.reshape(batch, 3, pixels), out.view(batch, 3, pixels)
        # scratch per image: the NP'd copy (3 planes), two differences and two masks (1 each)
        step = chunk_size(batch, 7 * pixels * images.element_size(), device)
        for start in range(0, batch, step):
            part = slice(start, start + step)
            flags = flag_operands(negate[part], images.dtype)
            if decrypt:  # plain value = NP of the selected ciphertext value
                _select_channels(source[part], codes[part], members, target[part])
                negate_(target[part], flags)
            else:  # NP acts on the plain values, before they are shuffled
                negated = torch.empty_like(source[part])
                negate_(source[part], flags, out=negated)
                _select_channels(negated, codes[part], members, target[part])
        return out

    def _membership_bits(self, device: torch.device, inverse: bool) -> torch.Tensor:
        """``bits[c, s]``: bit k set iff colour code k takes output channel c from channel s
        (``(3, 3)`` uint8 on ``device``; the inverse table when ``inverse``)."""
        cache_key = f"{device}{inverse}"
        if cache_key not in self._tables:
            table = _INVERSE_PERMUTATIONS if inverse else COLOUR_PERMUTATIONS
            codes = np.arange(len(table))
            bits = [[int(np.sum(1 << codes[table[:, c] == s])) for s in range(3)] for c in range(3)]
            self._tables[cache_key] = torch.tensor(bits, dtype=torch.uint8, device=device)
        return self._tables[cache_key]

    def key_space_bits(self) -> float:
        """log2 of 2^(3HW)·6^(HW), the space one image's key is drawn from (≈10^1722 at 32x32)."""
        pixels = self.image_size[0] * self.image_size[1]
        return 3 * pixels + pixels * math.log2(len(COLOUR_PERMUTATIONS))

    def is_patch_aligned(self, patch_size: int) -> bool:
        """Pixels stay in place, so every patch size that tiles the image is aligned."""
        height, width = self.image_size
        return patch_size > 0 and height % patch_size == 0 and width % patch_size == 0


def _select_channels(
    values: torch.Tensor, codes: torch.Tensor, members: torch.Tensor, out: torch.Tensor
) -> None:
    """``out[b, c, p] = values[b, s, p]`` with s the source channel of output channel c under the
    colour code ``codes[b, p]`` (``members`` from :meth:`PECipher._membership_bits`).

    Why bitwise: every image has its own code per pixel, so a gather would need a B x 3 x H x W
    int64 index built per batch (8 bytes of index per byte of image); selecting with 0/all-ones
    masks, ``v0 ^ ((v0 ^ v1) & m1) ^ ((v0 ^ v2) & m2)``, is a few vectorised passes over uint8 or
    the float bits and copies every value exactly.

    Args:
        values: ``(b, 3, P)`` uint8 or float source values.
        codes: ``(b, P)`` uint8 colour codes 0..5.
        members: ``(3, 3)`` uint8 membership bit sets.
        out: ``(b, 3, P)`` destination, same dtype as ``values``, not overlapping it.
    """
    bits = as_integers(values)
    first, second, third = bits.unbind(1)
    to_second, to_third = first ^ second, first ^ third
    target = as_integers(out)
    for channel in range(3):
        takes_second = _code_mask(members[channel, 1], codes, bits.dtype)
        takes_third = _code_mask(members[channel, 2], codes, bits.dtype)
        plane = target[:, channel]
        torch.bitwise_and(to_second, takes_second, out=plane)
        plane.bitwise_xor_(first).bitwise_xor_(takes_third.bitwise_and_(to_third))


def _code_mask(member_bits: torch.Tensor, codes: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """All-ones where bit ``codes[b, p]`` of ``member_bits`` is set, else 0, in ``dtype``."""
    flags = torch.bitwise_right_shift(member_bits, codes).bitwise_and_(1)
    return flags.neg_() if dtype == torch.uint8 else flags.to(dtype).neg_()


def _check_rgb(channels: int) -> None:
    if channels != 3:
        raise CipherInputError(
            f"the pe cipher shuffles the 3 colour components of each pixel, got {channels} "
            "channels; convert the images to RGB first"
        )
