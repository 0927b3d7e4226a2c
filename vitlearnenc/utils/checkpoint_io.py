"""Checkpoints that a killed run can resume from: atomic writes and the random-number state.

Two pieces, both wired in by ``vitlearnenc-train``:

- :class:`AtomicCheckpointIO` writes every checkpoint to a temporary file in the target folder,
  fsyncs it and renames it over the final name, so ``last.ckpt`` is always either the previous
  complete checkpoint or the new complete one, never a torn file, even when the process dies
  during the write (SIGKILL, OOM killer, node failure).
- :class:`RNGStateCallback` stores the global random-number states (torch CPU and CUDA, NumPy,
  Python) in every checkpoint and puts them back on resume. Lightning saves weights, optimiser,
  scheduler and loop counters but not these states, so without it the data order and the
  augmentation of the epochs after a resume differ from an uninterrupted run.

What is exact (see the README section "Reliability and key secrecy"): a run resumed from a
checkpoint written at an epoch boundary, or in the middle of an epoch by step checkpoints
(``callbacks.last_checkpoint.every_n_train_steps=N``), replays the same batches with the same
augmentation and ends with the same weights as an uninterrupted run, with DataLoader workers
too (tested on the CPU with ``data.num_workers=2``, in-memory and streamed data, on one device
and on two DDP ranks). That needs resumable loaders (``StatefulDataLoader`` with a per-epoch seeded sampler, litdata's
``StreamingDataLoader``), the augmentation stream of the DataModule (seeded per batch, its
count in the checkpoint) and :class:`LoaderStateCallback`.
"""

from __future__ import annotations

import os
import random
import secrets
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.fabric.utilities.data import _set_sampler_epoch
from lightning.fabric.utilities.types import _PATH

from vitlearnenc.utils.logging import RankedLogger

log = RankedLogger(__name__)

