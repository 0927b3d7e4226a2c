"""Shared pieces of the reliability tests: console-script runs, a self-killing callback and a
scanner that looks for key material in every file a run wrote."""

from __future__ import annotations

import base64
import gzip
import io
import os
import re
import signal
import subprocess
import sys
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import lightning as L
import numpy as np
import torch

from vitlearnenc.ciphers import CipherKey

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

#: a tiny, fast training setup on synthetic data (64 px images, 8 px blocks, so that both
#: permutations of the proposed key are long enough to be found unambiguously)
TINY = [
    "data=synthetic",
    "data.num_train=96",
    "data.num_test=32",
    "data.batch_size=16",
    "data.num_workers=0",
    "model=vit_micro",
    "model.patch_size=8",
    "image_size=64",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]


def run_console(
    script: str,
    args: list[str],
    cwd: Path,
    timeout: int = 300,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run an installed console script with the repository importable (for test callbacks)."""
    inherited = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    full_env = {
        **inherited,
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        **(env or {}),
    }
    return subprocess.run(
        [str(BIN / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=cwd,
    )


class KillAtStep(L.Callback):
    """SIGKILL this process right after optimiser step ``step`` (no handler, no cleanup: what
    the OOM killer or a lost node does)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class SaveFinalWeights(L.Callback):
    """Write the weights at the end of fit to ``<run dir>/final_weights.pt`` (``last.ckpt`` is
    not necessarily the last epoch: Lightning refreshes it only when a top-k file is saved)."""

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        torch.save(pl_module.state_dict(), Path(trainer.default_root_dir) / "final_weights.pt")


# --------------------------------------------------------------------- key-material scanner
_WIDTH = 12  # consecutive key entries that count as a leak (random matches are negligible)
_SEP = r"[\s,;\[\]()\-]+"  # JSON, Python/NumPy/torch reprs, CSV, YAML lists, line wraps
_DTYPES = ("<i8", ">i8", "<i4", ">i4", "<i2", ">i2", "<u2", "u1", "<f4", "<f8")


def key_arrays(key: CipherKey) -> dict[str, np.ndarray]:
    """Every permutation of ``key`` and its inverse, by name."""
    arrays = {}
    for name, values in key.material.items():
        arrays[name] = np.asarray(values, dtype=np.int64)
        if sorted(values.tolist()) == list(range(len(values))):
            arrays[f"inverse {name}"] = np.argsort(values).astype(np.int64)
    return arrays


def _windows(values: np.ndarray) -> Iterator[np.ndarray]:
    width = min(_WIDTH, len(values))
    for start in range(len(values) - width + 1):
        yield values[start : start + width]


class KeyLeakScanner:
    """Finds the material of some keys in text and bytes, in the encodings a program could
    plausibly write: decimal lists with any separator (JSON, ``str(list)``, NumPy/torch reprs,
    CSV, YAML), raw array bytes of common integer and float dtypes in both byte orders, and
    base64 of those bytes. Any run of 12 consecutive entries (or the whole array if shorter)
    counts, so truncated reprs (``[3, 17, ..., 9]``) are caught too.
    """

    def __init__(self, keys: Iterable[CipherKey]) -> None:
        self.text_patterns: list[tuple[str, re.Pattern[bytes]]] = []
        self.byte_patterns: list[tuple[str, bytes]] = []
        for key in keys:
            for name, values in key_arrays(key).items():
                what = f"{key.fingerprint} {name}"
                numbers = [rf"{int(v)}(?:\.0*)?" for v in values]
                windows = [
                    _SEP.join(numbers[start : start + min(_WIDTH, len(values))])
                    for start in range(len(values) - min(_WIDTH, len(values)) + 1)
                ]
                regex = rf"(?<![\d.])(?:{'|'.join(windows)})(?![\d])"
                self.text_patterns.append((what, re.compile(regex.encode())))
                for dtype in _DTYPES:
                    if dtype == "u1" and values.max() > 255:
                        continue
                    for window in _windows(values):
                        self.byte_patterns.append(
                            (f"{what} as {dtype}", window.astype(dtype).tobytes())
                        )
                    whole = values.astype(dtype).tobytes()
                    for shift in range(3):
                        encoded = base64.b64encode(whole[shift:])[:-4]
                        self.byte_patterns.append((f"{what} as base64 {dtype}", encoded))

    def scan_bytes(self, data: bytes) -> list[str]:
        """What key material ``data`` contains (empty when none)."""
        found = [what for what, pattern in self.text_patterns if pattern.search(data)]
        found += [what for what, needle in self.byte_patterns if needle in data]
        return sorted(set(found))

    def scan_text(self, text: str) -> list[str]:
        return self.scan_bytes(text.encode())

    def scan_tree(self, root: Path, exclude: Iterable[Path] = ()) -> dict[str, list[str]]:
        """Leaks per file under ``root`` (archives are also scanned member by member)."""
        skip = {Path(p).resolve() for p in exclude}
        leaks = {}
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            if path.resolve() in skip:
                continue
            found = []
            for data in _contents(path.read_bytes()):
                found += self.scan_bytes(data)
            if found:
                leaks[str(path.relative_to(root))] = sorted(set(found))
        return leaks


def _contents(data: bytes) -> Iterator[bytes]:
    """The bytes of a file and, for zip (torch checkpoints) and gzip files, their members."""
    yield data
    if data[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for member in archive.namelist():
                yield archive.read(member)
    elif data[:2] == b"\x1f\x8b":
        yield gzip.decompress(data)


def written_files(root: Path) -> set[str]:
    """Relative paths of the files under ``root``."""
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
