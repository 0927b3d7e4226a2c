"""Console-script round trips for every registered keyed cipher: keygen -> encrypt -> decrypt.

Which ciphers must round-trip is decided by their capabilities (``invertible`` on a key of
the configuration), not by a list of names, so a new cipher is covered when it registers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vitlearnenc.ciphers import get_cipher_class, list_ciphers, load_key
from vitlearnenc.cli.encrypt import main_decrypt, main_encrypt
from vitlearnenc.cli.keygen import main as main_keygen

SIZE, BLOCK = 16, 4
#: option sets beyond the defaults that change a capability
VARIANTS = {"pe": [{"per_image_keys": False}], "proposed": [{"channel_mix": True}]}
CASES = [
    pytest.param(name, options, id=f"{name}-{options}" if options else name)
    for name in list_ciphers()
    if get_cipher_class(name).keyed
    for options in [{}, *VARIANTS.get(name, [])]
]


def _tree(root: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    images = {
        "a.png": rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8),
        "sub/b.png": rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8),
    }
    for name, pixels in images.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(root / name)
    return images


def _option_args(options: dict) -> list[str]:
    return [a for k, v in options.items() for a in ("--option", f"{k}={str(v).lower()}")]


def test_every_keyed_cipher_is_covered() -> None:
    covered = {case.values[0] for case in CASES}
    assert {"proposed", "le", "ele", "etc", "etc_gray", "pe"} <= covered


@pytest.mark.parametrize(("name", "options"), CASES)
def test_console_scripts_round_trip_every_invertible_cipher(
    name: str, options: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "owner.key"
    geometry = ["--image-size", str(SIZE), "--block-size", str(BLOCK)]
    assert (
        main_keygen(["--cipher", name, *geometry, *_option_args(options), "--out", str(key)]) == 0
    )
    plain = _tree(tmp_path / "plain")
    status = main_encrypt(
        ["--key", str(key), "--quiet", str(tmp_path / "plain"), str(tmp_path / "enc")]
    )
    assert status == 0
    if get_cipher_class(name).real_valued_ciphertexts:  # 8-bit PNGs cannot hold them: .npy
        encrypted = np.load(tmp_path / "enc" / "a.npy").transpose(1, 2, 0)
        assert encrypted.dtype == np.float32  # the key's default storage dtype
    else:
        encrypted = np.asarray(Image.open(tmp_path / "enc" / "a.png"))
    assert not np.array_equal(encrypted, plain["a.png"])
    capsys.readouterr()
    status = main_decrypt(["--key", str(key), str(tmp_path / "enc"), str(tmp_path / "dec")])
    cipher = get_cipher_class(name)(load_key(key))
    if not cipher.invertible:
        assert status == 2 and "cannot be decrypted" in capsys.readouterr().err
        assert not (tmp_path / "dec").exists()
        return
    assert status == 0
    for file, pixels in plain.items():
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "dec" / file)), pixels)
