"""Baseline ciphers (spec §1.2-1.5): LE, ELE, EtC (colour and grayscale-based) and PE.

Every cipher is checked against a slow reference written here from the spec's steps, with
explicit Python loops over blocks (or pixels) and no code shared with the implementation.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vitlearnenc.ciphers import (
    CipherInputError,
    CipherKey,
    KeyFileError,
    KeyMismatchError,
    NotInvertibleError,
    build_cipher,
    generate_key,
    get_cipher_class,
    list_ciphers,
    load_key,
    save_key,
)
from vitlearnenc.ciphers.base import Cipher

# (registry name, key options): every invertible baseline configuration
INVERTIBLE = [
    pytest.param("le", {}, id="le"),
    pytest.param("ele", {}, id="ele"),
    pytest.param("etc", {}, id="etc"),
    pytest.param("etc_gray", {}, id="etc_gray"),
    pytest.param("pe", {"per_image_keys": False}, id="pe-fixed"),
]
GEOMETRIES = [((8, 8), 2), ((8, 8), 4), ((16, 24), 4), ((16, 24), 8), ((32, 32), 4)]

# The reference code's colour operation: (destination, source) channel assignments per code 0..5.
COLOUR_ASSIGNMENTS = {
    0: [],
    1: [(0, 1), (1, 0)],
    2: [(0, 2), (2, 0)],
    3: [(1, 2), (2, 1)],
    4: [(0, 2), (1, 0), (2, 1)],
    5: [(0, 1), (1, 2), (2, 0)],
}


def random_images(height: int, width: int, batch: int = 2, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, 3, height, width), dtype=torch.uint8, generator=generator)


def make_cipher(
    name: str, options: dict, size: tuple[int, int], block: int, seed: int = 7
) -> Cipher:
    return build_cipher(name, size, block, seed=seed, **options)


def with_field(key: CipherKey, field: str, value: np.ndarray) -> CipherKey:
    material = dict(key.material)
    material[field] = value
    return CipherKey(key.method, key.image_size, key.block_size, material, key.options)


# ---------------------------------------------------------------------------------------------
# slow references, literally following the spec's steps
# ---------------------------------------------------------------------------------------------
def blocks_of(height: int, width: int, block: int) -> list[tuple[slice, slice]]:
    """(row slice, column slice) of every block, row-major."""
    return [
        (slice(r, r + block), slice(c, c + block))
        for r in range(0, height, block)
        for c in range(0, width, block)
    ]


def reference_le_block(block_hwc: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Spec §1.2 on one (M, M, 3) uint8 block: nibble split, reverse, permute, reverse, merge."""
    size = block_hwc.shape[0]
    flat = block_hwc.reshape(-1).astype(np.int64)  # row, column, channel order
    nibbles = np.concatenate([flat & 15, flat >> 4])  # low nibbles first
    reversed_positions = key > 3 * size * size
    nibbles[reversed_positions] = 15 - nibbles[reversed_positions]
    nibbles = nibbles[key]
    nibbles[reversed_positions] = 15 - nibbles[reversed_positions]
    merged = nibbles[: flat.size] + (nibbles[flat.size :] << 4)
    return merged.reshape(block_hwc.shape).astype(np.uint8)


def reference_le(
    images: torch.Tensor, block: int, keys: np.ndarray, block_perm: np.ndarray
) -> torch.Tensor:
    """LE/ELE: the LE operation with key row b on plain block b, then block shuffling."""
    hwc = images.permute(0, 2, 3, 1).numpy()
    out = np.empty_like(hwc)
    regions = blocks_of(hwc.shape[1], hwc.shape[2], block)
    for n in range(hwc.shape[0]):
        transformed = [
            reference_le_block(hwc[n, rows, cols], keys[b])
            for b, (rows, cols) in enumerate(regions)
        ]
        for i, (rows, cols) in enumerate(regions):
            out[n, rows, cols] = transformed[block_perm[i]]
    return torch.from_numpy(out).permute(0, 3, 1, 2)


