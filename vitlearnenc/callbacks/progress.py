"""Progress bar choice: Rich in an interactive terminal, a plain bar under SLURM or pipes."""

from __future__ import annotations

import os
import sys

from lightning.pytorch.callbacks import ProgressBar, RichProgressBar, TQDMProgressBar


def make_progress_bar(refresh_rate: int = 1) -> ProgressBar:
    """``RichProgressBar`` when stdout is a terminal outside SLURM batch jobs; otherwise a TQDM
    bar refreshed rarely, so log files are not flooded with redraws."""
    interactive = sys.stdout.isatty() and "SLURM_JOB_ID" not in os.environ
    if interactive:
        return RichProgressBar(refresh_rate=refresh_rate)
    return TQDMProgressBar(refresh_rate=max(refresh_rate, 50))
