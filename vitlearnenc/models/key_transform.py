"""Key-based model transformation: adapt a plain ViT so that it reads encrypted images exactly.

The proposed cipher (block scrambling K1 + shared pixel shuffling K2, block size = patch size)
is a fixed permutation of patch tokens and of the values inside every patch. A ViT with
absolute position embeddings absorbs both (spec §3):

* pixel shuffling: every encrypted patch vector is ``x_enc[j] = x[σ(j)]`` (patch vector in
  timm's weight order, C×M×M flattened channel-major), so the patch embedding with columns
  ``Ê[:, j] = E[:, σ(j)]`` gives ``Ê x_enc = E x`` (bias unchanged);
* block scrambling: encrypted token i is plain token π(i) (π = ``block_perm``), so the
  position embedding with rows ``Ê_pos[prefix + i] = E_pos[prefix + π(i)]`` (class/register
  token rows untouched) gives the plain token sequence, permuted. The encoder is
  permutation-equivariant over tokens and the head reads the class token or a mean pool, so
  logits equal the plain model's up to floating-point summation order.

The inverse transformation applies the inverse gathers and restores the weights bit for bit.

Linear patch ciphers (orthomix, orthomix_sub: :class:`~vitlearnenc.ciphers.orthomix.LinearPatchCipher`)
generalise the pixel shuffle to one keyed orthogonal matrix A of the patch vector,
``y_i = A (x_{π(i)} - 0.5) + 0.5``. After the per-channel normalisation ``z = (v - m) / s`` the
encrypted model input is the affine map ``z_enc = B z + c`` of the plain one, with
``B = S⁻¹ A S`` (S = diag of the per-entry std) and ``c = S⁻¹ (A - I)(m - 0.5)``, so the patch
embedding ``Ê = E B⁻¹ = E S⁻¹ Aᵀ S`` and the bias ``b̂ = b - Ê c`` give ``Ê z_enc + b̂ = E z + b``.
With the project's normalisation (mean = std = 0.5) ``B = A`` and ``c = 0``. The inverse is
exact up to float64 rounding (not bit for bit).

Why the data owner does this, and what it costs:
    The transformation needs K1 and K2, so only the key holder can run it: the data owner
    transforms the (public, pretrained) model and hands it to the provider, who then trains or
    predicts on encrypted images without the key. The price is that the transformed weights
    are a keyed permutation of weights the provider may already hold. Comparing the rows of
    ``pos_embed`` and the columns of ``patch_embed.proj.weight`` with the public pretrained
    ones reads K1 and K2 off directly (exactly before fine-tuning; largely after it), see
    :func:`vitlearnenc.attacks.weight_matching.recover_key_from_weights`. Hand out a
    transformed model only where the provider cannot be assumed to know its origin.

Caveats (spec §3):
    * Normalisation must commute with the cipher. Channel-tied shuffles (the default) commute
      with any per-channel mean/std. ``channel_mix=True`` keys move values across channels, so
      normalise with equal per-channel statistics (e.g. timm's 0.5/0.5) or before encryption.
    * No ``pos_embed`` interpolation and no dynamic image size: the model must run at the image
      size the key was made for (the token grid must equal the key's block grid).
    * Training equivalence (same batches, same RNG, augmentation before encryption) is exact for
      SGD/Adam(W) with weight decay and for per-sample stochastic depth. Dropout that acts on
      token positions (``pos_drop``, attention/projection dropout, ``patch_drop``) draws its
      masks by position, so with it the two runs are equal in distribution only.
    * NP (negative-positive) flips, per-block keys, rotations and colour shuffles that differ
      between blocks are not absorbed by one shared embedding; such ciphers are rejected.
    * Linear ciphers: pass the data's ``mean``/``std`` (default 0.5, the project's). Training
      equivalence holds for SGD (with momentum and weight decay: a fixed orthogonal change of
      the patch embedding's input basis commutes with it) but not for Adam(W), whose
      per-coordinate step sizes depend on the basis: the patch embedding then learns differently
      (the rest of the network is unchanged).
    * Key equivalence: transformed weights are a function of the key. With the public weights
      they started from, they give it back (K1 from ``pos_embed`` rows; A from
      ``Ê⁺ E`` for linear ciphers, exactly when D >= L, see
      :func:`vitlearnenc.attacks.frontier_weights.recover_linear_key_from_weights`). A model
      saved after ``model.key_adapt=true`` is as secret as the key.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch
from torch import nn

from vitlearnenc.ciphers.base import Cipher, IndexCipher, NotInvertibleError
from vitlearnenc.ciphers.keys import CipherKey
from vitlearnenc.ciphers.orthomix import LinearPatchCipher
from vitlearnenc.ciphers.plain import PreEncryptedCipher
from vitlearnenc.ciphers.registry import get_cipher_class, list_ciphers
from vitlearnenc.errors import VitlearnencError

log = logging.getLogger(__name__)

#: parameter/buffer name fragments of relative or rotary position schemes (BEiT, Swin, EVA, ...)
_RELATIVE_POSITION_TAGS = ("relative_position", "rel_pos", "rope")


class ModelTransformError(VitlearnencError, ValueError):
    """A model or key that the key-based model transformation cannot handle."""


@dataclass(frozen=True)
class VitEmbeddingLayout:
    """Where the absorbable parameters of a ViT sit.

    Attributes:
        patch_size: patch side M in pixels.
        grid_size: token grid (H/M, W/M), row-major like the cipher's blocks.
        channels: input channels C of the patch embedding.
        prefix_rows: ``pos_embed`` rows before the patch rows (class and register tokens; 0
            without a class token or with ``no_embed_class``).
    """

    patch_size: int
    grid_size: tuple[int, int]
    channels: int
    prefix_rows: int

    @property
    def image_size(self) -> tuple[int, int]:
        return (self.grid_size[0] * self.patch_size, self.grid_size[1] * self.patch_size)


def inspect_vit(model: nn.Module) -> VitEmbeddingLayout:
    """Check that ``model`` is a ViT whose embeddings can absorb a patch-aligned cipher.

    Needs a timm-style ``patch_embed.proj`` convolution with kernel = stride = patch size and a
    learned absolute ``pos_embed`` of shape (1, prefix + N, D), no dynamic image size and no
    relative or rotary position scheme.

    Raises:
        ModelTransformError: naming what is missing and what to use instead.
    """
    name = type(model).__name__
    proj = getattr(getattr(model, "patch_embed", None), "proj", None)
    if not isinstance(proj, nn.Conv2d):
        raise ModelTransformError(
            f"{name} has no patch_embed.proj convolution (hybrid CNN stem or not a ViT); the "
            "transformation needs a plain patch-embedding ViT such as timm's VisionTransformer"
        )
    kernel = tuple(proj.kernel_size)
    if (
        kernel[0] != kernel[1]
        or tuple(proj.stride) != kernel
        or tuple(proj.padding) != (0, 0)
        or tuple(proj.dilation) != (1, 1)
        or proj.groups != 1
    ):
        raise ModelTransformError(
            f"{name}'s patch embedding is not a square non-overlapping patchify convolution "
            f"(kernel {kernel}, stride {tuple(proj.stride)}); use a ViT with square patches"
        )
    if getattr(model, "dynamic_img_size", False):
        raise ModelTransformError(
            f"{name} was built with dynamic_img_size=True, which interpolates pos_embed per input; "
            "build it with dynamic_img_size=False at the encrypted image size"
        )
    relative = sorted(
        {
            tag
            for param_name, _ in [*model.named_parameters(), *model.named_buffers()]
            for tag in _RELATIVE_POSITION_TAGS
            if tag in param_name
        }
        | ({"rope"} if getattr(model, "rope", None) is not None else set())
    )
    if relative:
        raise ModelTransformError(
            f"{name} uses relative/rotary position information ({', '.join(relative)}), which "
            "depends on where a token sits and cannot be re-keyed by permuting rows; use a ViT "
            "with absolute position embeddings only"
        )
    pos_embed = getattr(model, "pos_embed", None)
    if not isinstance(pos_embed, torch.Tensor) or pos_embed.ndim != 3 or pos_embed.shape[0] != 1:
        raise ModelTransformError(
            f"{name} has no learned absolute pos_embed of shape (1, tokens, D) (got "
            f"{None if pos_embed is None else tuple(pos_embed.shape)}); block scrambling is "
            "absorbed by permuting its rows, so use a ViT with pos_embed='learn'"
        )
    grid = getattr(model.patch_embed, "grid_size", None)
    if grid is None:
        raise ModelTransformError(
            f"{name}.patch_embed has no grid_size; build it with a fixed img_size"
        )
    grid_size = (int(grid[0]), int(grid[1]))
    num_patches = grid_size[0] * grid_size[1]
    prefix_rows = int(pos_embed.shape[1]) - num_patches
    expected_prefix = 0 if getattr(model, "no_embed_class", False) else _num_prefix_tokens(model)
    if prefix_rows != expected_prefix:
        raise ModelTransformError(
            f"{name}.pos_embed has {pos_embed.shape[1]} rows but the {grid_size[0]}x{grid_size[1]} "
            f"token grid plus {expected_prefix} prefix token(s) needs {num_patches + expected_prefix}; "
            "pos_embed must match the image size without interpolation"
        )
    return VitEmbeddingLayout(int(kernel[0]), grid_size, int(proj.in_channels), prefix_rows)


def embedding_parameters(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """``patch_embed.proj.weight`` (D, C, M, M) and ``pos_embed`` (1, prefix + N, D) of a ViT
    that passed :func:`inspect_vit`."""
    proj = cast(nn.Conv2d, model.get_submodule("patch_embed.proj"))
    return proj.weight, cast(torch.Tensor, model.pos_embed)


def _num_prefix_tokens(model: nn.Module) -> int:
    prefix = getattr(model, "num_prefix_tokens", None)
    if prefix is not None:
        return int(prefix)
    return int(getattr(model, "cls_token", None) is not None)


def check_transformable(model: nn.Module, cipher_or_key: CipherKey | Cipher) -> None:
    """Raise :class:`ModelTransformError` unless ``model`` can absorb ``cipher_or_key`` exactly.

    Checks the model (:func:`inspect_vit`), that the key's block size equals the patch size and
    its image size equals the model's, and that the cipher is one shared block permutation plus
    one shared in-block value permutation (see :func:`absorbable_permutations`).
    """
    layout = inspect_vit(model)
    cipher = _as_cipher(cipher_or_key)
    if isinstance(cipher, LinearPatchCipher):
        _check_key_fits_layout(cipher, layout)
    else:
        absorbable_permutations(cipher, layout.channels, layout)


def absorbable_cipher_names() -> list[str]:
    """Registered keyed ciphers that a ViT absorbs (``absorbable_by_vit``), for error messages."""
    return [
        name
        for name in list_ciphers()
        if get_cipher_class(name).keyed and get_cipher_class(name).absorbable_by_vit
    ]


def _use_instead() -> str:
    return "use an absorbable cipher (" + ", ".join(absorbable_cipher_names()) + ")"


def _as_cipher(cipher_or_key: CipherKey | Cipher) -> Cipher:
    if isinstance(cipher_or_key, Cipher):
        return cipher_or_key
    if isinstance(cipher_or_key, CipherKey):
        return get_cipher_class(cipher_or_key.method)(cipher_or_key)
    raise TypeError(f"expected a CipherKey or Cipher, got {type(cipher_or_key).__name__}")


def absorbable_permutations(
    cipher_or_key: CipherKey | Cipher,
    channels: int,
    layout: VitEmbeddingLayout | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Read the token permutation π and the patch-vector permutation σ off the cipher itself.

    The cipher's :class:`~vitlearnenc.ciphers.base.GatherPlan` is decomposed rather than the
    index math re-derived by hand, so π and σ agree with ``encrypt`` by construction: for every
    encrypted block i and patch-vector entry j (C×M×M, channel-major), the plan must read plain
    block π(i), entry σ(j), with the same σ in every block.

    Args:
        cipher_or_key: key or cipher, with block size = the ViT patch size.
        channels: image channels C.
        layout: when given, the key must also fit this model's patch size and token grid.

    Returns:
        ``(pi, sigma)``: int64 arrays of length N (blocks, row-major) and C·M·M, 0-based
        gathers: encrypted token i = plain token ``pi[i]``, ``x_enc_patch[j] = x_patch[sigma[j]]``.

    Raises:
        ModelTransformError: the key does not fit the model or the cipher is not absorbable.
    """
    cipher = _as_cipher(cipher_or_key)
    if isinstance(cipher, PreEncryptedCipher):
        raise ModelTransformError(
            f"cipher {cipher.name!r} means the data was encrypted elsewhere; transform the model "
            "with the data owner's key file instead"
        )
    if isinstance(cipher, LinearPatchCipher):
        raise ModelTransformError(
            f"the {cipher.name!r} cipher mixes patch values linearly and has no permutation to "
            "read off; transform_vit absorbs it through its patch_matrix"
        )
    size = cipher.block_size
    height, width = cipher.image_size
    if layout is not None:
        _check_key_fits_layout(cipher, layout)
    grid_h, grid_w = height // size, width // size
    if not cipher.keyed:
        patch_len = channels * size * size
        return np.arange(grid_h * grid_w, dtype=np.int64), np.arange(patch_len, dtype=np.int64)
    index, negates = _value_gather(cipher, channels)
    pi, sigma, shared = _split_block_gather(index, channels, (grid_h, grid_w), size)
    problems = []
    if negates:
        problems.append("flips values (negative-positive)")
    if not shared:
        problems.append(
            "does not map each block to one block with the same in-block permutation everywhere "
            "(per-block keys, rotations or colour shuffles)"
        )
    if problems:
        raise ModelTransformError(
            f"the {cipher.name!r} cipher {' and '.join(problems)}, which one shared permutation "
            f"of embedding weights cannot absorb; {_use_instead()}"
        )
    return pi, sigma