def reference_colour(values: torch.Tensor, code: int, in_place: bool) -> torch.Tensor:
    """Colour shuffle of a (3, ...) tensor by the reference code's assignments; in place (the
    original, channel-duplicating code) or simultaneously (a true permutation)."""
    out = values.clone()
    source = out if in_place else values
    for destination, origin in COLOUR_ASSIGNMENTS[code]:
        out[destination] = source[origin]
    return out


def reference_etc(
    images: torch.Tensor, block: int, key: CipherKey, in_place: bool = False
) -> torch.Tensor:
    """EtC §1.4: scramble, rotate/flip, NP, colour shuffle, with per-block loops."""
    out = torch.empty_like(images)
    regions = blocks_of(images.shape[2], images.shape[3], block)
    for n in range(images.shape[0]):
        for i, (rows, cols) in enumerate(regions):
            source_rows, source_cols = regions[key["block_perm"][i]]
            piece = images[n, :, source_rows, source_cols]
            transform = int(key["transform"][i])
            piece = torch.rot90(piece, transform % 4, dims=(1, 2))
            if transform >= 4:
                piece = torch.flip(piece, dims=(2,))
            if key["negate"][i]:
                piece = 255 - piece
            out[n, :, rows, cols] = reference_colour(piece, int(key["channel_perm"][i]), in_place)
    return out


def reference_etc_gray(images: torch.Tensor, block: int, key: CipherKey) -> torch.Tensor:
    """Grayscale EtC: R | G | B side by side, then scramble, rotate/flip and NP per block."""
    gray = torch.cat([images[:, 0], images[:, 1], images[:, 2]], dim=2)  # (B, H, 3W)
    out = torch.empty_like(gray)
    regions = blocks_of(gray.shape[1], gray.shape[2], block)
    for n in range(gray.shape[0]):
        for i, (rows, cols) in enumerate(regions):
            source_rows, source_cols = regions[key["block_perm"][i]]
            piece = gray[n, source_rows, source_cols]
            transform = int(key["transform"][i])
            piece = torch.rot90(piece, transform % 4, dims=(0, 1))
            if transform >= 4:
                piece = torch.flip(piece, dims=(1,))
            if key["negate"][i]:
                piece = 255 - piece
            out[n, rows, cols] = piece
    return out.unsqueeze(1)


def reference_pe(image: torch.Tensor, negate: np.ndarray, channel_perm: np.ndarray) -> torch.Tensor:
    """PE §1.5 on one (3, H, W) image: per value NP, then per pixel colour shuffle."""
    _, height, width = image.shape
    out = torch.empty_like(image)
    for y in range(height):
        for x in range(width):
            pixel = image[:, y, x].clone()
            for c in range(3):
                if negate[c * height * width + y * width + x]:
                    pixel[c] = 255 - pixel[c]
            out[:, y, x] = reference_colour(pixel, int(channel_perm[y * width + x]), in_place=False)
    return out


def reference(name: str, cipher: Cipher, images: torch.Tensor) -> torch.Tensor:
    key, block = cipher.key, cipher.block_size
    if name == "le":  # one key for every block, blocks stay in place
        num_blocks = images.shape[2] * images.shape[3] // block**2
        keys = np.repeat(key["perm"][None], num_blocks, axis=0)
        return reference_le(images, block, keys, np.arange(num_blocks))
    if name == "ele":
        num_blocks = key["block_perm"].size
        return reference_le(images, block, key["perms"].reshape(num_blocks, -1), key["block_perm"])
    if name == "etc":
        return reference_etc(
            images, block, key, in_place=cipher.key.options["etc_channel_mode"] == "original"
        )
    if name == "etc_gray":
        return reference_etc_gray(images, block, key)
    return torch.stack(
        [reference_pe(image, key["negate"], key["channel_perm"]) for image in images]
    )


