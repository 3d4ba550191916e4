"""Data-parallel training: 2 CPU processes on gloo reach the weights of one process on the global batch,
with in-batch negatives (and hard negatives) gathered across processes, with and without gradient cache."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import make_tiny_lstm
from test_trainer import config, make_pairs, make_triplets

from textsiamese import SiameseModel
from textsiamese.losses import get_loss
from textsiamese.training import Trainer

RUNS: dict[str, dict[str, Any]] = {
    "ranking": {
        "loss": ("multiple_negatives_ranking", {"symmetric": True}),
        "data": "triplets",
        "options": {},
    },
    "ranking_cached": {
        "loss": ("multiple_negatives_ranking", {}),
        "data": "triplets",
        "options": {"cache_batch_size": 3},
    },
}


def train_one(name: str, batch_size: int, output: Path) -> Trainer:
    spec = RUNS[name]
    loss_name, loss_options = spec["loss"]
    data = make_triplets(16) if spec["data"] == "triplets" else make_pairs(16)
    model = SiameseModel(make_tiny_lstm(seed=3), normalize=True)
    options = {"batch_size": batch_size, "max_steps": 3, "lr": 5e-3, "warmup_ratio": 0.0, **spec["options"]}
    trainer = Trainer(model, get_loss(loss_name, **loss_options), data, config(**options), output / name)
    trainer.train()
    return trainer


def _worker(rank: int, world: int, port: int, output: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        for name in RUNS:
            trainer = train_one(name, 4, Path(output))
            assert trainer.world_size == world and trainer.global_batch == 8
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_gloo_processes_match_one_process_on_the_global_batch(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(2, free_port(), str(tmp_path / "ddp")), nprocs=2, join=True)
    for name in RUNS:
        single = train_one(name, 8, tmp_path / "single")
        assert single.world_size == 1
        expected = single.model.state_dict()
        got = SiameseModel.from_directory(tmp_path / "ddp" / name / "final").state_dict()
        moved = 0.0
        for key, value in expected.items():
            torch.testing.assert_close(got[key], value, rtol=1e-4, atol=1e-5, msg=f"{name}: {key}")
        start = SiameseModel(make_tiny_lstm(seed=3)).state_dict()
        moved = max(float((start[k] - expected[k]).abs().max()) for k in expected)
        assert moved > 1e-3, f"{name}: training did not move the weights"


def test_gathered_layout_puts_global_positives_first(tmp_path: Path) -> None:
    """The layout the loss needs: positives of all processes (in global query order), then each block of hard
    negatives in the same order. Checked with a fake 2-process gather on one process."""
    trainer = Trainer(
        SiameseModel(make_tiny_lstm()),
        get_loss("multiple_negatives_ranking"),
        make_triplets(8),
        config(),
        tmp_path,
    )
    q = [torch.full((2, 1), float(r)) for r in range(2)]
    d = [torch.tensor([[10.0 + r], [10.0 + r], [20.0 + r], [20.0 + r]]) for r in range(2)]
    import textsiamese.training.distributed as ddp

    original = ddp.gather
    calls = iter([q, d])
    ddp.gather = lambda tensor, world_size, with_grad: next(calls)  # type: ignore[assignment]
    try:
        trainer.world_size = 2
        queries, documents = trainer._gather_ranking(q[0], d[0], with_grad=False)
    finally:
        ddp.gather = original  # type: ignore[assignment]
        trainer.world_size = 1
    assert queries.flatten().tolist() == [0, 0, 1, 1]
    assert documents.flatten().tolist() == [10, 10, 11, 11, 20, 20, 21, 21]
