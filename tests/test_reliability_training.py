"""Reliability, training faults not covered by tests/test_trainer.py: a full disk while a checkpoint is written.

(SIGINT / SIGTERM → checkpoint → resume, and a NaN loss keeping the last good checkpoint, are tested in
``tests/test_trainer.py``.)
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import make_tiny_lstm

from textsiamese import SiameseModel
from textsiamese.data import PairData
from textsiamese.losses import get_loss
from textsiamese.training import TrainConfig, Trainer


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _pairs(n: int = 16) -> PairData:
    words = ["a man", "a woman", "the dog", "a cat", "is eating", "plays", "the guitar", "in the park"]
    first = [f"{words[i % 4]} {words[4 + i % 4]}" for i in range(n)]
    second = [f"{words[(i + 1) % 4]} {words[4 + (i * 3) % 4]}" for i in range(n)]
    return PairData(first, second, scores=[float(i % 5) for i in range(n)])


def _config(**overrides: Any) -> TrainConfig:
    values: dict[str, Any] = {"batch_size": 4, "lr": 1e-3, "progress": False, "device": "cpu", "log_every": 1}
    values.update(overrides)
    return TrainConfig(**values)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("failing", ["state", "weights"])
def test_full_disk_on_checkpoint_keeps_the_previous_one_and_resume_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    import textsiamese.model.persistence
    import textsiamese.training.trainer as trainer_module

    options = {"max_steps": 4, "checkpoint_every": 2}
    calls = {"n": 0}
    real = trainer_module.torch.save if failing == "state" else textsiamese.model.save_model

    def second_write_fails(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:  # the checkpoint after step 4; the one after step 2 was written
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(*args, **kwargs)

    if failing == "state":
        monkeypatch.setattr(trainer_module.torch, "save", second_write_fails)
    else:
        monkeypatch.setattr(textsiamese.model.persistence, "save_model", second_write_fails)
    torch.manual_seed(0)
    trainer = Trainer(
        SiameseModel(make_tiny_lstm()), get_loss("cosent"), _pairs(), _config(**options), tmp_path
    )
    with pytest.raises(OSError, match="No space left"):
        trainer.train()
    monkeypatch.undo()
    checkpoint = tmp_path / "checkpoint"
    state = torch.load(checkpoint / "state.pt", weights_only=True)
    assert state["step"] == 2
    SiameseModel.from_directory(checkpoint / "model")  # whole
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging left
    assert not (tmp_path / "final").exists()

    resumed = Trainer(
        SiameseModel(make_tiny_lstm()),
        get_loss("cosent"),
        _pairs(),
        _config(**options),
        tmp_path,
        resume=True,
    ).train()
    assert resumed.steps == 4 and resumed.stopped == "completed"