# ---------------------------------------------------------------------------------------------
# behaviour
# ---------------------------------------------------------------------------------------------
def test_baselines_are_registered() -> None:
    assert {"le", "ele", "etc", "etc_gray", "pe"} <= set(list_ciphers())


@pytest.mark.parametrize(("name", "options"), INVERTIBLE)
@pytest.mark.parametrize(("size", "block"), [((8, 8), 2), ((16, 24), 4)])
def test_matches_slow_reference(
    name: str, options: dict, size: tuple[int, int], block: int
) -> None:
    cipher = make_cipher(name, options, size, block)
    images = random_images(*size)
    torch.testing.assert_close(
        cipher.encrypt(images), reference(name, cipher, images), rtol=0, atol=0
    )


@pytest.mark.parametrize("seed", [1, 2])
def test_etc_original_mode_matches_reference_code(seed: int) -> None:
    cipher = make_cipher("etc", {"etc_channel_mode": "original"}, (16, 24), 4, seed=seed)
    images = random_images(16, 24)
    expected = reference_etc(images, 4, cipher.key, in_place=True)
    torch.testing.assert_close(cipher.encrypt(images), expected, rtol=0, atol=0)


@pytest.mark.parametrize(("name", "options"), INVERTIBLE)
@pytest.mark.parametrize(("size", "block"), GEOMETRIES)
def test_round_trip_uint8(name: str, options: dict, size: tuple[int, int], block: int) -> None:
    cipher = make_cipher(name, options, size, block)
    images = random_images(*size, batch=3)
    encrypted = cipher.encrypt(images)
    assert encrypted.dtype == torch.uint8
    assert tuple(encrypted.shape) == (3, *cipher.output_shape(3))
    torch.testing.assert_close(cipher.decrypt(encrypted), images, rtol=0, atol=0)


@pytest.mark.parametrize(("name", "options"), INVERTIBLE)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_round_trip_float(name: str, options: dict, dtype: torch.dtype) -> None:
    cipher = make_cipher(name, options, (16, 24), 4)
    images = random_images(16, 24)
    floats = images.to(dtype) / 255
    encrypted = cipher.encrypt(floats)
    assert encrypted.dtype == dtype
    # float encryption equals uint8 encryption of the same 8-bit values
    torch.testing.assert_close(encrypted, cipher.encrypt(images).to(dtype) / 255)
    torch.testing.assert_close(cipher.decrypt(encrypted), floats)


@pytest.mark.parametrize("name", ["le", "ele"])
def test_nibble_ciphers_quantise_float_input(name: str) -> None:
    cipher = make_cipher(name, {}, (8, 8), 4)
    generator = torch.Generator().manual_seed(3)
    floats = torch.rand(2, 3, 8, 8, generator=generator)
    quantised = (floats * 255).round() / 255
    torch.testing.assert_close(cipher.decrypt(cipher.encrypt(floats)), quantised, rtol=0, atol=0)


@pytest.mark.parametrize(("name", "options"), INVERTIBLE)
def test_encryption_changes_the_image(name: str, options: dict) -> None:
    cipher = make_cipher(name, options, (32, 32), 4)
    images = random_images(32, 32)
    encrypted = cipher.encrypt(images)
    if name == "etc_gray":  # compare with the unencrypted side-by-side layout
        images = torch.cat(images.unbind(1), dim=2).unsqueeze(1)
    changed = (encrypted != images).float().mean().item()
    assert changed > 0.5


@pytest.mark.parametrize(("name", "options"), INVERTIBLE)
def test_same_seed_same_key_new_seed_new_key(name: str, options: dict) -> None:
    key = generate_key(name, (16, 24), 4, seed=11, **options)
    assert key == generate_key(name, (16, 24), 4, seed=11, **options)
    assert key != generate_key(name, (16, 24), 4, seed=12, **options)
    assert generate_key(name, (16, 24), 4, **options) != generate_key(name, (16, 24), 4, **options)
    cipher, images = get_cipher_class(name)(key), random_images(16, 24)
    other = make_cipher(name, options, (16, 24), 4, seed=12)
    assert not torch.equal(cipher.encrypt(images), other.encrypt(images))


