"""The orthomix ciphers against a literal float64 implementation, round trips, the pinned bits
of the keyed matrix, key files and the on-device DataModule path."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from vitlearnenc.ciphers import (
    CipherInputError,
    CipherKey,
    KeyFileError,
    KeyMismatchError,
    LinearPatchCipher,
    build_cipher,
    generate_key,
    get_cipher_class,
    load_key,
    save_key,
)
from vitlearnenc.ciphers.orthomix_matrix import _log, gaussians, haar_orthogonal

NAMES = ["orthomix", "orthomix_sub"]
FIXED_SECRET = bytes(range(32))
#: SHA-256 of the little-endian float64 bytes of A for FIXED_SECRET: the derivation of
#: orthomix_matrix must give these bits on every machine and every run
PINNED = {
    ("orthomix", 48): "e990eebee638643e7c48efe7d553005e0a2d9a169e4b99ec5fefd4178e75dd90",
    ("orthomix_sub", 12): "a7a2949445030980900beac3787ad468f92e22516db92ea62458ec1970d3ac74",
    ("orthomix_sub", 192): "f58a0fbbf2c68dcc3f052fcb5be937fed70d04495c25b29d65c3e322a5f58c23",
}
PINNED_768 = "863f5e0166774ee3819ec8ef880e3931e975e797a9bbf6ed7e354ffbf6ff869a"


def random_images(height: int, width: int, batch: int = 3, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, 3, height, width), dtype=torch.uint8, generator=generator)


def reference_encrypt(
    image: np.ndarray, block_perm: np.ndarray, sub_matrix: np.ndarray, m: int, sub: bool
) -> np.ndarray:
    """Literal steps, float64, explicit loops: (C, H, W) values in [0, 1] -> (C, H, W).

    Encrypted block i = plain block block_perm[i]; its values, flattened channel-major (whole
    block for orthomix, each of the four sub-blocks TL, TR, BL, BR for orthomix_sub), become
    ``A (x - 0.5) + 0.5``.
    """
    channels, height, width = image.shape
    grid_w = width // m
    out = np.empty_like(image)
    parts = [(r, c, m // 2) for r in (0, m // 2) for c in (0, m // 2)] if sub else [(0, 0, m)]
    for i, source in enumerate(block_perm):
        sr, sc = (source // grid_w) * m, (source % grid_w) * m
        dr, dc = (i // grid_w) * m, (i % grid_w) * m
        for off_r, off_c, side in parts:
            vector = [
                image[ch, sr + off_r + r, sc + off_c + c]
                for ch in range(channels)
                for r in range(side)
                for c in range(side)
            ]
            mixed = [
                sum(sub_matrix[j, k] * (vector[k] - 0.5) for k in range(len(vector))) + 0.5
                for j in range(len(vector))
            ]
            for j, value in enumerate(mixed):
                ch, rest = divmod(j, side * side)
                out[ch, dr + off_r + rest // side, dc + off_c + rest % side] = value
    return out


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("size", "block"), [((8, 8), 4), ((8, 12), 2), ((16, 16), 8)])
def test_matches_reference(name: str, size: tuple[int, int], block: int) -> None:
    cipher = build_cipher(name, size, block, seed=3)
    assert isinstance(cipher, LinearPatchCipher)
    images = random_images(*size, batch=2)
    encrypted = cipher.encrypt(images)
    assert encrypted.dtype == torch.float32 and encrypted.shape == images.shape
    exact = cipher.encrypt(images.double() / 255)  # float64 input computes in float64
    matrix = cipher.mixing_matrix(3)
    for index, image in enumerate(images.double().numpy() / 255):
        expected = reference_encrypt(image, cipher.block_perm, matrix, block, name != "orthomix")
        np.testing.assert_allclose(exact[index].numpy(), expected, rtol=0, atol=1e-13)
        np.testing.assert_allclose(encrypted[index].numpy(), expected, rtol=0, atol=2e-6)


@pytest.mark.parametrize("name", NAMES)
def test_patch_matrix_is_the_map_encrypt_applies(name: str) -> None:
    cipher = build_cipher(name, 16, 8, seed=2)
    assert isinstance(cipher, LinearPatchCipher)
    images = random_images(16, 16, batch=2).double() / 255
    matrix = torch.from_numpy(cipher.patch_matrix(3))
    torch.testing.assert_close(matrix @ matrix.T, torch.eye(192, dtype=torch.float64))
    plain, encrypted = cipher._patches(images), cipher._patches(cipher.encrypt(images))
    perm = torch.from_numpy(cipher.block_perm.copy())
    expected = (plain[:, perm] - 0.5) @ matrix.T + 0.5
    torch.testing.assert_close(encrypted, expected, rtol=0, atol=1e-12)


def test_dense_mixes_the_whole_patch_sub_only_its_sub_block() -> None:
    """One changed pixel changes every value of its block (orthomix) or of its sub-block only."""
    base = torch.full((1, 3, 8, 8), 128, dtype=torch.uint8)
    bumped = base.clone()
    bumped[0, 0, 0, 0] = 255
    for name, changed in (("orthomix", 192), ("orthomix_sub", 48)):
        key = CipherKey(name, (8, 8), 8, {"secret": list(FIXED_SECRET), "block_perm": [0]})
        cipher = get_cipher_class(name)(key)
        difference = cipher.encrypt(bumped.double() / 255) != cipher.encrypt(base.double() / 255)
        assert int(difference.sum()) == changed


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("size", "block"), [((32, 32), 4), ((16, 24), 8), ((224, 224), 16)])
def test_round_trip_is_exact_after_rounding(name: str, size: tuple[int, int], block: int) -> None:
    cipher = build_cipher(name, size, block, seed=5)
    assert isinstance(cipher, LinearPatchCipher)
    images = random_images(*size, batch=4)
    encrypted = cipher.encrypt(images)
    assert torch.equal(cipher.decrypt_uint8(encrypted), images)
    torch.testing.assert_close(cipher.decrypt(encrypted), images.float() / 255, rtol=0, atol=1e-5)
    floats = images.double() / 255
    torch.testing.assert_close(cipher.decrypt(cipher.encrypt(floats)), floats, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_float16_storage_halves_the_size_and_stays_within_half_a_step(name: str) -> None:
    cipher = build_cipher(name, 32, 4, seed=6, storage="float16")
    images = random_images(32, 32, batch=16)
    encrypted = cipher.encrypt(images)
    assert encrypted.dtype == torch.float16
    assert encrypted.element_size() * 2 == cipher.encrypt(images.float() / 255).element_size()
    assert isinstance(cipher, LinearPatchCipher)
    error = (cipher.decrypt(encrypted).float() * 255 - images.float()).abs().max()
    assert 0 < error < 0.5  # float16 rounding shows, but stays below half an 8-bit step here
    assert torch.equal(cipher.decrypt_uint8(encrypted), images)


@pytest.mark.parametrize("name", NAMES)
def test_float_input_keeps_its_dtype_and_device(name: str) -> None:
    cipher = build_cipher(name, 16, 4, seed=1)
    images = random_images(16, 16)[::2]  # a strided view
    for dtype in (torch.float32, torch.float64, torch.bfloat16):
        encrypted = cipher.encrypt(images.to(dtype) / 255)
        assert encrypted.dtype == dtype and encrypted.device == images.device
        assert encrypted.is_contiguous()
    torch.testing.assert_close(
        cipher.encrypt(images), cipher.encrypt(images.contiguous()), rtol=0, atol=0
    )


@pytest.mark.parametrize(
    ("tag", "dim"), [pytest.param(tag, dim, id=f"{tag}-{dim}") for tag, dim in PINNED]
)
def test_matrix_bits_are_pinned(tag: str, dim: int) -> None:
    matrix = haar_orthogonal(FIXED_SECRET, dim, tag)
    assert hashlib.sha256(matrix.astype("<f8").tobytes()).hexdigest() == PINNED[(tag, dim)]
    np.testing.assert_allclose(matrix @ matrix.T, np.eye(dim), rtol=0, atol=1e-14)


@pytest.mark.slow
def test_matrix_bits_are_pinned_at_224_16() -> None:
    matrix = haar_orthogonal(FIXED_SECRET, 768, "orthomix")
    assert hashlib.sha256(matrix.astype("<f8").tobytes()).hexdigest() == PINNED_768


def test_cipher_uses_the_pinned_matrix_and_tags_separate_variants() -> None:
    key = CipherKey(
        "orthomix", (32, 32), 4, {"secret": list(FIXED_SECRET), "block_perm": range(64)}
    )
    cipher = get_cipher_class("orthomix")(key)
    assert isinstance(cipher, LinearPatchCipher)
    digest = hashlib.sha256(cipher.mixing_matrix(3).astype("<f8").tobytes()).hexdigest()
    assert digest == PINNED[("orthomix", 48)]
    other_tag = haar_orthogonal(FIXED_SECRET, 48, "orthomix_sub")
    other_secret = haar_orthogonal(bytes(32), 48, "orthomix")
    for matrix in (other_tag, other_secret):
        assert np.abs(matrix - cipher.mixing_matrix(3)).max() > 0.1


def test_stream_pieces_are_sound() -> None:
    """The hand-made log and the polar-method Gaussians behave like the library ones."""
    values = np.random.default_rng(0).random(10_000) + 1e-300
    np.testing.assert_allclose(_log(values), np.log(values), rtol=2e-15, atol=0)
    normals = gaussians(b"test", 100_000)
    assert abs(normals.mean()) < 0.01 and abs(normals.std() - 1) < 0.01
    assert abs(np.mean(normals**4) - 3) < 0.1  # Gaussian kurtosis
    assert np.array_equal(gaussians(b"test", 10), normals[:10])  # a prefix of the same stream
    # Haar: every entry of a large random orthogonal matrix has variance 1 / dim
    entries = haar_orthogonal(bytes(32), 96, "t").ravel()
    assert abs(entries.var() * 96 - 1) < 0.05


def test_key_space_and_patch_alignment() -> None:
    cipher = build_cipher("orthomix", 224, 16, seed=0)
    assert cipher.key_space_bits() == pytest.approx(256 + math.lgamma(197) / math.log(2))
    assert cipher.is_patch_aligned(16) and not cipher.is_patch_aligned(8)


def test_seeded_keys_are_reproducible_and_csprng_keys_differ() -> None:
    for name in NAMES:
        key = generate_key(name, 32, 4, seed=7)
        assert key == generate_key(name, 32, 4, seed=7)
        assert key != generate_key(name, 32, 4, seed=8)
        assert generate_key(name, 32, 4) != generate_key(name, 32, 4)
        assert key["secret"].shape == (32,) and key["block_perm"].shape == (64,)


@pytest.mark.parametrize("name", NAMES)
def test_key_file_round_trip(name: str, tmp_path: Path) -> None:
    key = generate_key(name, 32, 4, seed=1, storage="float16")
    path = save_key(key, tmp_path / "k.json")
    loaded = load_key(path, method=name, image_size=32, block_size=4)
    assert loaded == key and loaded.options == {"storage": "float16"}
    images = random_images(32, 32)
    assert torch.equal(
        build_cipher(name, key=loaded).encrypt(images), build_cipher(name, key=key).encrypt(images)
    )


def _edited(key: CipherKey, **fields: object) -> CipherKey:
    material = {**key.material, **fields}
    return CipherKey(key.method, key.image_size, key.block_size, material, key.options)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda k: _edited(k, secret=k["secret"][:-1]), "secret must have length 32"),
        (lambda k: _edited(k, secret=[*k["secret"][:-1], 256]), "secret must hold values"),
        (lambda k: _edited(k, block_perm=[0] * 64), "block_perm is not a permutation"),
        (lambda k: _edited(k, block_perm=range(16)), "block_perm must have length 64"),
        (lambda k: _edited(k, extra=[1]), "unexpected"),
        (
            lambda k: CipherKey(k.method, k.image_size, 4, {"block_perm": k["block_perm"]}),
            "missing",
        ),
        (
            lambda k: CipherKey(k.method, k.image_size, 4, k.material, {"storage": "int8"}),
            "storage must be one of",
        ),
        (
            lambda k: CipherKey(k.method, k.image_size, 4, k.material, {"bits": 3}),
            "unknown option",
        ),
    ],
)
def test_malformed_keys_are_rejected_without_showing_material(name: str, edit, match: str) -> None:
    key = generate_key(name, 32, 4, seed=0)
    with pytest.raises(KeyFileError, match=match) as error:
        get_cipher_class(name)(edit(key))
    assert str(key["secret"][:4].tolist())[1:-1] not in str(error.value)


def test_corrupt_key_file_and_other_geometry(tmp_path: Path) -> None:
    key = generate_key("orthomix", 32, 4, seed=0)
    path = save_key(key, tmp_path / "k.json")
    data = json.loads(path.read_text())
    data["secret"][0] = (data["secret"][0] + 1) % 256
    path.write_text(json.dumps(data))
    with pytest.raises(KeyFileError, match="checksum mismatch"):
        load_key(path)
    with pytest.raises(KeyMismatchError, match="not 64x64"):
        build_cipher("orthomix", 64, 4, key=key)
    with pytest.raises(KeyMismatchError, match="'orthomix' key"):
        build_cipher("orthomix_sub", 32, 4, key=save_key(key, tmp_path / "k2.json"))


def test_bad_inputs_have_clear_errors() -> None:
    with pytest.raises(ValueError, match="must be even"):
        build_cipher("orthomix_sub", 30, 5)
    with pytest.raises(ValueError, match="storage must be one of"):
        build_cipher("orthomix", 32, 4, storage="float8")
    cipher = build_cipher("orthomix", 32, 4, seed=0)
    with pytest.raises(CipherInputError, match="real-valued"):
        cipher.decrypt(random_images(32, 32))
    with pytest.raises(KeyMismatchError, match="made for 32x32 images but got 16x16"):
        cipher.encrypt(random_images(16, 16))


def test_repr_never_shows_key_material() -> None:
    cipher = build_cipher("orthomix", 8, 4, seed=0)
    text = repr(cipher) + str(cipher.key)
    assert "secret" not in text and str(cipher.key["secret"][:6].tolist())[1:-1] not in text


@pytest.mark.parametrize("name", NAMES)
def test_datamodule_normalises_real_valued_ciphertexts_once(name: str) -> None:
    """The on-device pipeline scales uint8 ciphertexts by 1/255 and real ones not at all, so
    with mean = std = 0.5 the model sees exactly ``2 y - 1``."""
    from vitlearnenc.data import SyntheticDataModule

    dm = SyntheticDataModule(
        num_train=8, num_test=8, batch_size=8, num_workers=0, augment=False,
        cipher=name, key_seed=3, block_size=4,
    )  # fmt: skip
    dm.setup("test")
    images = next(iter(dm.test_dataloader()))["image"]
    model_input = dm.transform_batch(images, train=False)
    assert model_input.dtype == torch.float32
    torch.testing.assert_close(model_input, 2 * dm.cipher.encrypt(images) - 1, rtol=0, atol=1e-6)
    assert 0.3 < model_input.std() < 3  # not flattened by a second division by 255


@pytest.mark.gpu
@pytest.mark.parametrize("name", NAMES)
def test_cuda_matches_cpu(name: str) -> None:
    cipher = build_cipher(name, 32, 4, seed=0)
    assert isinstance(cipher, LinearPatchCipher)
    images = random_images(32, 32, batch=8)
    on_gpu = cipher.encrypt(images.cuda())
    assert on_gpu.is_cuda and on_gpu.dtype == torch.float32
    torch.testing.assert_close(on_gpu.cpu(), cipher.encrypt(images), rtol=0, atol=2e-6)
    assert torch.equal(cipher.decrypt_uint8(on_gpu).cpu(), images)
