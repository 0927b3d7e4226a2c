"""The fast kernels (vitlearnenc.ciphers.fastpath) against the reference gather path.

Every registered index cipher runs the same batch twice, once with ``use_fast_path`` and once with
the plain ``index_select`` reference (``use_fast_path = False``); the outputs must agree bit for
bit, in both directions, for uint8 and float input. The reference itself is checked against the
papers' literal steps in test_proposed.py and test_baselines.py. No timing assertions here; see
experiments/benchmarks/bench_ciphers.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vitlearnenc.ciphers import (
    CipherInputError,
    CipherKey,
    GatherPlan,
    IndexCipher,
    build_cipher,
    fastpath,
    generate_key,
    get_cipher_class,
    list_ciphers,
)
from vitlearnenc.ciphers.fastpath import GatherKernel, NibbleKernel, RowGather, run_width

# every index-cipher configuration: (registry name, key options)
CONFIGS = [
    pytest.param("proposed", {}, id="proposed"),
    pytest.param("proposed", {"channel_mix": True}, id="proposed-channel-mix"),
    pytest.param("le", {}, id="le"),
    pytest.param("ele", {}, id="ele"),
    pytest.param("etc", {}, id="etc"),
    pytest.param("etc", {"etc_channel_mode": "original"}, id="etc-original"),
    pytest.param("etc_gray", {}, id="etc_gray"),
    pytest.param("pe", {"per_image_keys": False}, id="pe-fixed"),
]
GEOMETRIES = [((8, 8), 2), ((8, 8), 4), ((16, 24), 4), ((16, 24), 8), ((32, 32), 4), ((32, 48), 16)]
DTYPES = [torch.uint8, torch.float32, torch.float64, torch.bfloat16]


def pair(name: str, options: dict, size: tuple[int, int], block: int) -> tuple[IndexCipher, ...]:
    """The same key twice: one cipher on the fast path, one on the reference path."""
    key = generate_key(name, size, block, seed=11, **options)
    fast, reference = (get_cipher_class(name)(key) for _ in range(2))
    assert isinstance(fast, IndexCipher) and isinstance(reference, IndexCipher)
    reference.use_fast_path = False
    return fast, reference


def batch(
    shape: tuple[int, ...], dtype: torch.dtype, seed: int = 0, device: str = "cpu"
) -> torch.Tensor:
    """Random uint8 values, or their float version in 0..1 (as the data pipeline makes them)."""
    generator = torch.Generator().manual_seed(seed)
    values = torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)
    values = values if dtype == torch.uint8 else values.to(dtype) / 255
    return values.to(device)


def assert_identical(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal values, dtype, shape and device, and contiguous (float: also the same bits)."""
    torch.testing.assert_close(actual, expected, rtol=0, atol=0, equal_nan=True)
    assert actual.is_contiguous()
    if actual.is_floating_point():
        assert torch.equal(torch.signbit(actual), torch.signbit(expected))


def test_every_index_cipher_is_covered() -> None:
    covered = {param.values[0] for param in CONFIGS}
    index_ciphers = {
        name for name in list_ciphers() if issubclass(get_cipher_class(name), IndexCipher)
    }
    assert index_ciphers == covered


@pytest.mark.parametrize(("size", "block"), GEOMETRIES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("name", "options"), CONFIGS)
def test_fast_path_equals_reference(
    name: str, options: dict, size: tuple[int, int], block: int, dtype: torch.dtype
) -> None:
    fast, reference = pair(name, options, size, block)
    plain = batch((3, 3, *size), dtype)
    encrypted = fast.encrypt(plain)
    assert_identical(encrypted, reference.encrypt(plain))
    if fast.invertible:
        # decrypt is a gather of its own: feed it arbitrary ciphertext-shaped values, not only
        # valid ciphertexts, so every index of the inverse plan is exercised
        arbitrary = batch((3, *fast.output_shape(3)), dtype, seed=1)
        assert_identical(fast.decrypt(arbitrary), reference.decrypt(arbitrary))
        assert_identical(fast.decrypt(encrypted), reference.decrypt(encrypted))


@pytest.mark.parametrize(("name", "options"), CONFIGS)
def test_strided_channels_last_and_empty_batches(name: str, options: dict) -> None:
    fast, reference = pair(name, options, (16, 24), 4)
    images = batch((6, 3, 16, 24), torch.uint8)
    for variant in (
        images[::2],  # a strided batch view
        images[1:4],  # a view with a storage offset
        images.contiguous(memory_format=torch.channels_last),
        images[:0],
    ):
        assert_identical(fast.encrypt(variant), reference.encrypt(variant))
        assert_identical(fast.encrypt(variant.float()), reference.encrypt(variant.float()))