@pytest.mark.parametrize(("name", "options"), INVERTIBLE)
def test_key_file_round_trip(name: str, options: dict, tmp_path) -> None:
    cipher = make_cipher(name, options, (16, 24), 4)
    path = save_key(cipher.key, tmp_path / f"{name}.json")
    loaded = load_key(path, method=name, image_size=(16, 24), block_size=4)
    assert loaded == cipher.key
    images = random_images(16, 24)
    torch.testing.assert_close(
        get_cipher_class(name)(loaded).encrypt(images), cipher.encrypt(images)
    )


@pytest.mark.parametrize(
    ("name", "options", "decimal_exponent"),
    [
        ("le", {}, 179),
        ("ele", {}, 11538),
        ("etc", {}, 216),
        ("etc_gray", {}, 588),
        ("pe", {}, 1722),
        ("pe", {"per_image_keys": False}, 1722),
    ],
)
def test_key_space_matches_the_spec(name: str, options: dict, decimal_exponent: int) -> None:
    cipher = make_cipher(name, options, (32, 32), 4)
    assert abs(cipher.key_space_bits() * math.log10(2) - decimal_exponent) < 0.5


def test_key_space_formulas_at_another_size() -> None:
    """B = 2 on 8x8: LE (24)!·2^24; ELE {(24)!·2^24}^16·16!; EtC 16!·96^16; gray 48!·16^48."""
    log2_fact = lambda n: math.lgamma(n + 1) / math.log(2)  # noqa: E731
    le_bits = log2_fact(24) + 24
    expected = {
        "le": le_bits,
        "ele": 16 * le_bits + log2_fact(16),
        "etc": log2_fact(16) + 16 * math.log2(96),
        "etc_gray": log2_fact(48) + 48 * 4,
        "pe": 3 * 64 + 64 * math.log2(6),
    }
    for name, bits in expected.items():
        assert make_cipher(name, {}, (8, 8), 2).key_space_bits() == pytest.approx(bits, rel=1e-12)


@pytest.mark.parametrize(
    ("name", "aligned", "not_aligned"),
    [
        ("le", [4, 8, 16, 32], [2, 6, 12]),
        ("ele", [4], [2, 8, 16]),
        ("etc", [4], [2, 8, 16]),
        ("etc_gray", [4], [2, 8]),
        ("pe", [1, 2, 4, 8, 16, 32], [3, 12]),
    ],
)
def test_patch_alignment(name: str, aligned: list[int], not_aligned: list[int]) -> None:
    cipher = make_cipher(name, {}, (32, 32), 4)
    assert all(cipher.is_patch_aligned(p) for p in aligned)
    assert not any(cipher.is_patch_aligned(p) for p in not_aligned)


def test_le_key_derived_reversal_mask() -> None:
    """Identity key: the mask positions are reversed twice, so LE is the identity; and exactly
    3B^2 - 1 positions are reversed (0-based key values > 3B^2)."""
    from vitlearnenc.ciphers.nibbles import reversal_mask

    identity = CipherKey("le", (8, 8), 4, {"perm": np.arange(96)}, {"channels": 3})
    images = random_images(8, 8)
    torch.testing.assert_close(get_cipher_class("le")(identity).encrypt(images), images)
    assert int(reversal_mask(np.random.default_rng(0).permutation(96)).sum()) == 47


def test_le_keeps_block_positions_ele_does_not() -> None:
    """LE uses one key everywhere: equal blocks stay equal; ELE's per-block keys break that."""
    tile = random_images(4, 4, batch=1)
    images = tile.repeat(1, 1, 2, 2)  # four identical 4x4 blocks
    le = make_cipher("le", {}, (8, 8), 4).encrypt(images)
    assert torch.equal(le[..., :4, :4], le[..., 4:, 4:])
    ele = make_cipher("ele", {}, (8, 8), 4).encrypt(images)
    assert not torch.equal(ele[..., :4, :4], ele[..., 4:, 4:])


