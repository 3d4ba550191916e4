"""Weight averaging along a run (``train.average_from``): the final model is the uniform mean of the
snapshots taken, checked against a mean computed by hand from the weights after each step; a resumed run
averages the same snapshots; bad options are refused."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import make_tiny_transformer
from test_trainer import config, make_pairs, sts_evaluator, weights

from textsiamese import SiameseModel
from textsiamese.errors import ConfigError
from textsiamese.losses import get_loss
from textsiamese.training import Trainer
from textsiamese.training.averaging import WeightAverage, averaging_for


class Recording(Trainer):
    """Keeps a copy of the weights after every optimizer step (``after[step]``)."""

    def _optimizer_step(self, step_loss: torch.Tensor) -> torch.Tensor:
        norm = super()._optimizer_step(step_loss)
        after: dict[int, dict[str, torch.Tensor]] = self.__dict__.setdefault("after", {})
        after[self.step + 1] = {k: v.double() for k, v in weights(self.model).items()}
        return norm


def test_final_model_is_the_mean_of_the_snapshot_steps(tmp_path: Path, minilm_tokenizer: Any) -> None:
    model = SiameseModel(make_tiny_transformer(minilm_tokenizer), normalize=True)
    options = {"max_steps": 6, "average_from": 0.5, "average_every": 1, "eval_every": 3, "metric": "score"}
    trainer = Recording(model, get_loss("cosent"), make_pairs(), config(**options), tmp_path, sts_evaluator)
    result = trainer.train()

    assert result.averaged_steps == [3, 4, 5, 6]
    after = trainer.__dict__["after"]
    final = weights(model)
    moved = 0
    for name, value in final.items():
        if not value.is_floating_point():
            assert torch.equal(value, after[6][name])
            continue
        by_hand = sum(after[s][name] for s in (3, 4, 5, 6)) / 4
        torch.testing.assert_close(value.double(), by_hand, rtol=0, atol=1e-6)
        moved += int(not torch.allclose(after[6][name], by_hand, atol=1e-6))
    assert moved > 0  # the mean differs from the last step, so the check above can fail
    # final/ holds the average and its own evaluation; the last step's figures are kept beside it.
    saved = SiameseModel.from_directory(tmp_path / "final")
    assert all(torch.equal(a, b) for a, b in zip(weights(saved).values(), final.values(), strict=True))
    assert result.final == sts_evaluator(saved)
    assert result.unaveraged == result.evaluations[-1]["metrics"] != result.final


def test_every_defaults_to_eval_every_and_the_last_step_always_joins() -> None:
    average = averaging_for(0.5, None, total=10, default_every=3)
    assert average is not None
    assert [s for s in range(1, 11) if average.due(s)] == [5, 8, 10]
    assert averaging_for(None, 2, total=10, default_every=3) is None


def test_integer_buffers_are_left_alone() -> None:
    module = torch.nn.Module()
    module.register_buffer("ids", torch.arange(3))
    module.weight = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    average = WeightAverage(start=1, every=1, total=2)
    average.add(module, 1)
    with torch.no_grad():
        module.weight.copy_(torch.tensor([3.0, 6.0]))
        module.ids.add_(10)
    average.add(module, 2)
    average.apply(module)
    assert module.weight.tolist() == [2.0, 4.0]
    assert module.ids.tolist() == [10, 11, 12]


class InterruptAt(Trainer):
    at = 4

    def _optimizer_step(self, step_loss: torch.Tensor) -> torch.Tensor:
        norm = super()._optimizer_step(step_loss)
        if self.step + 1 == self.at:
            os.kill(os.getpid(), signal.SIGINT)
        return norm


def test_resumed_run_averages_the_same_snapshots(tmp_path: Path, minilm_tokenizer: Any) -> None:
    options = {"max_steps": 8, "average_from": 0.25, "average_every": 2, "eval_every": 2, "metric": "score"}

    def fresh() -> SiameseModel:
        return SiameseModel(make_tiny_transformer(minilm_tokenizer), normalize=True)

    whole = fresh()
    full = Trainer(whole, get_loss("cosent"), make_pairs(), config(**options), tmp_path / "a", sts_evaluator)
    assert full.train().averaged_steps == [2, 4, 6, 8]

    part = InterruptAt(
        fresh(), get_loss("cosent"), make_pairs(), config(**options), tmp_path / "b", sts_evaluator
    )
    assert part.train().stopped == "interrupted"
    resumed_model = fresh()
    resumed = Trainer(
        resumed_model,
        get_loss("cosent"),
        make_pairs(),
        config(**options),
        tmp_path / "b",
        sts_evaluator,
        resume=True,
    ).train()
    assert resumed.averaged_steps == [2, 4, 6, 8]
    a, b = weights(whole), weights(resumed_model)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("bad", [{"average_from": 1.0}, {"average_from": -0.1}, {"average_every": 0}])
def test_bad_averaging_options_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="average"):
        config(**bad)
