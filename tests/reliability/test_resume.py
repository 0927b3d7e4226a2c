"""Kill and resume: atomic checkpoint writes, exact resumption, SLURM requeue configuration."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from lightning.fabric.plugins.environments import SLURMEnvironment

from tests.helpers.hydra import composed
from tests.reliability.helpers import TINY, run_console
from vitlearnenc.runs.build import trainer_plugins
from vitlearnenc.runs.train import resolve_ckpt_path
from vitlearnenc.utils.checkpoint_io import (
    PER_RANK_KEY,
    TEMP_SUFFIX,
    AtomicCheckpointIO,
    LoaderStateCallback,
    RNGStateCallback,
    collect_rng_states,
    set_rng_states,
)
from vitlearnenc.utils.paths import CONF_DIR, register_resolvers

CHECKPOINT = {"state_dict": {"w": torch.arange(1000, dtype=torch.float32)}, "epoch": 1}


def _temps(folder: Path) -> list[Path]:
    return list(folder.glob(f"*{TEMP_SUFFIX}"))


# ------------------------------------------------------------------ atomic checkpoint writes
@pytest.mark.parametrize("failure", ["raise_halfway", "keyboard_interrupt"])
def test_failed_save_keeps_previous_checkpoint_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    io = AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint(CHECKPOINT, path)
    before = path.read_bytes()
    real_save = torch.save

    def save_half_then_fail(obj: object, handle: object) -> None:
        real_save(obj, handle)
        handle.truncate(len(before) // 2)  # type: ignore[attr-defined]
        raise (
            OSError("No space left on device") if failure == "raise_halfway" else KeyboardInterrupt
        )

    monkeypatch.setattr(torch, "save", save_half_then_fail)
    expected = OSError if failure == "raise_halfway" else KeyboardInterrupt
    with pytest.raises(expected):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(1000)}, "epoch": 2}, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert torch.load(path, weights_only=True)["epoch"] == 1
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]


def test_next_save_removes_temp_files_of_a_killed_save(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    stale = folder / f".last.ckpt.1234abcd{TEMP_SUFFIX}"
    stale.write_bytes(b"half a checkpoint")
    AtomicCheckpointIO().save_checkpoint(CHECKPOINT, folder / "epoch000.ckpt")
    assert not stale.exists()
    assert torch.load(folder / "epoch000.ckpt", weights_only=True)["epoch"] == 1


@pytest.mark.parametrize("trainer", ["cpu", "fast_dev_run", "ddp_spawn"])
def test_trainer_configs_write_checkpoints_atomically(tmp_path: Path, trainer: str) -> None:
    import hydra

    with composed("train", [f"trainer={trainer}"], tmp_path) as cfg:
        built = hydra.utils.instantiate(cfg.trainer, plugins=trainer_plugins(cfg), logger=False)
        assert isinstance(built.strategy.checkpoint_io, AtomicCheckpointIO)
    gpu = (CONF_DIR / "trainer" / "gpu.yaml").read_text()
    assert "vitlearnenc.utils.checkpoint_io.AtomicCheckpointIO" in gpu  # gpu/ddp inherit it


# ----------------------------------------------------------------------- ckpt_path=auto
def test_auto_resumes_from_the_newest_checkpoint(tmp_path: Path) -> None:
    assert resolve_ckpt_path("auto", tmp_path) is None
    last = tmp_path / "checkpoints" / "last.ckpt"
    last.parent.mkdir()
    last.write_bytes(b"x")
    os.utime(last, ns=(1_000_000_000, 1_000_000_000))
    assert resolve_ckpt_path("auto", tmp_path) == str(last)
    hpc = tmp_path / "hpc_ckpt_1.ckpt"  # written by Lightning on a SLURM requeue signal
    hpc.write_bytes(b"x")
    assert resolve_ckpt_path("auto", tmp_path) == str(hpc)
    os.utime(last)  # a later epoch finished after the requeued job resumed
    os.utime(hpc, ns=(1_000_000_000, 1_000_000_000))
    assert resolve_ckpt_path("auto", tmp_path) == str(last)
    assert resolve_ckpt_path(None, tmp_path) is None
    assert resolve_ckpt_path("x.ckpt", tmp_path) == "x.ckpt"


# ------------------------------------------------------------------------ RNG state
def test_rng_states_round_trip_and_load_with_weights_only(tmp_path: Path) -> None:
    import random

    import numpy as np

    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    states = collect_rng_states()
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.save({"callbacks": {"RNGStateCallback": states}}, tmp_path / "c.ckpt")
    loaded = torch.load(tmp_path / "c.ckpt", weights_only=True)["callbacks"]["RNGStateCallback"]
    torch.manual_seed(99), np.random.seed(99), random.seed(99)
    RNGStateCallback().load_state_dict(loaded)
    torch.testing.assert_close(torch.rand(3), expected[0])
    np.testing.assert_array_equal(np.random.rand(3), expected[1])
    assert random.random() == expected[2]
    set_rng_states(states)  # the plain function does the same
    torch.testing.assert_close(torch.rand(3), expected[0])


# ------------------------------------------------------------------ per-rank loader states
def _checkpoint_with_ranks(states: list[object]) -> dict:
    return {"loops": {"fit_loop": {"state_dict": {"combined_loader": states[0]}}},
            PER_RANK_KEY: states}  # fmt: skip


@pytest.mark.parametrize("rank", [0, 1])
def test_each_rank_resumes_from_its_own_loader_state(rank: int) -> None:
    from types import SimpleNamespace

    states = [[{"position": 10, "rank": 0}], [{"position": 12, "rank": 1}]]
    checkpoint = _checkpoint_with_ranks(states)
    trainer = SimpleNamespace(world_size=2, global_rank=rank)
    LoaderStateCallback().on_load_checkpoint(trainer, None, checkpoint)  # type: ignore[arg-type]
    assert checkpoint["loops"]["fit_loop"]["state_dict"]["combined_loader"] == states[rank]


def test_another_world_size_keeps_rank_zeros_state_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from types import SimpleNamespace

    checkpoint = _checkpoint_with_ranks([["rank 0"], ["rank 1"]])
    trainer = SimpleNamespace(world_size=4, global_rank=3)
    with caplog.at_level("WARNING"):
        LoaderStateCallback().on_load_checkpoint(trainer, None, checkpoint)  # type: ignore[arg-type]
    assert checkpoint["loops"]["fit_loop"]["state_dict"]["combined_loader"] == ["rank 0"]
    assert "2 ranks but this run has 4" in caplog.text


# ------------------------------------------------------------------------------ SLURM
SLURM_ENV = {
    "SLURM_NTASKS": "1",
    "SLURM_NTASKS_PER_NODE": "1",
    "SLURM_JOB_NUM_NODES": "1",
    "SLURM_JOB_NAME": "vitlearnenc",
    "SLURM_JOB_ID": "4321",
    "SLURM_PROCID": "0",
    "SLURM_LOCALID": "0",
    "SLURM_NODEID": "0",
    "SLURM_NODELIST": "node1",
}


@pytest.mark.parametrize("where", ["batch_job", "interactive", "no_slurm"])
def test_slurm_jobs_get_lightning_auto_requeue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    import hydra

    for name in [n for n in os.environ if n.startswith("SLURM_")]:
        monkeypatch.delenv(name)
    if where != "no_slurm":
        for name, value in SLURM_ENV.items():
            monkeypatch.setenv(name, value)
    if where == "interactive":
        monkeypatch.setenv("SLURM_JOB_NAME", "interactive")
    with composed("train", ["trainer=cpu"], tmp_path) as cfg:
        plugins = trainer_plugins(cfg)
        trainer = hydra.utils.instantiate(cfg.trainer, plugins=plugins, logger=False)
    environment = trainer._accelerator_connector.cluster_environment  # what Lightning's
    # signal connector consults to install its requeue handler
    if where == "batch_job":
        assert isinstance(environment, SLURMEnvironment)
        assert environment.auto_requeue and environment.requeue_signal == signal.SIGUSR1
    else:
        assert not isinstance(environment, SLURMEnvironment)
        assert not any(isinstance(p, SLURMEnvironment) for p in plugins)


def _launcher_config(name: str) -> dict:
    register_resolvers()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose("train", [f"hydra/launcher={name}"], return_hydra_config=True)
            return dict(cfg.hydra.launcher)
    finally:
        GlobalHydra.instance().clear()


def test_submitit_requeue_is_off_so_lightning_owns_it() -> None:
    launcher = _launcher_config("slurm")
    assert launcher["max_num_timeout"] == 0
    assert launcher["_target_"].endswith("SlurmLauncher")


def test_slurm_is_asked_for_lightnings_requeue_signal() -> None:
    launcher = _launcher_config("slurm")
    assert str(launcher["additional_parameters"].get("signal", "")).startswith("USR1@")


# --------------------------------------------------------------------- kill and resume (slow)
KILL_RUN = [
    *TINY,
    "data.num_train=160",  # 144 training images after the split: 9 steps per epoch
    "trainer.max_epochs=3",
    "trainer.log_every_n_steps=1",
    "key=seed",
    "logger=csv",
    "callbacks.progress_bar=null",
    "+callbacks.final._target_=tests.reliability.helpers.SaveFinalWeights",
    "run_name=resume",
]
STEPS_PER_EPOCH, KILL_STEP = 9, 22  # killed in the middle of the third epoch


def _final_state(log_dir: Path) -> tuple[dict[str, torch.Tensor], dict[str, float], int]:
    run = log_dir / "train" / "runs" / "resume"
    weights = torch.load(run / "final_weights.pt", weights_only=True)
    summary = json.loads((run / "metrics.json").read_text())
    return weights, summary["metrics"], summary["global_steps"]


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    """Killed (SIGKILL, no cleanup) in the middle of the third epoch and restarted with the
    same command, the run resumes from its last end-of-epoch checkpoint, replays the epochs
    after it with the same batches and augmentation, and ends exactly where an uninterrupted
    run ends (weights and every metric)."""
    reference = run_console(
        "vitlearnenc-train", [*KILL_RUN, f"paths.log_dir={tmp_path / 'a'}"], cwd=tmp_path
    )
    assert reference.returncode == 0, reference.stderr[-3000:]
    resumed = [*KILL_RUN, f"paths.log_dir={tmp_path / 'b'}"]
    killer = [
        "+callbacks.kill._target_=tests.reliability.helpers.KillAtStep",
        f"+callbacks.kill.step={KILL_STEP}",
    ]
    killed = run_console("vitlearnenc-train", [*resumed, *killer], cwd=tmp_path)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    run = tmp_path / "b" / "train" / "runs" / "resume"
    assert not (run / "metrics.json").exists()
    step = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    assert step % STEPS_PER_EPOCH == 0 and 0 < step < KILL_STEP  # an epoch boundary before
    again = run_console("vitlearnenc-train", resumed, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Restoring states from the checkpoint path" in again.stdout + again.stderr
    weights_a, metrics_a, steps_a = _final_state(tmp_path / "a")
    weights_b, metrics_b, steps_b = _final_state(tmp_path / "b")
    assert steps_a == steps_b == 3 * STEPS_PER_EPOCH
    torch.testing.assert_close(weights_b, weights_a, rtol=1e-6, atol=1e-7)
    assert metrics_b.keys() == metrics_a.keys()
    for name, value in metrics_a.items():
        assert metrics_b[name] == pytest.approx(value, rel=1e-6, abs=1e-7), name
    assert not list(run.rglob(f"*{TEMP_SUFFIX}"))


@pytest.mark.slow
def test_sigkill_during_a_checkpoint_write_leaves_the_old_one(tmp_path: Path) -> None:
    """A real SIGKILL in the middle of writing: the previous file is intact, the temporary
    file is all that is left, and the next save clears it."""
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint(CHECKPOINT, path)
    before = path.read_bytes()
    script = textwrap.dedent(
        f"""
        import os, signal, torch
        from vitlearnenc.utils.checkpoint_io import AtomicCheckpointIO
        real_save = torch.save
        def save_half_then_die(obj, handle):
            real_save(obj, handle)
            handle.truncate(100)
            handle.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        torch.save = save_half_then_die
        AtomicCheckpointIO().save_checkpoint({{"epoch": 2, "w": torch.zeros(10)}}, {str(path)!r})
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    assert path.read_bytes() == before
    assert len(_temps(tmp_path)) == 1 and _temps(tmp_path)[0].stat().st_size == 100
    AtomicCheckpointIO().save_checkpoint({"epoch": 3}, path)
    assert _temps(tmp_path) == []
    assert torch.load(path, weights_only=True)["epoch"] == 3