# ---------------------------------------------------------------------------------------------
# EtC specifics
# ---------------------------------------------------------------------------------------------
def test_etc_original_mode_duplicates_channels_and_cannot_decrypt() -> None:
    cipher = make_cipher("etc", {"etc_channel_mode": "original"}, (8, 8), 4)
    assert not cipher.invertible and get_cipher_class("etc").invertible
    # code 4 assigns R <- B, G <- R (= B), B <- G (= B) in place: every channel becomes B
    key = with_field(cipher.key, "channel_perm", np.full(4, 4))
    encrypted = get_cipher_class("etc")(key).encrypt(random_images(8, 8))
    assert torch.equal(encrypted[:, 0], encrypted[:, 1]) and torch.equal(
        encrypted[:, 1], encrypted[:, 2]
    )
    with pytest.raises(NotInvertibleError, match="permute"):
        cipher.decrypt(encrypted)


def test_etc_permute_mode_is_default_and_invertible() -> None:
    cipher = make_cipher("etc", {}, (8, 8), 4)
    assert cipher.key.options["etc_channel_mode"] == "permute" and cipher.invertible


def test_etc_rejects_bad_channel_mode() -> None:
    with pytest.raises(ValueError, match="etc_channel_mode"):
        generate_key("etc", 8, 4, seed=0, etc_channel_mode="shuffle")
    key = generate_key("etc", 8, 4, seed=0)
    bad = CipherKey("etc", key.image_size, 4, key.material, {"etc_channel_mode": "shuffle"})
    with pytest.raises(KeyFileError, match="etc_channel_mode"):
        get_cipher_class("etc")(bad)


def test_etc_gray_layout_and_shape_checks() -> None:
    cipher = make_cipher("etc_gray", {}, (16, 24), 4)
    assert cipher.output_shape(3) == (1, 16, 72)
    encrypted = cipher.encrypt(random_images(16, 24))
    assert encrypted.shape == (2, 1, 16, 72)
    with pytest.raises(CipherInputError, match=r"\(B, 1, H, 3W\)"):
        cipher.decrypt(encrypted.expand(-1, 3, -1, -1))
    with pytest.raises(KeyMismatchError):
        cipher.decrypt(encrypted[..., :24])


@pytest.mark.parametrize("name", ["etc", "etc_gray", "pe"])
def test_rgb_only_ciphers_reject_other_channel_counts(name: str) -> None:
    options = {"per_image_keys": False} if name == "pe" else {}
    cipher = make_cipher(name, options, (8, 8), 4)
    with pytest.raises(CipherInputError, match="3"):
        cipher.encrypt(random_images(8, 8)[:, :1])