def _check_key_fits_layout(cipher: Cipher, layout: VitEmbeddingLayout) -> None:
    size, (height, width) = cipher.block_size, cipher.image_size
    if not cipher.is_patch_aligned(layout.patch_size):
        raise ModelTransformError(
            f"the {cipher.name!r} cipher with block size {size} is not patch-aligned to the "
            f"model's patch size {layout.patch_size}; make the key with block_size="
            f"{layout.patch_size} (or build the model with patch_size={size})"
        )
    if size != layout.patch_size:
        raise ModelTransformError(
            f"the key's block size {size} differs from the model's patch size "
            f"{layout.patch_size}; the transformation needs block size = patch size"
        )
    if (height, width) != layout.image_size:
        lh, lw = layout.image_size
        raise ModelTransformError(
            f"the key was made for {height}x{width} images but the model's pos_embed covers "
            f"{lh}x{lw}; build the model with img_size=({height}, {width}) (no pos_embed "
            "interpolation) or make a key for this size"
        )


def _value_gather(cipher: Cipher, channels: int) -> tuple[np.ndarray, bool]:
    """The cipher's fixed gather over the C*H*W values and whether it also negates any value.

    Raises:
        ModelTransformError: the cipher has no fixed gather of pixel values (not an
            :class:`IndexCipher`, per-image keys, nibble-level plans, a changed image shape).
    """
    height, width = cipher.image_size
    plane = height * width
    if not isinstance(cipher, IndexCipher) or cipher.output_shape(channels) != (
        channels,
        height,
        width,
    ):
        raise ModelTransformError(
            f"the {cipher.name!r} cipher is not a position map of the image's pixel values, so "
            f"no permutation of embedding weights absorbs it; {_use_instead()}"
        )
    try:
        plan = cipher.build_plan(channels)
    except (ValueError, NotInvertibleError) as error:
        raise ModelTransformError(
            f"the {cipher.name!r} key cannot be absorbed into a {channels}-channel model: {error}"
        ) from None
    if plan.index.size != (plane if plan.spatial else channels * plane):
        raise ModelTransformError(
            f"the {cipher.name!r} cipher does not gather whole pixel values (e.g. it works on "
            f"nibbles), so no permutation of embedding weights absorbs it; {_use_instead()}"
        )
    index = plan.index
    if plan.spatial:  # pixel positions -> value positions (every channel moves alike)
        index = (np.arange(channels, dtype=np.int64)[:, None] * plane + index[None, :]).ravel()
    return index, plan.negate is not None and bool(plan.negate.any())