# ------------------------------------------- mid-epoch resume with loader workers (slow)
STEP_CKPT, STEP_KILL = 4, 14  # last.ckpt every 4 steps; the newest before the kill: step 12
WORKERS = ["data.num_workers=2", f"callbacks.last_checkpoint.every_n_train_steps={STEP_CKPT}"]


def _streaming_overrides(tmp_path: Path) -> list[str]:
    """Plain shards of 40 training images (random 16 px PNGs), encrypted on the device."""
    from tests.helpers.trees import write_tree
    from vitlearnenc.cli.pack import main as pack_main

    write_tree(tmp_path / "src", {"train/ant": 20, "train/bee": 20, "test/ant": 4, "test/bee": 4})
    out = tmp_path / "shards"
    assert (
        pack_main(["--cipher", "plain", "--seed", "0", "--quiet", str(tmp_path / "src"), str(out)])
        == 0
    )
    return ["data=streaming", f"data.root={out}", "data.batch_size=4",
            *[a for a in TINY if not a.startswith("data")]]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("path", ["in_memory", "streaming"])
def test_sigkill_mid_epoch_with_workers_resumes_exactly(tmp_path: Path, path: str) -> None:
    """Step checkpoints every 4 steps, two loader workers, SIGKILL at step 14 (in the second
    epoch); the rerun resumes from step 12 — mid-epoch — with the loaders' positions and the
    augmentation stream, finishes that epoch and the next, and ends with exactly the weights
    of an uninterrupted run."""
    data = _streaming_overrides(tmp_path) if path == "streaming" else KILL_RUN[: len(TINY) + 1]
    base = [*data, *KILL_RUN[len(TINY) + 1 :], *WORKERS]
    base = [arg for arg in base if arg != "data.num_workers=0"]
    reference = run_console(
        "vitlearnenc-train", [*base, f"paths.log_dir={tmp_path / 'a'}"], tmp_path
    )
    assert reference.returncode == 0, reference.stderr[-3000:]
    resumed = [*base, f"paths.log_dir={tmp_path / 'b'}"]
    killer = ["+callbacks.kill._target_=tests.reliability.helpers.KillAtStep",
              f"+callbacks.kill.step={STEP_KILL}"]  # fmt: skip
    killed = run_console("vitlearnenc-train", [*resumed, *killer], cwd=tmp_path)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    run = tmp_path / "b" / "train" / "runs" / "resume"
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    steps_per_epoch = _final_state(tmp_path / "a")[2] // 3
    assert checkpoint["global_step"] == 12 and 12 % steps_per_epoch  # mid-epoch
    again = run_console("vitlearnenc-train", resumed, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "not resumable" not in again.stdout + again.stderr
    weights_a, _, steps_a = _final_state(tmp_path / "a")
    weights_b, _, steps_b = _final_state(tmp_path / "b")
    assert steps_a == steps_b
    torch.testing.assert_close(weights_b, weights_a, rtol=0, atol=0)


DDP = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true"]


@pytest.mark.slow
@pytest.mark.parametrize("path", ["in_memory", "streaming"])
def test_sigkill_mid_epoch_on_two_ddp_ranks_resumes_exactly(tmp_path: Path, path: str) -> None:
    """The same on two DDP ranks (CPU, gloo), two loader workers each: every rank is
    SIGKILLed at step 14 and the rerun resumes from the step-12 checkpoint with each rank's own
    loader position (Lightning alone would give every rank rank 0's), ending with exactly the
    weights of an uninterrupted 2-rank run."""
    # 144 in-memory training images: 72 per rank, 9 steps of 8 per epoch (batch 16 over 2
    # ranks); 40 streamed: 20 per rank, 10 steps of 2
    data = _streaming_overrides(tmp_path) if path == "streaming" else KILL_RUN[: len(TINY) + 1]
    base = [*data, *KILL_RUN[len(TINY) + 1 :], *WORKERS, *DDP]
    base = [arg for arg in base if arg != "data.num_workers=0"]
    reference = run_console(
        "vitlearnenc-train", [*base, f"paths.log_dir={tmp_path / 'a'}"], tmp_path, timeout=900
    )
    assert reference.returncode == 0, reference.stderr[-3000:]
    resumed = [*base, f"paths.log_dir={tmp_path / 'b'}"]
    killer = ["+callbacks.kill._target_=tests.reliability.helpers.KillAtStep",
              f"+callbacks.kill.step={STEP_KILL}"]  # fmt: skip
    killed = run_console("vitlearnenc-train", [*resumed, *killer], tmp_path, timeout=900)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    run = tmp_path / "b" / "train" / "runs" / "resume"
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    steps_per_epoch = _final_state(tmp_path / "a")[2] // 3
    assert checkpoint["global_step"] == 12 and 12 % steps_per_epoch  # mid-epoch
    per_rank = checkpoint[PER_RANK_KEY]
    assert len(per_rank) == 2 and per_rank[0] is not None and per_rank[1] is not None
    assert checkpoint["loops"]["fit_loop"]["state_dict"]["combined_loader"] == per_rank[0]
    again = run_console("vitlearnenc-train", resumed, tmp_path, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    weights_a, _, steps_a = _final_state(tmp_path / "a")
    weights_b, _, steps_b = _final_state(tmp_path / "b")
    assert steps_a == steps_b == 3 * steps_per_epoch
    torch.testing.assert_close(weights_b, weights_a, rtol=0, atol=0)
