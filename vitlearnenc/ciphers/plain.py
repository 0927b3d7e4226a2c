"""Identity ciphers: ``plain`` (no encryption, the accuracy ceiling) and ``pre_encrypted`` (the data is
already encrypted on the owner's side, so the provider's process holds no key)."""

from __future__ import annotations

from typing import Any

import torch

from vitlearnenc.ciphers.base import Cipher, check_block_grid
from vitlearnenc.ciphers.keys import CipherKey, KeyFileError, KeyRNG
from vitlearnenc.ciphers.registry import register_cipher
from vitlearnenc.ciphers.validation import reject_unknown_options


@register_cipher
class PlainCipher(Cipher):
    """No encryption. Its "key" carries only the image and block size, no material."""

    name = "plain"
    keyed = False

    @classmethod
    def generate_key(
        cls, image_size: tuple[int, int], block_size: int, rng: KeyRNG, **options: Any
    ) -> CipherKey:
        reject_unknown_options(cls.name, options)
        check_block_grid(image_size, block_size)
        return CipherKey(cls.name, image_size, block_size, {})

    @classmethod
    def validate_key(cls, key: CipherKey) -> None:
        if key.material:
            raise KeyFileError(f"a {cls.name!r} key holds no material, got {sorted(key.material)}")

    def encrypt(self, images: torch.Tensor) -> torch.Tensor:
        self.check_input(images)
        return images

    def decrypt(self, images: torch.Tensor) -> torch.Tensor:
        self.check_input(images)
        return images

    def key_space_bits(self) -> float:
        return 0.0

    def is_patch_aligned(self, patch_size: int) -> bool:
        return True


@register_cipher
class PreEncryptedCipher(PlainCipher):
    """Identity on data that the data owner encrypted beforehand (``cipher=pre_encrypted``;
    ``cipher=none`` is its deprecated alias)."""

    name = "pre_encrypted"
    aliases = ("none",)
    invertible = False
    pre_encrypted = True

    def decrypt(self, images: torch.Tensor) -> torch.Tensor:
        from vitlearnenc.ciphers.base import NotInvertibleError

        raise NotInvertibleError(
            "cipher 'pre_encrypted' means the images were encrypted elsewhere; only the data owner can "
            "decrypt them (vitlearnenc-decrypt --key KEY)"
        )
