"""The population threat model: the attacker holds N ciphertexts of one key (spec §2.0).

Every ViT-absorbable cipher encrypts a whole dataset with one key, so the provider we protect
against holds the encrypted training set (thousands of ciphertexts of that key) plus public
plain images of the same domain (never the victims themselves). A :class:`Corpus` is that
victim set as the attacks see it: a re-iterable source of ``(B, C, H, W)`` uint8 chunks. The
population attacks read it chunk by chunk and keep only fixed-size statistics, so their memory
does not grow with N; a tensor, a list of batches, a folder of ciphertext images or any
callable that yields batches can be a corpus.

Written here because a Lightning/torch ``DataLoader`` would do the same with more machinery and
without the two things the attacks need: several passes over the same images and a known image
count without decoding them all.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import torch

from vitlearnenc.attacks.scoring import check_image_batch
from vitlearnenc.errors import InputError
from vitlearnenc.utils.imagefiles import list_images, read_image

#: values per default chunk (about 680 images at 32x32, 14 at 224x224): chunks sized by pixels
_CHUNK_PIXELS = 2**21


class CorpusError(InputError):
    """A corpus that cannot be read as ciphertexts of one key (empty, mixed shapes, one-shot)."""


class Corpus:
    """N ciphertexts of one key (or N public plain images), read in chunks, any number of passes.

    Args:
        chunks: a callable returning a *fresh* iterable of ``(B, C, H, W)`` uint8 tensors on
            every call (each call is one pass over the corpus).
        count: the number of images, if known without a pass (else counted on first use).
    """

    def __init__(
        self, chunks: Callable[[], Iterable[torch.Tensor]], count: int | None = None
    ) -> None:
        self._chunks = chunks
        self._count = count
        self._shape: tuple[int, int, int] | None = None

    # ------------------------------------------------------------------ constructors

    @classmethod
    def from_tensor(cls, images: torch.Tensor, chunk_size: int | None = None) -> Corpus:
        """A corpus over an in-memory ``(N, C, H, W)`` uint8 tensor (chunks are views)."""
        check_image_batch(images, "corpus images")
        if images.shape[0] == 0:
            raise CorpusError("the corpus is empty; pass at least one ciphertext")
        size = chunk_size or default_chunk_size(tuple(images.shape[1:]))

        def chunks() -> Iterator[torch.Tensor]:
            for start in range(0, images.shape[0], size):
                yield images[start : start + size]

        return cls(chunks, int(images.shape[0]))

    @classmethod
    def from_batches(cls, batches: Iterable[torch.Tensor]) -> Corpus:
        """A corpus over a re-iterable collection of batches (a list, a DataLoader).

        Raises:
            CorpusError: ``batches`` is a one-shot iterator (a generator): the attacks read
                the corpus more than once; pass a list, or :class:`Corpus` a callable.
        """
        if iter(batches) is batches:
            raise CorpusError(
                "the corpus is a one-shot iterator, but the attacks read it several times; "
                "pass a list of batches, a tensor, a folder, or Corpus(lambda: make_batches())"
            )
        return cls(lambda: batches)

    @classmethod
    def from_folder(
        cls, root: str | os.PathLike[str], chunk_size: int = 1024, mode: str = "RGB"
    ) -> Corpus:
        """A corpus over every image file under ``root`` (sorted, decoded chunk by chunk).

        The ciphertexts must be lossless (PNG, as ``vitlearnenc-encrypt`` writes them).
        """
        paths = list_images(root)
        if not paths:
            raise CorpusError(f"no image files under {root}; point the corpus at ciphertexts")

        def chunks() -> Iterator[torch.Tensor]:
            for start in range(0, len(paths), chunk_size):
                yield torch.stack([read_image(p, mode) for p in paths[start : start + chunk_size]])

        return cls(chunks, len(paths))

    # ------------------------------------------------------------------------- access

    def __iter__(self) -> Iterator[torch.Tensor]:
        """One pass: checked ``(B, C, H, W)`` uint8 chunks on their own device."""
        seen = 0
        for chunk in self._chunks():
            check_image_batch(chunk, "corpus chunk")
            shape = tuple(chunk.shape[1:])
            if self._shape is None:
                self._shape = shape  # type: ignore[assignment]
            elif shape != self._shape:
                raise CorpusError(
                    f"corpus chunks differ in image shape ({self._shape} vs {shape}); "
                    "a corpus holds ciphertexts of one key and one image size"
                )
            seen += chunk.shape[0]
            if chunk.shape[0]:
                yield chunk
        if seen == 0:
            raise CorpusError("the corpus is empty; pass at least one ciphertext")
        self._count = seen

    def __len__(self) -> int:
        if self._count is None:
            for _ in self:
                pass
        if self._count is None:  # the source yielded nothing countable
            raise CorpusError("the corpus yielded no chunks; give it at least one image")
        return self._count

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the images (read from the first chunk)."""
        if self._shape is None:
            next(iter(self))
        if self._shape is None:
            raise CorpusError("the corpus yielded no chunks; give it at least one image")
        return self._shape

    def take(self, count: int) -> Corpus:
        """The first ``count`` images (the N of a population curve)."""
        if count <= 0:
            raise InputError(f"count must be positive, got {count}")

        def chunks() -> Iterator[torch.Tensor]:
            left = count
            for chunk in self:
                if left <= 0:
                    return
                yield chunk[:left]
                left -= chunk.shape[0]

        known = None if self._count is None else min(count, self._count)
        return Corpus(chunks, known)

    def map(self, transform: Callable[[torch.Tensor], torch.Tensor]) -> Corpus:
        """A lazy corpus of ``transform(chunk)`` (e.g. a partial decryption), same count."""

        def chunks() -> Iterator[torch.Tensor]:
            for chunk in self:
                yield transform(chunk)

        return Corpus(chunks, self._count)

    def materialize(self) -> torch.Tensor:
        """All images as one tensor (for small corpora: public images, tests)."""
        return torch.cat(list(self))

    def __repr__(self) -> str:
        count = "?" if self._count is None else self._count
        return f"Corpus(images={count}, shape={self._shape})"


def as_corpus(images: Corpus | torch.Tensor | Iterable[torch.Tensor] | str | Path) -> Corpus:
    """Accept every form a corpus comes in: a :class:`Corpus`, an ``(N, C, H, W)`` uint8
    tensor, a re-iterable of such batches, or a folder of image files."""
    if isinstance(images, Corpus):
        return images
    if isinstance(images, torch.Tensor):
        return Corpus.from_tensor(images)
    if isinstance(images, (str, Path)):
        return Corpus.from_folder(images)
    return Corpus.from_batches(images)


def default_chunk_size(shape: tuple[int, ...]) -> int:
    """Images per chunk so that one chunk holds about 2 M values (bounded memory per pass)."""
    values = 1
    for dim in shape:
        values *= int(dim)
    return max(1, _CHUNK_PIXELS // max(values, 1))
