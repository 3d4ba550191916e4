"""What a run logs: ``metrics.jsonl`` (train, evaluation, baseline and result records) and the TensorBoard
event files under ``OUTPUT/tensorboard``, read back with TensorBoard's own reader. A tiny random BERT trains
five steps with a pair-classification dev evaluator."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import make_tiny_lstm, make_tiny_transformer
from test_trainer import NaNAfter, config, make_pairs

from textsiamese import SiameseModel
from textsiamese.losses import get_loss
from textsiamese.training import Trainer, TrainingError, TrainResult, make_evaluator

EventAccumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator"
).EventAccumulator

LR = 1e-3
STEPS, WARMUP, LOG_EVERY, EVAL_EVERY, BATCH = 5, 2, 2, 2, 4


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, minilm_tokenizer: Any) -> tuple[Path, TrainResult]:
    """One logged run: steps 1-5, a train record every 2 steps (and at the end), evaluations likewise."""
    output = tmp_path_factory.mktemp("logged")
    options = {
        "lr": LR,
        "max_steps": STEPS,
        "warmup_steps": WARMUP,
        "log_every": LOG_EVERY,
        "eval_every": EVAL_EVERY,
        "eval_at_start": True,
        "metric": "accuracy",
        "batch_size": BATCH,
    }
    trainer = Trainer(
        SiameseModel(make_tiny_transformer(minilm_tokenizer), normalize=True),
        get_loss("cosent"),
        make_pairs(24),
        config(**options),
        output,
        make_evaluator("pair_classification", make_pairs(12, seed=7)),
    )
    return output, trainer.train()


def records(output: Path, key: str) -> list[dict[str, Any]]:
    """The metrics.jsonl records that carry ``key``, in order."""
    lines = (output / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if key in r]


def scalars(output: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series of the run's event files: tag -> [(step, value)]."""
    events = EventAccumulator(str(output / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def as_float32(value: float) -> float:
    """An event file keeps a scalar as float32; this is the value a float64 becomes there."""
    return float(np.float32(value))


def test_metrics_jsonl_train_records(run: tuple[Path, TrainResult]) -> None:
    output, result = run
    train = records(output, "loss")
    assert [r["step"] for r in train] == [2, 4, 5]  # every LOG_EVERY steps, and the last step
    # The rate after each logged step: warmup ends at step 2, then linear decay to 0 at step 5.
    assert [r["lr"] for r in train] == pytest.approx([LR, LR * (1 - 2 / 3), 0.0])
    for r in train:
        assert set(r) == {"time", "step", "epoch", "loss", "lr", "grad_norm", "examples_per_s"}
        assert math.isfinite(r["loss"]) and r["loss"] >= 0  # CoSENT is a log(1 + sum exp), never below 0
        assert r["examples_per_s"] > 0 and r["grad_norm"] >= 0
    # 24 pairs in batches of 4: 6 batches an epoch
    assert [r["epoch"] for r in train] == pytest.approx([2 / 6, 4 / 6, 5 / 6], abs=1e-4)
    assert result.steps == STEPS and result.stopped == "completed"


def test_metrics_jsonl_evaluation_records(run: tuple[Path, TrainResult]) -> None:
    output, result = run
    (baseline,) = records(output, "baseline")
    assert baseline["step"] == 0 and baseline["baseline"] == result.baseline
    evaluations = records(output, "eval")
    assert [r["step"] for r in evaluations] == [2, 4, 5]  # every EVAL_EVERY steps, and at the end
    for r in evaluations:
        metrics = r["eval"]
        assert metrics["task"] == "classification" and metrics["n"] == 12 and metrics["positives"] == 6
        assert metrics["threshold_from"] == "cross-validation (5 folds on the evaluation file)"
        assert 0 <= metrics["accuracy"] <= 1
    assert [r["eval"] for r in evaluations] == [e["metrics"] for e in result.evaluations]
    assert evaluations[-1]["eval"] == result.final
    accuracies = [r["eval"]["accuracy"] for r in evaluations]
    assert result.best_step == evaluations[accuracies.index(max(accuracies))]["step"]
    (summary,) = records(output, "result")
    assert summary["step"] == STEPS and summary["result"]["best_step"] == result.best_step


def test_tensorboard_scalars_equal_the_metrics_jsonl_values(run: tuple[Path, TrainResult]) -> None:
    output, _ = run
    series = scalars(output)
    train = records(output, "loss")
    for key in ("loss", "lr", "examples_per_s"):
        assert series[f"train/{key}"] == [(r["step"], as_float32(r[key])) for r in train], key
    evaluations = records(output, "eval")
    logged = {key for key, value in evaluations[0]["eval"].items() if isinstance(value, float)}
    assert {"accuracy", "f1", "roc_auc", "threshold"} <= logged
    assert {tag for tag in series if tag.startswith("dev/")} == {f"dev/{key}" for key in logged}
    (baseline,) = records(output, "baseline")
    for key in logged:
        expected = [(r["step"], as_float32(r["eval"][key])) for r in evaluations]
        got = series[f"dev/{key}"]
        assert got[0] == (0, as_float32(baseline["baseline"][key])), key  # the zero-shot point
        assert got[1:] == expected, key


def test_tensorboard_writer_is_closed_when_a_run_fails(tmp_path: Path) -> None:
    """A run that raises (here a NaN loss at step 3) still closes its event file: the steps logged before the
    failure are readable and the writer is released."""
    trainer = Trainer(
        SiameseModel(make_tiny_lstm()),
        NaNAfter(2),
        make_pairs(),
        config(max_steps=6, log_every=1),
        tmp_path,
    )
    with pytest.raises(TrainingError, match="step 3"):
        trainer.train()
    assert trainer._tensorboard is None
    assert [step for step, _ in scalars(tmp_path)["train/loss"]] == [1, 2]
