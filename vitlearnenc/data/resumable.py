"""Streaming loader that resumes mid-epoch exactly under Lightning.

Lightning stores a train loader's ``state_dict`` in every checkpoint (step checkpoints too)
and hands it back to ``load_state_dict`` on resume. litdata's ``StreamingDataLoader`` then
sets ``restore=True`` so that its next ``__iter__`` continues from the saved position instead
of starting a new epoch, and clears the flag only when its generator runs to the end. Lightning
ends an epoch after ``len(loader)`` batches without exhausting the generator, so the flag
stayed set: the next epoch "continued" the finished one, yielded no batch, and fit stopped
with "max_epochs reached" (litdata 0.2.76, Lightning 2.6). :class:`ResumableStreamingDataLoader`
keeps ``restore`` for the first iteration after ``load_state_dict`` only.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from litdata import StreamingDataLoader


class ResumableStreamingDataLoader(StreamingDataLoader):
    """A ``StreamingDataLoader`` whose restored position applies to one iteration only."""

    restore: bool  # set by the parent

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._restore_pending = False

    def load_state_dict(self, obj: dict[str, Any]) -> None:
        super().load_state_dict(obj)
        self._restore_pending = self.restore

    def __iter__(self) -> Iterator[Any]:
        # a generator, like the parent's: this runs at the first batch, not at iter()
        if self.restore and not self._restore_pending:
            self.restore = False  # an earlier iteration already replayed the restored epoch
        self._restore_pending = False
        yield from super().__iter__()