@pytest.mark.parametrize("name", ["le", "ele"])
def test_nibble_ciphers_check_the_key_channels(name: str) -> None:
    cipher = make_cipher(name, {}, (8, 8), 4)
    with pytest.raises(KeyMismatchError, match="channels=1"):
        cipher.encrypt(random_images(8, 8)[:, :1])
    gray = make_cipher(name, {"channels": 1}, (8, 8), 4)
    images = random_images(8, 8)[:, :1]
    torch.testing.assert_close(gray.decrypt(gray.encrypt(images)), images, rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------
# PE specifics
# ---------------------------------------------------------------------------------------------
def test_pe_per_image_keys_differ_and_invert() -> None:
    cipher = make_cipher("pe", {}, (8, 8), 4)
    assert cipher.key.material == {} and not cipher.invertible
    images = random_images(8, 8, batch=1).repeat(4, 1, 1, 1)
    encrypted, keys = cipher.encrypt_with_keys(images, torch.Generator().manual_seed(0))
    assert keys["negate"].shape == (4, 192) and keys["channel_perm"].shape == (4, 64)
    for i in range(1, 4):
        assert not torch.equal(encrypted[0], encrypted[i])
        assert not torch.equal(keys["negate"][0], keys["negate"][i])
    for image, enc, negate, perm in zip(
        images, encrypted, keys["negate"], keys["channel_perm"], strict=True
    ):
        torch.testing.assert_close(
            enc, reference_pe(image, negate.numpy(), perm.numpy()), rtol=0, atol=0
        )
    torch.testing.assert_close(cipher.decrypt_with_keys(encrypted, keys), images, rtol=0, atol=0)
    floats = images.double() / 255
    encrypted, keys = cipher.encrypt_with_keys(floats)
    torch.testing.assert_close(cipher.decrypt_with_keys(encrypted, keys), floats)


def test_pe_per_image_encrypt_follows_the_generator_and_cannot_decrypt() -> None:
    cipher = make_cipher("pe", {}, (8, 8), 4)
    images = random_images(8, 8)
    first = cipher.encrypt(images, generator=torch.Generator().manual_seed(5))
    again = cipher.encrypt(images, generator=torch.Generator().manual_seed(5))
    other = cipher.encrypt(images, generator=torch.Generator().manual_seed(6))
    assert torch.equal(first, again) and not torch.equal(first, other)
    with pytest.raises(NotInvertibleError, match="decrypt_with_keys"):
        cipher.decrypt(first)


def test_pe_fixed_key_equals_per_image_path_with_that_key() -> None:
    cipher = make_cipher("pe", {"per_image_keys": False}, (8, 8), 4)
    images = random_images(8, 8, batch=3)
    keys = {
        "negate": torch.tensor(cipher.key["negate"]).repeat(3, 1),
        "channel_perm": torch.tensor(cipher.key["channel_perm"]).repeat(3, 1),
    }
    torch.testing.assert_close(cipher.decrypt_with_keys(cipher.encrypt(images), keys), images)
    with pytest.raises(CipherInputError, match="per-image pe keys"):
        cipher.decrypt_with_keys(images, {name: value[:2] for name, value in keys.items()})


# ---------------------------------------------------------------------------------------------
# key validation
# ---------------------------------------------------------------------------------------------
SECRET_VALUE = 987_654  # must never show up in an error message


def _field_cases() -> list:
    permutations = [
        ("le", "perm"),
        ("ele", "perms"),
        ("ele", "block_perm"),
        ("etc", "block_perm"),
        ("etc_gray", "block_perm"),
    ]
    ranges = [
        ("etc", "transform"),
        ("etc", "negate"),
        ("etc", "channel_perm"),
        ("etc_gray", "transform"),
        ("etc_gray", "negate"),
        ("pe", "negate"),
        ("pe", "channel_perm"),
    ]
    cases = []
    for name, field in permutations + ranges:
        kinds = ["length", "range"] + (["repeat"] if (name, field) in permutations else [])
        cases += [pytest.param(name, field, kind, id=f"{name}-{field}-{kind}") for kind in kinds]
    return cases


@pytest.mark.parametrize(("name", "field", "kind"), _field_cases())
def test_validate_key_rejects_malformed_fields(name: str, field: str, kind: str) -> None:
    options = {"per_image_keys": False} if name == "pe" else {}
    key = generate_key(name, (8, 8), 2, seed=0, **options)
    values = np.array(key[field])
    if kind == "length":
        values = values[:-1]
    elif kind == "range":
        values[-1] = SECRET_VALUE
    else:
        values[1] = values[0]
    with pytest.raises(KeyFileError, match=field) as error:
        get_cipher_class(name)(with_field(key, field, values))
    assert str(SECRET_VALUE) not in str(error.value)
    assert str(values[:4].tolist())[1:-1] not in str(error.value)


@pytest.mark.parametrize(("name", "options"), INVERTIBLE)
def test_validate_key_rejects_missing_and_unknown_fields(name: str, options: dict) -> None:
    key = generate_key(name, (8, 8), 2, seed=0, **options)
    cls = get_cipher_class(name)
    field = sorted(key.material)[0]
    missing = {k: v for k, v in key.material.items() if k != field}
    with pytest.raises(KeyFileError, match=field):
        cls(CipherKey(name, key.image_size, 2, missing, key.options))
    with pytest.raises(KeyFileError, match="extra"):
        cls(CipherKey(name, key.image_size, 2, {**key.material, "extra": np.zeros(1)}, key.options))


def test_validate_key_rejects_bad_geometry_and_options() -> None:
    key = generate_key("le", (8, 8), 4, seed=0)
    with pytest.raises(KeyFileError, match="perm"):  # 2x2 blocks need a key of length 24
        get_cipher_class("le")(CipherKey("le", (8, 8), 2, key.material, key.options))
    with pytest.raises(KeyFileError, match="not a multiple"):
        get_cipher_class("le")(CipherKey("le", (8, 8), 3, key.material, key.options))
    with pytest.raises(KeyFileError, match="channels"):
        get_cipher_class("le")(CipherKey("le", (8, 8), 4, key.material, {"channels": "3"}))
    with pytest.raises(KeyFileError, match="per_image_keys"):
        get_cipher_class("pe")(CipherKey("pe", (8, 8), 4, {}, {}))
    fixed = generate_key("pe", (8, 8), 4, seed=0, per_image_keys=False)
    with pytest.raises(KeyFileError, match="no material"):
        get_cipher_class("pe")(CipherKey("pe", (8, 8), 4, fixed.material, {"per_image_keys": True}))
    with pytest.raises(TypeError, match="unknown option"):
        generate_key("ele", 8, 4, seed=0, channel_mix=True)


# ---------------------------------------------------------------------------------------------
# devices
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "options"), INVERTIBLE)
def test_device_and_contiguity_kept_on_cpu(name: str, options: dict) -> None:
    cipher = make_cipher(name, options, (16, 24), 4)
    images = random_images(16, 24, batch=4)[::2]  # non-contiguous batch view
    encrypted = cipher.encrypt(images)
    assert encrypted.device == images.device
    torch.testing.assert_close(encrypted, cipher.encrypt(images.contiguous()), rtol=0, atol=0)