def test_float_negation_keeps_signed_zeros_and_nan() -> None:
    fast, reference = pair("etc", {}, (8, 8), 4)
    values = batch((2, 3, 8, 8), torch.float32)
    values[0, :, :2] = -0.0
    values[1, 0, 0, :4] = torch.tensor([float("nan"), float("inf"), -2.5, 7.0])
    assert_identical(fast.encrypt(values), reference.encrypt(values))


@pytest.mark.parametrize(
    ("index", "itemsize", "width"),
    [
        (np.arange(16), 1, 8),  # identity: the widest unit
        (np.arange(16), 4, 2),  # float32: 2 x 4 bytes = 8
        (np.arange(16), 8, 1),  # float64: already 8 bytes
        (np.arange(16).reshape(4, 4)[::-1].ravel(), 1, 4),  # runs of 4 in reversed order
        (np.array([2, 3, 0, 1, 6, 7, 4, 5]), 1, 2),
        (np.array([1, 2, 3, 0, 5, 6, 7, 4]), 1, 1),  # runs of 3, misaligned
        (np.array([1, 2, 0, 3]), 1, 1),  # runs of 2 that start at an odd position
        (np.random.default_rng(0).permutation(64), 1, 1),
    ],
)
def test_run_width(index: np.ndarray, itemsize: int, width: int) -> None:
    assert run_width(index, itemsize) == width


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64, torch.float32], ids=str)
def test_row_gather_scatters_permutations_on_cpu_and_gathers_otherwise(dtype: torch.dtype) -> None:
    """Both branches (scatter: CPU; gather: other devices, or an index with repeats) compute
    ``out[:, j] = source[:, index[j]]``; the gather branch is run on CPU here by hand."""
    cpu = torch.device("cpu")
    source = batch((4, 24), dtype)
    permutation = np.random.default_rng(1).permutation(24)
    repeats = np.random.default_rng(2).integers(0, 24, 24)
    scattering = RowGather.build(permutation, cpu)
    gathering = RowGather(torch.as_tensor(permutation).unsqueeze(0), scatter=False)
    assert scattering.scatter and not RowGather.build(repeats, cpu).scatter
    for move, index in ((scattering, permutation), (gathering, permutation)):
        out = torch.empty_like(source)
        move(source, out)
        assert_identical(out, source[:, index])
    out = torch.empty_like(source)
    RowGather.build(repeats, cpu)(source, out)
    assert_identical(out, source[:, repeats])


def test_wide_units_are_used_and_exact() -> None:
    """The proposed cipher with 2x2 blocks moves whole 2-pixel row segments: int16 units for
    uint8, int64 for float32; a shuffled-pixel key cannot use units."""
    tiny = build_cipher("proposed", (8, 8), 2, seed=0)
    assert tiny._kernel("encrypt", 3, torch.device("cpu"), torch.uint8).width == 2
    assert tiny._kernel("decrypt", 3, torch.device("cpu"), torch.float32).width == 2
    shuffled = build_cipher("proposed", (32, 32), 8, seed=0)
    assert shuffled._kernel("encrypt", 3, torch.device("cpu"), torch.uint8).width == 1
    fast, reference = pair("proposed", {}, (8, 16), 2)
    for dtype in (torch.uint8, torch.float32, torch.float16):
        images = batch((4, 3, 8, 16), dtype)
        # storage offset 1: no int16/int64 view of it exists, so the kernel copies first
        misaligned = batch((images.numel() + 1,), dtype)[1:].view(images.shape)
        for variant in (images, misaligned, images[::2]):
            assert_identical(fast.encrypt(variant), reference.encrypt(variant))
            assert_identical(fast.decrypt(variant), reference.decrypt(variant))


def test_kernels_are_cached_per_direction_device_and_dtype() -> None:
    cipher = build_cipher("proposed", (8, 8), 4, seed=0)
    cpu = torch.device("cpu")
    kernel = cipher._kernel("encrypt", 3, cpu, torch.uint8)
    assert cipher._kernel("encrypt", 3, cpu, torch.uint8) is kernel
    assert cipher._kernel("decrypt", 3, cpu, torch.uint8) is not kernel
    assert cipher._kernel("encrypt", 3, cpu, torch.float32) is not kernel
    assert isinstance(kernel, GatherKernel)
    le = build_cipher("le", (8, 8), 4, seed=0)
    assert isinstance(le._kernel("encrypt", 3, cpu, torch.uint8), NibbleKernel)


