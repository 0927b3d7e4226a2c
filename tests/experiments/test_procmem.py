"""The /proc sampler of the memory benchmarks tells anonymous from file-backed pages and
attributes children to their parent."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from experiments.benchmarks.procmem import TreeSampler, read_memory, summarize_rank

pytestmark = pytest.mark.skipif(not Path("/proc/self/smaps_rollup").exists(), reason="Linux only")

CHILD = textwrap.dedent(
    """
    import mmap, os, sys, time
    heap = bytearray(120 * 2**20)              # anonymous: touched page by page
    for i in range(0, len(heap), 4096):
        heap[i] = 1
    with open(sys.argv[1], "rb") as f:         # file-backed: a mapped file, read through
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        total = sum(mapped[i] for i in range(0, len(mapped), 4096))
    print("ready", flush=True)
    time.sleep(1.5)
    """
)


def test_sampler_splits_anonymous_and_file_backed_pages_per_process(tmp_path: Path) -> None:
    data = tmp_path / "chunk.bin"
    data.write_bytes(b"\x07" * (80 * 2**20))
    parent = subprocess.Popen(
        [sys.executable, "-c",
         "import subprocess, sys; subprocess.run([sys.executable, '-c', sys.argv[1], sys.argv[2]])",
         CHILD, str(data)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    with TreeSampler(parent.pid, interval=0.1) as sampler:
        assert parent.stdout is not None and parent.stdout.readline().strip() == "ready"
        sampler.sample()
        parent.wait(timeout=60)
    summary = summarize_rank(sampler, parent.pid)
    [child] = summary["workers_peak_MB"]
    assert child["rss_anon"] >= 120 and child["rss_file"] >= 80
    assert child["uss"] >= 120 and child["pss"] <= child["rss"] + 1
    assert summary["main_peak_MB"]["rss_anon"] < 60  # the parent allocated nothing big
    assert read_memory(parent.pid) is None  # exited
