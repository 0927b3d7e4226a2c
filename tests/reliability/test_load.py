"""Load: ``vitlearnenc-encrypt`` over thousands of images survives a SIGKILL and a rerun."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.reliability.helpers import BIN
from vitlearnenc.ciphers import generate_key, save_key
from vitlearnenc.cli.encrypt import main_decrypt
from vitlearnenc.utils.imagefiles import TEMP_SUFFIX, list_images, read_image
from vitlearnenc.utils.markers import read_marker

COUNT = 3000


def _tree(root: Path) -> None:
    """COUNT distinct 32x32 PNGs in 10 folders (distinct, so a mixed-up output shows)."""
    rng = np.random.default_rng(0)
    for index in range(COUNT):
        folder = root / f"{index % 10:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{index:05d}.png", compress_level=1)


@pytest.mark.slow
def test_sigkilled_encrypt_reruns_to_exact_outputs_without_rewriting(tmp_path: Path) -> None:
    plain, out, dec = tmp_path / "plain", tmp_path / "enc", tmp_path / "dec"
    _tree(plain)
    key = save_key(generate_key("proposed", 32, 4, seed=9), tmp_path / "owner.key")
    command = [str(BIN / "vitlearnenc-encrypt"), "--key", str(key), "--batch-size", "32"]
    command += [str(plain), str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while len(list(out.rglob("*.png"))) < COUNT // 5:
        assert process.poll() is None, f"finished before it could be killed: {process.stderr}"
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL
    process.stderr.close()

    finished = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    assert COUNT // 5 <= len(finished) < COUNT
    for path in finished:  # every file under a real name is a complete image
        assert read_image(path).shape == (3, 32, 32)
    assert read_marker(out) is not None  # written before the first image

    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"kept {len(finished)} existing output(s)" in rerun.stderr
    assert not list(out.rglob(f"*{TEMP_SUFFIX}"))
    assert all(path.stat().st_mtime_ns == mtime for path, mtime in finished.items())
    assert len(list_images(out)) == COUNT

    assert main_decrypt(["--key", str(key), "--quiet", str(out), str(dec)]) == 0
    for source in list_images(plain):
        restored = dec / source.relative_to(plain)
        assert np.array_equal(np.asarray(Image.open(restored)), np.asarray(Image.open(source)))
