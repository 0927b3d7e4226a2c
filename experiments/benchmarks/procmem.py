"""Per-process memory of a process tree, sampled from ``/proc`` while it runs.

Why not ``ru_maxrss``: it is one number per process (and for all children together only the
largest), and RSS mixes three kinds of pages that mean different things for "does memory grow
with the dataset": anonymous memory (heap, tensors: what a leak grows), file-backed pages
(memory-mapped chunk files: page cache, clean, reclaimable by the kernel) and shared memory
(the tensors loader workers hand to the main process). ``/proc/PID/status`` splits RSS into
``RssAnon``, ``RssFile`` and ``RssShmem``; ``/proc/PID/smaps_rollup`` gives PSS (shared pages
divided among the processes that map them, so forked workers do not count the parent's pages
again) and USS (pages private to the process). psutil is not a dependency, so ``/proc`` is
read directly (Linux only).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

STATUS_FIELDS = ("VmRSS", "RssAnon", "RssFile", "RssShmem")
ROLLUP_FIELDS = ("Pss", "Pss_Anon", "Pss_File", "Pss_Shmem", "Private_Clean", "Private_Dirty")
#: the figures kept per process, in MB: RSS and its parts, PSS and its parts, USS
FIELDS = ("rss", "rss_anon", "rss_file", "rss_shmem", "pss", "pss_anon", "pss_file",
          "pss_shmem", "uss")  # fmt: skip


def _kb_fields(path: Path, names: tuple[str, ...]) -> dict[str, int]:
    values: dict[str, int] = {}
    for line in path.read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in names:
            values[key] = int(rest.split()[0])
    return values


def read_memory(pid: int) -> dict[str, float] | None:
    """The :data:`FIELDS` of ``pid`` in MB (None if it has exited)."""
    try:
        status = _kb_fields(Path(f"/proc/{pid}/status"), STATUS_FIELDS)
        rollup = _kb_fields(Path(f"/proc/{pid}/smaps_rollup"), ROLLUP_FIELDS)
    except (FileNotFoundError, ProcessLookupError, PermissionError, ValueError):
        return None
    if "VmRSS" not in status:  # a zombie
        return None
    kb = {
        "rss": status["VmRSS"],
        "rss_anon": status.get("RssAnon", 0),
        "rss_file": status.get("RssFile", 0),
        "rss_shmem": status.get("RssShmem", 0),
        "pss": rollup.get("Pss", 0),
        "pss_anon": rollup.get("Pss_Anon", 0),
        "pss_file": rollup.get("Pss_File", 0),
        "pss_shmem": rollup.get("Pss_Shmem", 0),
        "uss": rollup.get("Private_Clean", 0) + rollup.get("Private_Dirty", 0),
    }
    return {name: value / 1024 for name, value in kb.items()}


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (all its threads' ``children`` lists)."""
    found: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                found += [int(c) for c in (task / "children").read_text().split()]
            except (FileNotFoundError, ProcessLookupError):
                continue
    except (FileNotFoundError, ProcessLookupError):
        return []
    return sorted(set(found))


def process_tree(root: int) -> dict[int, int | None]:
    """``{pid: parent pid}`` for ``root`` (parent None) and all its descendants."""
    tree: dict[int, int | None] = {root: None}
    todo = [root]
    while todo:
        pid = todo.pop()
        for child in children(pid):
            if child not in tree:
                tree[child] = pid
                todo.append(child)
    return tree


class TreeSampler:
    """Sample :func:`read_memory` for a process tree every ``interval`` seconds in a thread.

    Keeps, per pid, its parent, the peak of every field (each field's own maximum over the run)
    and a coarse timeline (at most ``timeline_points`` samples) so that growth over the run is
    visible, not only the peak.
    """

    def __init__(self, root: int, interval: float = 0.25, timeline_points: int = 40) -> None:
        self.root = root
        self.interval = interval
        self.timeline_points = timeline_points
        self.parent: dict[int, int | None] = {}
        self.peak: dict[int, dict[str, float]] = {}
        self.samples: list[tuple[float, dict[int, dict[str, float]]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._t0 = time.perf_counter()

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def sample(self) -> None:
        """Read every process of the tree once."""
        now: dict[int, dict[str, float]] = {}
        for pid, parent in process_tree(self.root).items():
            memory = read_memory(pid)
            if memory is None:
                continue
            self.parent.setdefault(pid, parent)
            peak = self.peak.setdefault(pid, dict.fromkeys(FIELDS, 0.0))
            for name, value in memory.items():
                peak[name] = max(peak[name], value)
            now[pid] = memory
        self.samples.append((time.perf_counter() - self._t0, now))

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def depth(self, pid: int) -> int:
        level = 0
        while self.parent.get(pid) is not None:
            pid = self.parent[pid]  # type: ignore[assignment]
            level += 1
        return level

    def timeline(self, pids: list[int]) -> list[dict[str, float]]:
        """Sum over ``pids`` of RSS, RssAnon and RssFile at up to ``timeline_points`` times."""
        step = max(1, len(self.samples) // self.timeline_points)
        points = []
        for seconds, now in self.samples[::step]:
            alive = [now[p] for p in pids if p in now]
            if alive:
                points.append(
                    {"t_s": round(seconds, 2)}
                    | {
                        k: round(sum(m[k] for m in alive), 1)
                        for k in ("rss", "rss_anon", "rss_file")
                    }
                )
        return points


def summarize_rank(
    sampler: TreeSampler, main: int, exclude: set[int] | None = None
) -> dict[str, Any]:
    """Peaks of one rank's main process ``main`` and of each of its loader workers (its
    children but those in ``exclude``: other ranks it started), in MB, plus the worst worker
    field by field and timelines."""
    skip = exclude or set()
    workers = [p for p, parent in sampler.parent.items() if parent == main and p not in skip]
    rounded = {k: round(v, 1) for k, v in sampler.peak.get(main, {}).items()}
    per_worker = [{k: round(v, 1) for k, v in sampler.peak[w].items()} for w in workers]
    largest = {k: max((w[k] for w in per_worker), default=0.0) for k in FIELDS}
    together = [[now[p] for p in [main, *workers] if p in now] for _, now in sampler.samples]
    return {
        # main process and workers at the same moment (the sum of their peaks is an upper bound)
        "rank_peak_rss_sum_MB": round(max(sum(m["rss"] for m in t) for t in together), 1),
        "rank_peak_pss_sum_MB": round(max(sum(m["pss"] for m in t) for t in together), 1),
        "main_peak_MB": rounded,
        "workers_peak_MB": per_worker,
        "largest_worker_peak_MB": largest,
        "workers_timeline_MB": sampler.timeline(workers),
        "main_timeline_MB": sampler.timeline([main]),
    }
