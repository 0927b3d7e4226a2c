"""Fast batched application of a cipher's gather plan: the code that runs on every batch.

Why this is hand-written: a cipher key is a fixed gather plus a fixed negation, and no library
ships a keyed pixel permutation, so the choice is between torch spellings, which differ by an
order of magnitude. The obvious one, ``x.reshape(B, C, -1).index_select(2, index)`` (kept as
:meth:`~vitlearnenc.ciphers.base.IndexCipher._apply_reference`, the path the tests compare
against), takes ATen's generic branch that copies one strided (B*C)-value slice per index: about
0.2x the throughput of ``clone()`` on a (256, 3, 224, 224) batch for the proposed cipher, 0.04x for
LE and ELE. Costs measured on one core of the 2-core AVX-512 test machine (torch 2.14; ns per
moved element, cache-resident data; an element of 1 to 8 bytes costs about the same):

======================================================  ======
``torch.gather(src, 1, index.expand(rows, L), out=)``   0.6    typed loop, parallel over rows
``index_select`` on dim 1 (one ``memcpy`` per element)  2.5
advanced indexing ``x[:, index]``                       4.0
permute + copy (e.g. 8x8 byte transposes)               0.63   per byte: no cheaper detour
torch.compile (inductor) of the gather                  ~0.5   plus seconds of compile per shape
======================================================  ======

On a batch that does not fit the caches the gather stalls on its random loads; the inverse
*scatter* reads in order and hides its random stores, so CPU permutations run as scatters
(:class:`RowGather`: 39 vs 51 ms for the proposed cipher on 256 x 3 x 224^2 uint8, one thread).
A kernel

1. moves values with one scatter/gather along the last dim of a ``(rows, L)`` view, the int64
   index (the only index dtype both take) expanded over the rows, not copied;
2. moves the widest unit the plan allows (:func:`run_width`): where the plan moves aligned runs of
   k consecutive values, k values travel as one int16/int32/int64 element. Real keys of the
   proposed cipher shuffle single pixels (runs of 1), but a 2x2-block key moves 2-pixel row
   segments, and there the int16 units lift uint8 throughput from 0.46x to 0.74x ``clone()``;
3. writes straight into the freshly allocated output and negates in place (uint8 XOR with a 0/255
   mask; float :func:`torch.addcmul` with a +-1 scale and a 1 / -0.0 offset, bit-exact
   ``1 - v`` / ``v``). No batch-sized temporary: first touching a fresh 38 MB tensor (page faults)
   costs more than copying into it, and is most of what ``clone()`` itself costs.

Measured and not used: packing 2/4/8 planes into int16/int32/int64 with elementwise ops to move
wider units (the packing costs what the wider gather saves), selecting PE's colours with bitwise
masks for a fixed key (more passes than one gather), copying chunks of the batch into a cached
buffer before gathering (faster on one idle core, much slower once other processes share the
cores: every chunk adds parallel regions that wait for both threads).

:class:`NibbleKernel` does the same for LE/ELE, whose plans index nibbles. Everything is plain
torch, so the same code runs on any device; callers cache one kernel per (plan, device, dtype).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from vitlearnenc.ciphers.plan import GatherPlan

#: integer dtype that moves ``n`` bytes as one gathered element
_UNIT_DTYPES = {2: torch.int16, 4: torch.int32, 8: torch.int64}
#: widest element ``torch.gather`` moves in one step
_MAX_UNIT_BYTES = 8
#: CPU batches of kernels that need scratch buffers are cut into chunks whose buffers stay about
#: this small: small enough that the allocator recycles them instead of page-faulting fresh ones
#: every batch (LE on 256 x 3 x 224^2 uint8, one idle thread: 74 ms at 4 MiB, 103 ms at 32 MiB,
#: 156 ms unchunked), large enough to keep the number of parallel regions low: each waits for a
#: time slice of both threads when other processes share the cores, and 4 MiB chunks made LE 7x
#: slower than 64 MiB ones on this shared machine
SCRATCH_BYTES = 32 << 20


class Kernel(Protocol):
    """A plan ready to run: ``kernel(images, out_shape)`` returns the transformed batch."""

    def __call__(self, images: torch.Tensor, out_shape: tuple[int, ...]) -> torch.Tensor: ...


def run_width(index: np.ndarray, itemsize: int, max_bytes: int = _MAX_UNIT_BYTES) -> int:
    """Largest k (a power of two, ``k * itemsize <= max_bytes``) such that ``index`` moves aligned
    runs of k consecutive values: ``index[k*u + j] == index[k*u] + j`` and ``index[k*u] % k == 0``.

    Such a gather can move k values of ``itemsize`` bytes as one element of ``k * itemsize`` bytes.
    The proposed cipher with 2x2 blocks, for example, moves 2-pixel row segments (k = 2).
    """
    width = max(max_bytes // itemsize, 1)
    while width > 1:
        if index.size % width == 0:
            runs = index.reshape(-1, width)
            starts = runs[:, :1]
            if (starts % width == 0).all() and (runs == starts + np.arange(width)).all():
                return width
        width //= 2
    return 1


def as_units(rows: torch.Tensor, unit_dtype: torch.dtype) -> torch.Tensor:
    """View a ``(rows, L)`` tensor as ``(rows, L / k)`` wider elements (copying first only if its
    strides or storage offset do not allow the view)."""
    width = unit_dtype.itemsize // rows.element_size()
    if rows.stride(-1) != 1 or rows.stride(0) % width or rows.storage_offset() % width:
        rows = rows.clone(memory_format=torch.contiguous_format)  # a fresh, aligned copy
    return rows.view(unit_dtype)


def chunk_size(batch: int, scratch_bytes_per_image: int, device: torch.device) -> int:
    """Images per chunk for a kernel with scratch buffers: the whole batch off the CPU (fewer
    launches), else as many images as fit :data:`SCRATCH_BYTES` (at least one)."""
    if device.type != "cpu":
        return max(batch, 1)
    return max(1, min(batch, SCRATCH_BYTES // max(scratch_bytes_per_image, 1)))


def as_integers(values: torch.Tensor) -> torch.Tensor:
    """The same memory as an integer tensor of the same width (uint8 stays uint8), for bitwise
    selection that copies float values bit for bit."""
    if values.dtype == torch.uint8:
        return values
    return values.view(_UNIT_DTYPES[values.element_size()])


def negation_operands(
    negate: np.ndarray, dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, ...]:
    """Per-value operands of an in-place negation ``v -> max - v`` where ``negate`` is set.

    uint8: one 0/255 mask for XOR. Float: ``(scale, offset)`` for ``offset + v * scale`` with
    scale -1 / offset 1 where negated and scale 1 / offset -0.0 elsewhere (adding -0.0 keeps every
    value bit for bit, -0.0 included, where adding +0.0 would turn -0.0 into +0.0).
    """
    flags = torch.as_tensor(np.asarray(negate, dtype=bool), device=device)
    if dtype == torch.uint8:
        return (flags.to(torch.uint8) * 255,)
    scale = torch.where(flags, -1.0, 1.0).to(dtype)
    offset = torch.where(flags, 1.0, -0.0).to(dtype)
    return scale, offset


def negate_(
    values: torch.Tensor, operands: tuple[torch.Tensor, ...], out: torch.Tensor | None = None
) -> None:
    """Apply :func:`negation_operands` (or :func:`flag_operands`) to ``values``, broadcasting the
    operands; the result goes to ``out`` (default: in place)."""
    out = values if out is None else out
    if len(operands) == 1:
        torch.bitwise_xor(values, operands[0], out=out)
    else:
        scale, offset = operands
        torch.addcmul(offset, values, scale, out=out)


def flag_operands(flags: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """:func:`negation_operands` for a 0/1 uint8 tensor of per-value flags on the device."""
    if dtype == torch.uint8:
        return (flags.neg(),)  # 1 -> 255 in uint8
    scale = flags.to(dtype).mul_(-2).add_(1)  # 1 - 2 * flag
    offset = flags.to(dtype).mul_(scale).neg_()  # -(flag * scale): 1 where set, else -0.0
    return scale, offset


@dataclass(frozen=True)
class RowGather:
    """``out[:, j] = source[:, index[j]]`` for every row, run the cheaper way for the device.

    On CPU a permutation runs as its inverse scatter, ``out.scatter_(1, argsort(index), source)``:
    it reads the source rows in order, which the hardware prefetcher streams, and leaves the
    random accesses to stores, which the store buffer absorbs, where a gather stalls on random
    loads from memory (256 x 3 x 224^2 uint8 batch, one thread: 39 ms vs 51 ms; float32 101 vs
    142 ms; EtC's 3*H*W-long rows 41 vs 64 ms). Elsewhere (CUDA) it is a gather: coalesced
    writes, and no detour through the sort-based scatter of deterministic mode. An index that is
    not a permutation (EtC's original colour mode repeats values) is always gathered.

    Attributes:
        index: ``(1, L)`` int64, the gather index or, when ``scatter``, its inverse.
        scatter: whether to scatter.
    """

    index: torch.Tensor
    scatter: bool

    @classmethod
    def build(cls, index: np.ndarray, device: torch.device) -> RowGather:
        """The gather ``out[:, j] = source[:, index[j]]`` on ``device``."""
        is_permutation = np.array_equal(np.sort(index), np.arange(index.size))
        scatter = device.type == "cpu" and is_permutation
        values = np.argsort(index, kind="stable") if scatter else index
        return cls(torch.as_tensor(values, dtype=torch.long, device=device).unsqueeze(0), scatter)

    def __call__(self, source: torch.Tensor, out: torch.Tensor) -> None:
        """Fill ``out`` ``(rows, L)`` from ``source`` ``(rows, L_source)``, same dtype."""
        index = self.index.expand(source.shape[0], -1)
        if self.scatter:
            out.scatter_(1, index, source)
        else:
            torch.gather(source, 1, index, out=out)


@dataclass(frozen=True)
class GatherKernel:
    """A :class:`~vitlearnenc.ciphers.plan.GatherPlan` ready to run on one device and dtype.

    Attributes:
        move: the plan's index over units of ``width`` values (:class:`RowGather`).
        width: values moved per gathered element (see :func:`run_width`).
        rows_per_image: rows of the ``(rows, L)`` view per image: C for a spatial plan (one row
            per colour plane), 1 for a plan over all C*H*W values.
        negation: :func:`negation_operands` of the plan's mask, or None.
    """

    move: RowGather
    width: int
    rows_per_image: int
    negation: tuple[torch.Tensor, ...] | None

    @classmethod
    def from_plan(
        cls, plan: GatherPlan, channels: int, device: torch.device, dtype: torch.dtype
    ) -> GatherKernel:
        """Build the kernel of ``plan`` for ``channels``-channel images of ``dtype`` on ``device``."""
        # units may span negated and kept values: the negation runs afterwards on single values
        width = run_width(plan.index, dtype.itemsize)
        move = RowGather.build(plan.index[::width] // width, device)
        negation = None if plan.negate is None else negation_operands(plan.negate, dtype, device)
        return cls(move, width, channels if plan.spatial else 1, negation)

    def __call__(self, images: torch.Tensor, out_shape: tuple[int, ...]) -> torch.Tensor:
        """Transform a ``(B, ...)`` batch; returns a new contiguous ``(B, *out_shape)`` tensor
        of the same dtype and device."""
        batch = images.shape[0]
        rows = batch * self.rows_per_image
        out = torch.empty((batch, *out_shape), dtype=images.dtype, device=images.device)
        length = self.move.index.shape[1] * self.width
        source, target = images.reshape(rows, length), out.view(rows, length)
        if self.width > 1:
            unit_dtype = _UNIT_DTYPES[self.width * images.element_size()]
            source, target = as_units(source, unit_dtype), target.view(unit_dtype)
        self.move(source, target)
        if self.negation is not None:
            negate_(out.flatten(1), self.negation)
        return out


@dataclass(frozen=True)
class NibbleKernel:
    """A nibble plan (LE/ELE, :func:`~vitlearnenc.ciphers.nibbles.nibble_plan`) ready to run.

    Per chunk of images (cache-sized scratch, :data:`SCRATCH_BYTES`): split the n bytes of each
    image into a ``(2, n)`` nibble vector (low nibbles, then high), move the 2n nibbles with one
    :class:`RowGather`, merge them back into bytes and XOR the merged reversal mask: five
    elementwise passes and one move. Every output byte draws two independent nibbles, so the move
    costs two elements per byte and no wider unit exists; this is why LE and ELE stay well below
    ``clone()`` where the byte-level ciphers come close to it.

    Float input is quantised exactly as the reference does (``round(255 * x)``, clamped) and
    returned as ``value / 255`` in its dtype.

    Attributes:
        move: the plan's index into the nibble vector (:class:`RowGather`).
        mask: ``(n,)`` uint8 reversal mask of the merged output bytes (15 / 240 per nibble).
    """

    move: RowGather
    mask: torch.Tensor

    @classmethod
    def from_plan(cls, plan: GatherPlan, device: torch.device) -> NibbleKernel:
        """Build the kernel of a nibble ``plan`` on ``device``."""
        if plan.negate is None:
            raise ValueError("a nibble plan carries its reversal mask")
        low, high = np.asarray(plan.negate, dtype=bool).reshape(2, -1)
        mask = low.astype(np.uint8) * 15 | high.astype(np.uint8) * 240
        return cls(RowGather.build(plan.index, device), torch.as_tensor(mask, device=device))

    def __call__(self, images: torch.Tensor, out_shape: tuple[int, ...]) -> torch.Tensor:
        """Transform a ``(B, ...)`` uint8 (0..255) or float (0..1) batch into a new contiguous
        ``(B, *out_shape)`` tensor of the same dtype and device."""
        batch = images.shape[0]
        size = self.mask.numel()
        out = torch.empty((batch, *out_shape), dtype=images.dtype, device=images.device)
        flat_in, flat_out = images.reshape(batch, size), out.view(batch, size)
        scratch_per_image = 4 * size  # nibbles and moved nibbles
        if images.dtype != torch.uint8:  # quantised and merged bytes, scaled floats
            scratch_per_image += (2 + images.element_size()) * size
        step = chunk_size(batch, scratch_per_image, images.device)
        scratch = _NibbleScratch(step, size, images)
        for start in range(0, batch, step):
            chunk = flat_in[start : start + step]
            target = flat_out[start : start + step]
            if images.dtype == torch.uint8:
                self._bytes(chunk, target, scratch)
            else:
                count = chunk.shape[0]
                quantised = scratch.quantise(chunk)
                merged = scratch.merged[:count]
                self._bytes(quantised, merged, scratch)
                target.copy_(merged).div_(255)
        return out

    def _bytes(self, values: torch.Tensor, target: torch.Tensor, scratch: _NibbleScratch) -> None:
        count, size = values.shape
        nibbles = scratch.nibbles[:count]
        torch.bitwise_and(values, 15, out=nibbles[:, 0])
        torch.bitwise_right_shift(values, 4, out=nibbles[:, 1])
        gathered = scratch.gathered[:count]
        self.move(nibbles.view(count, 2 * size), gathered)
        low, high = gathered.view(count, 2, size).unbind(1)
        torch.add(low, high, alpha=16, out=target)  # low | high << 4: both are 0..15
        target.bitwise_xor_(self.mask)


class _NibbleScratch:
    """Scratch buffers of :class:`NibbleKernel`, allocated once per call and reused per chunk."""

    def __init__(self, rows: int, size: int, images: torch.Tensor) -> None:
        device = images.device
        self.nibbles = torch.empty((rows, 2, size), dtype=torch.uint8, device=device)
        self.gathered = torch.empty((rows, 2 * size), dtype=torch.uint8, device=device)
        if images.dtype != torch.uint8:
            self.merged = torch.empty((rows, size), dtype=torch.uint8, device=device)
            self.quantised = torch.empty((rows, size), dtype=torch.uint8, device=device)
            self.scaled = torch.empty((rows, size), dtype=images.dtype, device=device)

    def quantise(self, chunk: torch.Tensor) -> torch.Tensor:
        """``round(255 * x)`` clamped to 0..255 as uint8: the reference's ops in its order."""
        count = chunk.shape[0]
        scaled = self.scaled[:count]
        torch.mul(chunk, 255, out=scaled)
        scaled.round_().clamp_(0, 255)
        return self.quantised[:count].copy_(scaled)
