"""Keyed image ciphers: the proposed block-scramble + pixel-shuffle cipher and the LE, ELE,
EtC and PE baselines, the orthomix ciphers, with key generation and key files. Pure torch/NumPy: no Lightning,
Hydra or wandb in this package."""

from vitlearnenc.ciphers.base import (
    Cipher,
    CipherInputError,
    IndexCipher,
    NotInvertibleError,
    Structure,
)
from vitlearnenc.ciphers.ele import ELECipher
from vitlearnenc.ciphers.etc import EtCCipher, EtCGrayCipher
from vitlearnenc.ciphers.keys import (
    CipherKey,
    KeyFileError,
    KeyMismatchError,
    read_key_file,
    save_key,
)
from vitlearnenc.ciphers.le import LECipher
from vitlearnenc.ciphers.orthomix import LinearPatchCipher, OrthoMixCipher, OrthoMixSubCipher
from vitlearnenc.ciphers.pe import PECipher
from vitlearnenc.ciphers.plain import PlainCipher, PreEncryptedCipher
from vitlearnenc.ciphers.plan import GatherPlan
from vitlearnenc.ciphers.proposed import ProposedCipher
from vitlearnenc.ciphers.registry import (
    UnknownCipherError,
    build_cipher,
    canonical_cipher_name,
    generate_key,
    get_cipher_class,
    list_ciphers,
    load_key,
    probe_cipher,
    register_cipher,
)

__all__ = [
    "Cipher",
    "CipherInputError",
    "CipherKey",
    "ELECipher",
    "EtCCipher",
    "EtCGrayCipher",
    "GatherPlan",
    "IndexCipher",
    "KeyFileError",
    "KeyMismatchError",
    "LECipher",
    "LinearPatchCipher",
    "NotInvertibleError",
    "OrthoMixCipher",
    "OrthoMixSubCipher",
    "PECipher",
    "PlainCipher",
    "PreEncryptedCipher",
    "ProposedCipher",
    "Structure",
    "UnknownCipherError",
    "build_cipher",
    "canonical_cipher_name",
    "generate_key",
    "get_cipher_class",
    "list_ciphers",
    "load_key",
    "probe_cipher",
    "read_key_file",
    "register_cipher",
    "save_key",
]