@pytest.mark.gpu
@pytest.mark.parametrize(("name", "options"), INVERTIBLE)
def test_cuda_matches_cpu(name: str, options: dict) -> None:
    cipher = make_cipher(name, options, (32, 32), 4)
    images = random_images(32, 32, batch=3)
    for batch in (images, images.float() / 255):
        on_gpu = cipher.encrypt(batch.cuda())
        assert on_gpu.is_cuda and on_gpu.dtype == batch.dtype
        torch.testing.assert_close(on_gpu.cpu(), cipher.encrypt(batch), rtol=0, atol=0)
        torch.testing.assert_close(
            cipher.decrypt(on_gpu).cpu(), cipher.decrypt(cipher.encrypt(batch))
        )


@pytest.mark.gpu
def test_cuda_pe_per_image_keys() -> None:
    cipher = make_cipher("pe", {}, (32, 32), 4)
    images = random_images(32, 32, batch=3).cuda()
    generator = torch.Generator(device="cuda").manual_seed(0)
    encrypted, keys = cipher.encrypt_with_keys(images, generator)
    assert encrypted.is_cuda and keys["negate"].is_cuda
    torch.testing.assert_close(cipher.decrypt_with_keys(encrypted, keys), images, rtol=0, atol=0)
    cpu_keys = {name: value.cpu() for name, value in keys.items()}
    torch.testing.assert_close(
        cipher.decrypt_with_keys(encrypted.cpu(), cpu_keys), images.cpu(), rtol=0, atol=0
    )