def _split_block_gather(
    index: np.ndarray, channels: int, grid: tuple[int, int], size: int
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Split a value gather into a block gather π and one in-block gather σ.

    Returns ``(pi, sigma, shared)``; ``shared`` is False unless every encrypted block i reads
    only plain block π(i), entry σ(j) for its entry j (same σ in every block) and both are
    permutations. Entries follow timm's patch-vector order (C×M×M, channel-major).
    """
    grid_h, grid_w = grid
    num_blocks, patch_len = grid_h * grid_w, channels * size * size
    values = np.arange(index.size, dtype=np.int64).reshape(channels, grid_h, size, grid_w, size)
    by_block = values.transpose(1, 3, 0, 2, 4).reshape(num_blocks, patch_len)
    block_of = np.empty(index.size, dtype=np.int64)
    entry_of = np.empty(index.size, dtype=np.int64)
    block_of[by_block] = np.arange(num_blocks)[:, None]
    entry_of[by_block] = np.arange(patch_len)[None, :]
    source_block, source_entry = block_of[index[by_block]], entry_of[index[by_block]]
    pi, sigma = source_block[:, 0], source_entry[0]
    shared = bool(
        (source_block == pi[:, None]).all()
        and (source_entry == sigma[None, :]).all()
        and _is_permutation(pi)
        and _is_permutation(sigma)
    )
    return pi, sigma, shared


def _is_permutation(perm: np.ndarray) -> bool:
    return bool(np.array_equal(np.sort(perm), np.arange(perm.size)))


def patch_vector_permutation(key: CipherKey | Cipher, channels: int) -> np.ndarray:
    """σ over the C·M·M patch vector (timm weight order) with ``x_enc_patch[j] = x_patch[σ(j)]``.

    Secret key material: do not log it.
    """
    return absorbable_permutations(key, channels)[1]


def transform_vit(
    model: nn.Module,
    key: CipherKey | Cipher,
    inverse: bool = False,
    inplace: bool = False,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> nn.Module:
    """Adapt a ViT to images encrypted with ``key`` (or undo that with ``inverse=True``).

    Permutes the patch rows of ``pos_embed`` by K1 (prefix rows untouched). Permutation ciphers
    (proposed): permutes the input columns of ``patch_embed.proj.weight`` by the cipher's
    patch-vector permutation; both are pure gathers, so ``transform_vit(transform_vit(m, k), k,
    inverse=True)`` restores ``m``'s weights exactly. Linear ciphers (orthomix): multiplies the
    patch embedding by the inverse of the cipher's map in the normalised domain and corrects its
    bias (module docstring), in float64; the inverse restores the weights to rounding.

    Args:
        model: a timm-style ViT (see :func:`inspect_vit`), on any device and dtype.
        key: the data owner's key (block size = patch size, image size = model image size).
        inverse: undo a previous transformation with the same key.
        inplace: modify ``model``'s parameters in place (keeps parameter identity, e.g. for an
            optimizer that already holds them) instead of returning a deep copy.
        mean: per-channel mean of the data's normalisation (linear ciphers only; default 0.5).
        std: per-channel std of the data's normalisation (linear ciphers only; default 0.5).

    Returns:
        The transformed model (``model`` itself when ``inplace``).

    Raises:
        ModelTransformError: the model or key cannot be transformed (see
            :func:`check_transformable`).
    """
    layout = inspect_vit(model)
    cipher = _as_cipher(key)
    if isinstance(cipher, LinearPatchCipher):
        _check_key_fits_layout(cipher, layout)
        pi = cipher.block_perm.copy()
        sigma = None
    else:
        pi, sigma = absorbable_permutations(cipher, layout.channels, layout)
        if inverse:
            sigma = np.argsort(sigma)
    if inverse:
        pi = np.argsort(pi)
    if not inplace:
        model = copy.deepcopy(model)
    if not isinstance(getattr(model, "patch_drop", nn.Identity()), nn.Identity):
        log.warning(
            "patch dropout acts on token positions: training is equivalent in distribution only"
        )
    weight, pos_embed = embedding_parameters(model)
    with torch.no_grad():
        if isinstance(cipher, LinearPatchCipher):
            _absorb_linear(model, cipher, layout, inverse, mean, std)
        else:
            cols = torch.as_tensor(sigma, device=weight.device)
            weight.copy_(weight.reshape(weight.shape[0], -1)[:, cols].reshape(weight.shape))
        rows = torch.as_tensor(pi + layout.prefix_rows, device=pos_embed.device)
        pos_embed[:, layout.prefix_rows :] = pos_embed[:, rows].clone()
    if inverse:
        log.debug("restored ViT embeddings for key %s", cipher.key.fingerprint)
    else:
        log.info(
            "ViT embeddings transformed for key %s: these weights are key-equivalent (with the "
            "public weights they came from they reveal the key), so keep the model and its "
            "checkpoints as secret as the key",
            cipher.key.fingerprint,
        )
    return model


def normalised_linear_map(
    cipher: LinearPatchCipher,
    channels: int,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(B, B^-1, c)`` with ``z_enc = B z + c`` for every patch vector in the model's input
    domain (``z = (v - mean) / std`` per channel), float64; secret (a function of the key).
    ``B = S^-1 A S`` with A orthogonal, so ``B^-1 = S^-1 A^T S`` needs no matrix inversion.

    Raises:
        ModelTransformError: ``mean``/``std`` do not give one value per channel or std <= 0.
    """
    per_channel = cipher.block_size**2
    stats = []
    for name, values in (("mean", mean), ("std", std)):
        values = [0.5] * channels if values is None else [float(v) for v in values]
        if len(values) != channels:
            raise ModelTransformError(
                f"{name} needs one value per channel ({channels}), got {len(values)}"
            )
        stats.append(np.repeat(np.asarray(values, dtype=np.float64), per_channel))
    centre, scale = stats
    if (scale <= 0).any():
        raise ModelTransformError("std must be positive")
    matrix = cipher.patch_matrix(channels)
    linear = matrix * scale[None, :] / scale[:, None]  # S^-1 A S
    inverse = matrix.T * scale[None, :] / scale[:, None]  # S^-1 A^T S
    offset = (matrix @ (centre - 0.5) - (centre - 0.5)) / scale
    return linear, inverse, offset


