"""Deterministic expansion of a 256-bit secret into a Haar-random orthogonal matrix.

The orthomix ciphers store a 256-bit ``secret`` in the key file, not the matrix (768 x 768
float64 at 224/16 would be 4.7 MB of key). Every process that holds the key must rebuild the
*same bits* of the matrix on every machine, or ciphertexts made on one machine would not decrypt
on another. Library routines do not promise that: NumPy's ``Generator.standard_normal`` may change
between NumPy versions, NumPy's float64 ``log``/``cos`` dispatch to SIMD implementations that
differ by an ulp between CPUs, and LAPACK/BLAS (``qr``, ``@``; also ``scipy.stats.ortho_group``)
change their summation order with the library, the CPU and the thread count. So the derivation
is written here with IEEE-754 float64 operations that are correctly rounded on every conforming
machine (``+ - * /``, ``sqrt``, ``frexp``), each applied as a separate NumPy ufunc (no fused
multiply-add), and with sums taken in a fixed sequential order (``cumsum``):

1. bytes: SHAKE-256 (FIPS 202, an extendable-output hash) of
   ``b"vitlearnenc/orthomix/v1\\0" + tag + b"\\0" + dim (4 bytes, little endian) + secret``;
   word j of the stream is bytes ``[8j, 8j + 8)`` read as a little-endian uint64;
2. uniforms: ``(word >> 11) * 2**-53`` in [0, 1) (exact);
3. Gaussians: Marsaglia's polar method on consecutive pairs of uniforms mapped to [-1, 1);
   pairs with ``s = u^2 + v^2`` outside (0, 1) are skipped; an accepted pair gives
   ``u * sqrt(-2 ln(s) / s)`` and ``v * sqrt(...)``, in this order; ``ln`` is :func:`_log`
   (an atanh series, accurate to ~1 ulp, made of basic operations only);
4. orthogonal matrix: Stewart's (1980) product of Householder reflections with a sign fix,
   the construction of ``scipy.stats.ortho_group``, which is Haar-distributed: for
   n = 0 .. dim-2 the next ``dim - n`` Gaussians form x_n; ``d_n = sign(x_n[0])`` (+1 for 0),
   ``x_n[0] += d_n ||x_n||``, ``v_n = x_n / sqrt((||x_n||^2 - x0^2 + x_n[0]^2) / 2)`` and
   ``H_n = I - v_n v_n^T`` on coordinates n..dim-1; ``d_{dim-1} = (-1)^(dim-1) prod(d_n)``;
   ``A = diag(d) H_0 H_1 ... H_{dim-2}``, built right to left from the identity.

The tests pin the SHA-256 of A's bytes for fixed secrets, so any change of these steps shows.
"""

from __future__ import annotations

import hashlib

import numpy as np

SECRET_BYTES = 32  # 256-bit secrets
_DOMAIN = b"vitlearnenc/orthomix/v1\0"
_LN2 = 0.6931471805599453  # nearest float64 to ln 2
_SQRT_HALF = 0.7071067811865476
#: atanh series ln(m) = 2 (t + t^3/3 + ...), |t| <= 0.1716 on [sqrt(1/2), sqrt(2)): 14 terms
#: bring the truncation below 2^-60
_ATANH_COEFFS = tuple(1.0 / (2 * k + 1) for k in range(14))


def _uniforms(seed: bytes, count: int) -> np.ndarray:
    """The first ``count`` uniforms in [0, 1) of the SHAKE-256 stream of ``seed``."""
    raw = hashlib.shake_256(seed).digest(8 * count)
    words = np.frombuffer(raw, dtype="<u8") >> np.uint64(11)
    return words.astype(np.float64) * 2.0**-53


def _log(values: np.ndarray) -> np.ndarray:
    """Natural log of positive float64 values from basic operations only (see module doc)."""
    mantissa, exponent = np.frexp(values)  # values = mantissa * 2**exponent, mantissa in [.5, 1)
    small = mantissa < _SQRT_HALF
    mantissa = np.where(small, mantissa * 2.0, mantissa)
    exponent = exponent - small.astype(exponent.dtype)
    t = (mantissa - 1.0) / (mantissa + 1.0)
    t2 = t * t
    series = np.full_like(t, _ATANH_COEFFS[-1])
    for coeff in reversed(_ATANH_COEFFS[:-1]):
        series = series * t2
        series = series + coeff
    return (2.0 * t) * series + exponent.astype(np.float64) * _LN2


def gaussians(seed: bytes, count: int) -> np.ndarray:
    """``count`` standard normal float64 values from the stream of ``seed`` (polar method)."""
    pairs = count // 2 + 1
    while True:
        uniforms = _uniforms(seed, 2 * int(pairs * 1.3 + 16)).reshape(-1, 2) * 2.0 - 1.0
        u, v = uniforms[:, 0], uniforms[:, 1]
        s = u * u + v * v
        ok = (s > 0.0) & (s < 1.0)
        if ok.sum() >= pairs:
            break
        pairs *= 2  # a longer prefix of the same stream: earlier values do not change
    s = s[ok][:pairs]
    factor = np.sqrt((-2.0 * _log(s)) / s)
    return np.stack([u[ok][:pairs] * factor, v[ok][:pairs] * factor], axis=1).ravel()[:count]


def _sequential_sum(values: np.ndarray, axis: int) -> np.ndarray:
    """Sum along ``axis`` strictly left to right (``cumsum``'s last entry): the same bits on
    every machine, unlike ``sum``/``@`` whose order depends on SIMD width and BLAS."""
    return np.take(np.cumsum(values, axis=axis), -1, axis=axis)


def haar_orthogonal(secret: bytes, dim: int, tag: str) -> np.ndarray:
    """The keyed Haar-random orthogonal ``(dim, dim)`` float64 matrix of ``secret``.

    Args:
        secret: 32 secret bytes.
        dim: matrix size (the patch-vector length the cipher mixes).
        tag: domain separation between uses (e.g. the cipher name); different tags or sizes
            give unrelated matrices.
    """
    if len(secret) != SECRET_BYTES:
        raise ValueError(f"the secret must be {SECRET_BYTES} bytes, got {len(secret)}")
    if dim < 1:
        raise ValueError(f"matrix size must be positive, got {dim}")
    seed = _DOMAIN + tag.encode() + b"\0" + int(dim).to_bytes(4, "little") + bytes(secret)
    normals = gaussians(seed, dim * (dim + 1) // 2 - 1)
    vectors, signs, start = [], np.ones(dim), 0
    for n in range(dim - 1):
        x = normals[start : start + dim - n].copy()
        start += dim - n
        norm2 = _sequential_sum(x * x, axis=0)
        x0 = x[0]
        signs[n] = 1.0 if x0 >= 0 else -1.0
        x[0] = x0 + signs[n] * np.sqrt(norm2)
        x = x / np.sqrt((norm2 - x0 * x0 + x[0] * x[0]) / 2.0)
        vectors.append(x)
    signs[-1] = (-1.0) ** (dim - 1) * np.prod(signs[:-1])  # a product of +-1: exact
    matrix = np.eye(dim)
    for n in range(dim - 2, -1, -1):  # A = diag(d) H_0 (H_1 (... (H_{dim-2} I)))
        v = vectors[n]
        block = matrix[n:, n:]  # H_n only touches rows n.., and only columns n.. are not e_i
        projection = _sequential_sum(v[:, None] * block, axis=0)
        matrix[n:, n:] = block - np.multiply.outer(v, projection)
    return signs[:, None] * matrix
