"""Two DDP ranks (CPU, gloo), two loader workers each, over the same shards: evaluation
sees every image exactly once, training gives every rank disjoint images and equal steps."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.helpers.trees import write_tree
from vitlearnenc.cli.pack import main as pack_main
from vitlearnenc.data import StreamingDataModule

LAYOUT = {"train/a": 23, "train/b": 20, "test/a": 14, "test/b": 13}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rank(rank: int, world: int, port: int, root: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        dm = StreamingDataModule(
            root=root, cipher="plain", block_size=4, batch_size=4, num_workers=2, augment=False
        )
        dm.setup("fit")
        dm.setup("test")
        seen = {
            stage: [name for batch in loader for name in batch["name"]]
            for stage, loader in (("train", dm.train_dataloader()), ("test", dm.test_dataloader()))
        }
        Path(out, f"rank{rank}.json").write_text(json.dumps(seen))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_ranks_split_the_shards(tmp_path: Path) -> None:
    write_tree(tmp_path / "src", LAYOUT, size=8)
    shards = tmp_path / "shards"
    assert pack_main(["--cipher", "plain", "--quiet", str(tmp_path / "src"), str(shards)]) == 0
    torch.set_num_threads(1)
    mp.spawn(_rank, args=(2, _free_port(), str(shards), str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    test = [set(r["test"]) for r in ranks]
    assert sum(len(r["test"]) for r in ranks) == 27  # no image twice, none dropped
    assert test[0].isdisjoint(test[1]) and len(test[0] | test[1]) == 27
    train = [r["train"] for r in ranks]
    assert len(train[0]) == len(train[1]) > 0  # equal steps: no rank waits in a collective
    assert set(train[0]).isdisjoint(train[1]) and len(set(train[0] + train[1])) <= 43