def _absorb_linear(
    model: nn.Module,
    cipher: LinearPatchCipher,
    layout: VitEmbeddingLayout,
    inverse: bool,
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
) -> None:
    """Patch embedding ``E -> E B^-1`` and bias ``b -> b - E B^-1 c`` (or back), in float64."""
    linear, inverse_linear, offset = normalised_linear_map(cipher, layout.channels, mean, std)
    proj = cast(nn.Conv2d, model.get_submodule("patch_embed.proj"))
    weight = proj.weight
    flat = weight.detach().reshape(weight.shape[0], -1).double().cpu().numpy()
    if inverse:  # E = Ê B, b = b̂ + Ê c
        new_flat, bias_shift = flat @ linear, flat @ offset
    else:
        new_flat = flat @ inverse_linear
        bias_shift = -(new_flat @ offset)
    if np.abs(bias_shift).max() > 0:
        if proj.bias is None:
            raise ModelTransformError(
                "the patch embedding has no bias to absorb the normalisation offset of the "
                "linear cipher; normalise with mean 0.5 (the project's default)"
            )
        shift = torch.as_tensor(bias_shift, dtype=proj.bias.dtype, device=proj.bias.device)
        proj.bias.add_(shift)
    weight.copy_(
        torch.as_tensor(new_flat, dtype=weight.dtype, device=weight.device).view_as(weight)
    )