@pytest.mark.parametrize("name", ["le", "ele"])
def test_nibble_kernel_chunks_give_the_same_result(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast, reference = pair(name, {}, (8, 8), 4)
    # several chunks per batch: 3 uint8 images (4 scratch bytes per value) or 1 float32 image
    monkeypatch.setattr(fastpath, "SCRATCH_BYTES", 3 * 4 * 3 * 8 * 8)
    for dtype in (torch.uint8, torch.float32):
        images = batch((7, 3, 8, 8), dtype)
        assert_identical(fast.encrypt(images), reference.encrypt(images))
        assert_identical(fast.decrypt(images), reference.decrypt(images))


def test_gather_kernel_applies_any_plan() -> None:
    """A hand-made value plan with a negation mask: the kernel equals the literal definition
    ``out[:, j] = in[:, index[j]]`` then ``v -> max - v`` where negated."""
    rng = np.random.default_rng(3)
    index = rng.permutation(2 * 4 * 4)
    negate = rng.integers(0, 2, index.size).astype(bool)
    kernel = GatherKernel.from_plan(
        GatherPlan(index, negate, spatial=False), 2, torch.device("cpu"), torch.uint8
    )
    images = batch((5, 2, 4, 4), torch.uint8)
    expected = images.reshape(5, -1)[:, index].clone()
    expected[:, negate] = 255 - expected[:, negate]
    assert_identical(kernel(images, (2, 4, 4)), expected.reshape(5, 2, 4, 4))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64], ids=str)
def test_pe_per_image_path_equals_the_fixed_key_reference(dtype: torch.dtype) -> None:
    """Image b encrypted with its own key equals the reference gather of a fixed key holding
    that key's material, in both directions."""
    cipher = build_cipher("pe", (8, 12), 4, seed=0)
    images = batch((5, 3, 8, 12), dtype)
    encrypted, keys = cipher.encrypt_with_keys(images, torch.Generator().manual_seed(2))
    arbitrary = batch((5, 3, 8, 12), dtype, seed=4)
    decrypted = cipher.decrypt_with_keys(arbitrary, keys)
    for b in range(len(images)):
        material = {name: value[b].numpy().astype(np.int64) for name, value in keys.items()}
        options = {"per_image_keys": False}
        fixed = get_cipher_class("pe")(CipherKey("pe", (8, 12), 4, material, options))
        fixed.use_fast_path = False
        assert_identical(encrypted[b : b + 1], fixed.encrypt(images[b : b + 1]))
        assert_identical(decrypted[b : b + 1], fixed.decrypt(arbitrary[b : b + 1]))


def test_pe_per_image_decrypt_rejects_out_of_range_keys() -> None:
    cipher = build_cipher("pe", (8, 8), 4, seed=0)
    images = batch((2, 3, 8, 8), torch.uint8)
    encrypted, keys = cipher.encrypt_with_keys(images)
    for name, bad in (("channel_perm", 6), ("negate", 2)):
        broken = {**keys, name: keys[name].clone()}
        broken[name][1, 3] = bad
        with pytest.raises(CipherInputError, match="codes 0..5"):
            cipher.decrypt_with_keys(encrypted, broken)
    as_bool = {**keys, "negate": keys["negate"].bool()}
    assert_identical(cipher.decrypt_with_keys(encrypted, as_bool), images)


@pytest.mark.gpu
@pytest.mark.parametrize(("name", "options"), CONFIGS)
def test_cuda_fast_path_equals_cpu_reference(name: str, options: dict) -> None:
    fast, reference = pair(name, options, (32, 32), 4)
    for dtype in (torch.uint8, torch.float32):
        images = batch((4, 3, 32, 32), dtype)
        on_gpu = fast.encrypt(images.cuda())
        assert on_gpu.is_cuda
        assert_identical(on_gpu.cpu(), reference.encrypt(images))
        if fast.invertible:
            assert_identical(fast.decrypt(on_gpu).cpu(), reference.decrypt(on_gpu.cpu()))
    cpu = torch.device("cpu")
    assert fast._kernel("encrypt", 3, cpu, torch.uint8) is not fast._kernel(
        "encrypt", 3, torch.device("cuda", 0), torch.uint8
    )


@pytest.mark.gpu
def test_cuda_pe_per_image_path_matches_cpu() -> None:
    cipher = build_cipher("pe", (16, 16), 4, seed=0)
    images = batch((4, 3, 16, 16), torch.float32)
    encrypted, keys = cipher.encrypt_with_keys(images.cuda())
    cpu_keys = {name: value.cpu() for name, value in keys.items()}
    assert_identical(encrypted.cpu(), cipher._apply_per_image(images, cpu_keys, decrypt=False))
    assert_identical(cipher.decrypt_with_keys(encrypted, keys).cpu(), images)