#: suffix of the temporary files :class:`AtomicCheckpointIO` renames into place
TEMP_SUFFIX = ".ckpt-tmp"
#: checkpoint key of every DDP rank's training-loader state (see :class:`LoaderStateCallback`)
PER_RANK_KEY = "loader_states_per_rank"


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` into a temporary file beside the target, ``fsync``, then ``os.replace``.

    Why not Lightning's ``TorchCheckpointIO``: it buffers the whole checkpoint in memory and
    writes it through an fsspec transaction, whose local temporary file lives in the system
    temp folder (``tempfile.mkstemp()``) and is ``shutil.move``-d into place. Where that folder
    is another filesystem than the run directory (local ``/tmp`` against shared storage, the
    usual cluster layout) the move is a copy into the final name, so a kill during it tears
    ``last.ckpt``; nothing is fsynced; and a killed save leaves a checkpoint-sized file in
    ``/tmp``. Here the temporary file is in the target's folder (the rename is atomic), data
    and rename are fsynced, and temporary files of an earlier killed save are removed at the
    next save. Remote (fsspec) paths still go through Lightning's implementation.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None
    ) -> None:
        """Write ``checkpoint`` to ``path`` atomically; ``path`` is untouched if this fails."""
        if storage_options is not None or not _is_local(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(target.parent)
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
        try:
            with open(tmp, "xb") as handle:
                torch.save(checkpoint, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(target.parent)


def remove_stale_temps(folder: str | os.PathLike[str]) -> int:
    """Delete temporary checkpoint files in ``folder`` that a killed save left behind.

    Returns the number removed. Only one process writes a run's checkpoints (global rank
    zero), so a temporary file found before a save is never one that is still being written.
    """
    removed = 0
    for stale in Path(folder).glob(f".*{TEMP_SUFFIX}"):
        stale.unlink(missing_ok=True)
        removed += 1
    if removed:
        log.info(f"Removed {removed} temporary checkpoint file(s) of an interrupted save")
    return removed


def _is_local(path: _PATH) -> bool:
    return isinstance(get_filesystem(path), LocalFileSystem)


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class RNGStateCallback(L.Callback):
    """Save the global RNG states in every checkpoint and restore them on resume.

    Where the states are put back matters: Lightning may create the first training iterator
    (which draws the epoch's shuffling seed and the loader's base seed from torch's global
    RNG) while the optimisers are configured (``trainer.estimated_stepping_batches``), after
    callbacks have loaded their state but before ``on_fit_start``. So the states are restored
    in :meth:`load_state_dict`, before that draw. Callbacks that use the global RNG in
    ``on_fit_start`` (e.g. by iterating a validation loader) would shift the stream, so the
    state is taken at ``on_fit_start`` (this callback runs first among the configured ones)
    and put back at ``on_train_start``, in fresh and resumed runs alike.

    The state saved is global rank zero's; every rank seeds and draws identically
    (``seed_everything`` uses one seed on all ranks), so it is every rank's state.
    """

    def __init__(self) -> None:
        self._loaded = False
        self._at_fit_start: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        """The global RNG states at the moment the checkpoint is written."""
        return collect_rng_states()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Put the states of the checkpoint back (before the resumed epoch draws its order)."""
        if state_dict:
            set_rng_states(state_dict)
            self._loaded = True

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._at_fit_start = collect_rng_states()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._at_fit_start is not None:
            set_rng_states(self._at_fit_start)
            self._at_fit_start = None
        if self._loaded:
            log.info("Restored the random-number state of the checkpoint")
            self._loaded = False


def collect_rng_states() -> dict[str, Any]:
    """The global RNG states of torch (CPU, and CUDA when initialised), NumPy and Python.

    Only tensors, numbers and tuples, so that checkpoints still load with ``torch.load``'s
    default ``weights_only=True`` (Lightning's own, private ``_collect_rng_states`` keeps
    NumPy's state as an ndarray tuple, which that loader refuses).
    """
    legacy: tuple[Any, ...] = np.random.get_state(legacy=True)  # type: ignore[assignment]
    name, keys, position, has_gauss, cached_gaussian = legacy
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": (
            str(name),
            torch.from_numpy(keys.astype(np.int64)),
            int(position),
            int(has_gauss),
            float(cached_gaussian),
        ),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["torch.cuda"] = torch.cuda.get_rng_state()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Inverse of :func:`collect_rng_states` (a CUDA state is skipped where CUDA is absent)."""
    torch.set_rng_state(states["torch"])
    name, keys, position, has_gauss, cached_gaussian = states["numpy"]
    np.random.set_state(
        (name, keys.numpy().astype(np.uint32), position, has_gauss, cached_gaussian)
    )
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    if "torch.cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state(states["torch.cuda"])


class LoaderStateCallback(L.Callback):
    """Put the training loader's saved position back when Lightning forgot to.

    Lightning keeps the train loader's ``state_dict`` (a ``StatefulDataLoader``'s sampler and
    worker state, litdata's stream position) in every checkpoint and loads it when its fit
    loop first builds the loader. But ``trainer.estimated_stepping_batches``, which the
    learning-rate schedule reads in ``configure_optimizers``, builds the loader before the
    checkpoint is restored; the state then stays unloaded and a run resumed from a mid-epoch
    (step) checkpoint restarts the epoch from another order (Lightning issue #20550, open in
    Lightning 2.6). The same early iterator also took its shuffle before Lightning set the
    sampler's epoch. Here, in a resumed run, at ``on_train_start`` (after the restore, before
    the first batch) the sampler epoch is set, pending states are loaded and the loader is
    iterated afresh, as the fit loop itself does when nothing built the loader early.

    Under DDP every rank has its own loader position (litdata's per-rank stream, the
    ``DistributedSampler`` shard of a ``StatefulDataLoader``), but Lightning writes only global
    rank zero's checkpoint dict, so the other ranks would resume from rank zero's position.
    Here every save gathers all ranks' loader states into the checkpoint
    (``loader_states_per_rank``; all ranks take part in every save, which Lightning requires
    anyway), and on resume each rank puts its own one where Lightning's fit loop loads from.
    """

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if trainer.world_size < 2 or not torch.distributed.is_initialized():
            return
        own = _fit_loop_state(checkpoint).get("combined_loader")
        gathered: list[Any] = [None] * trainer.world_size
        torch.distributed.all_gather_object(gathered, own)
        checkpoint[PER_RANK_KEY] = gathered

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        # callbacks are restored before the loops, so the fit loop reads this rank's state
        states = checkpoint.get(PER_RANK_KEY)
        if states is None:
            return
        if len(states) != trainer.world_size:
            log.warning(
                f"The checkpoint holds the loader positions of {len(states)} ranks but this run "
                f"has {trainer.world_size}: every rank resumes from rank 0's position, so the "
                "rest of this epoch is not the order of an uninterrupted run"
            )
            return
        fit_loop = _fit_loop_state(checkpoint)
        fit_loop.pop("combined_loader", None)
        if states[trainer.global_rank] is not None:
            fit_loop["combined_loader"] = states[trainer.global_rank]

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        loop = trainer.fit_loop
        if trainer.ckpt_path is None or loop._combined_loader is None:
            return
        # the sampler epoch too: the early iterator was made before Lightning set it
        for loader in loop._combined_loader.flattened:
            _set_sampler_epoch(loader, loop.epoch_progress.current.processed)
        states = loop._combined_loader_states_to_load
        if states and loop.restarting:
            loop._combined_loader._load_state_dicts(states)
            loop._combined_loader_states_to_load = []
        if loop._data_fetcher is not None:
            iter(loop._data_fetcher)  # a new iterator, from the loaded position


def _fit_loop_state(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The fit loop's own state in a Lightning checkpoint dict (empty if absent)."""
    state: dict[str, Any] = checkpoint.get("loops", {}).get("fit_loop", {}).get("state_dict", {})
    return state
