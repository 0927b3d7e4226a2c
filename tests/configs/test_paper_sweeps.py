"""The README's full-scale sweep commands: every job composes for SLURM with one GPU, and the
two sweeps cover exactly the rows of Table I that the aggregation compares against, so that
neither the documented commands nor the paper table can drift from the configs."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser

from experiments.aggregate import PAPER, Row
from tests.helpers.hydra import composed
from vitlearnenc.utils.paths import PROJECT_ROOT

SWEEP_PREFIX = "vitlearnenc-train -m hydra/launcher=slurm "
DATASETS = {"cifar10": 0, "cifar100": 1}  # column of the dataset in PAPER's values


def readme_sweeps() -> dict[str, list[str]]:
    """Override list of each documented SLURM sweep, by its ``data=`` value (a command continued
    with a backslash counts as one line)."""
    sweeps: dict[str, list[str]] = {}
    text = (PROJECT_ROOT / "README.md").read_text().replace("\\\n", " ")
    for line in text.splitlines():
        if line.startswith(SWEEP_PREFIX):
            overrides = shlex.split(line)[2:]
            data = next(o.removeprefix("data=") for o in overrides if o.startswith("data="))
            sweeps[data] = overrides
    return sweeps


def jobs(overrides: list[str]) -> list[list[str]]:
    """The override list of every job of a sweep, expanded by Hydra's basic sweeper itself
    (the sweeper the SLURM launcher runs under)."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    return BasicSweeper.split_arguments(parsed, max_batch_size=None)[0]


def test_readme_documents_one_slurm_sweep_per_dataset() -> None:
    # the paper's datasets; other documented SLURM lines (e.g. data=streaming) are not Table I
    assert set(DATASETS) <= set(readme_sweeps())


@pytest.mark.parametrize("data", sorted(DATASETS))
def test_sweep_covers_every_table_row_of_its_dataset_on_one_gpu(data: str, tmp_path: Path) -> None:
    column = DATASETS[data]
    covered = set()
    for job in jobs(readme_sweeps()[data]):
        with composed("train", job, tmp_path, keep_hydra=True) as cfg:
            launcher = cfg.hydra.launcher
            assert launcher._target_.endswith("SlurmLauncher"), job
            assert launcher.gpus_per_node == launcher.tasks_per_node == 1
            assert cfg.trainer.accelerator == "gpu" and cfg.data.name == data
            assert cfg.data.batch_size == 512  # the paper's batch, every row
            row = Row(data, cfg.cipher.name, cfg.model.name, cfg.model.get("adapt"))
        assert row.paper() is not None, f"{job} has no Table I number to compare with"
        covered.add((row.cipher, row.paper_network, row.adapt))
    expected = {key for key, numbers in PAPER.items() if numbers[column] is not None}
    assert covered == expected


def test_a_sweep_job_spreads_over_several_gpus_with_ddp(tmp_path: Path) -> None:
    sweep = readme_sweeps()["cifar10"]
    job = [*jobs(sweep)[0], "trainer=ddp", "trainer.devices=4"]
    with composed("train", job, tmp_path, keep_hydra=True) as cfg:
        assert cfg.trainer.strategy == "ddp" and cfg.trainer.devices == 4
        assert cfg.hydra.launcher.tasks_per_node == cfg.hydra.launcher.gpus_per_node == 4
