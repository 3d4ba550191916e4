"""The trainer: schedules, batch plans, routing by loss family, gradient cache, resume, reproducibility,
early stopping, non-finite losses. Tiny random towers only."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import WORDS, make_tiny_lstm, make_tiny_transformer

from textsiamese import SiameseModel
from textsiamese.data import PairData, TripletData
from textsiamese.errors import InputError
from textsiamese.losses import get_loss
from textsiamese.losses.base import SiameseLoss
from textsiamese.training import TrainConfig, Trainer, TrainingError, build_train_set, lr_factor, plan_epoch


def sentences(n: int, seed: int, length: int = 5) -> list[str]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        k = 2 + int(torch.randint(0, length, (1,), generator=g))
        words = [WORDS[int(j)] for j in torch.randint(0, len(WORDS), (k,), generator=g)]
        out.append(" ".join(words) + f" {WORDS[i % len(WORDS)]}")
    return out


def make_pairs(n: int = 24, seed: int = 0) -> PairData:
    a, b = sentences(n, seed), sentences(n, seed + 1)
    scores = [float(i % 6) for i in range(n)]
    return PairData(a, b, scores=scores, labels=[i % 2 for i in range(n)])


def make_triplets(n: int = 16, seed: int = 0) -> TripletData:
    return TripletData(sentences(n, seed), sentences(n, seed + 1), sentences(n, seed + 2))


def config(**overrides: Any) -> TrainConfig:
    values: dict[str, Any] = {"batch_size": 4, "lr": 1e-3, "progress": False, "device": "cpu", "log_every": 1}
    values.update(overrides)
    return TrainConfig(**values)


def weights(model: SiameseModel) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------------------- schedule and batches


def test_lr_schedule_warmup_then_linear_or_cosine_decay() -> None:
    assert [round(lr_factor(s, 3, 10, "linear"), 4) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(10, 3, 10, "linear") == 0.0
    assert lr_factor(6, 2, 10, "linear") == pytest.approx(0.5)
    assert lr_factor(6, 2, 10, "cosine") == pytest.approx(0.5)
    assert lr_factor(4, 2, 10, "cosine") == pytest.approx(
        0.5 * (1 + torch.cos(torch.tensor(torch.pi / 4)).item())
    )
    assert lr_factor(9, 2, 10, "constant") == 1.0


def test_plan_is_seeded_complete_and_bucketed_by_length() -> None:
    lengths = [int(x) for x in torch.randint(1, 50, (203,), generator=torch.Generator().manual_seed(1))]
    plan = plan_epoch(lengths, 8, seed=3, epoch=0)
    assert plan == plan_epoch(lengths, 8, seed=3, epoch=0)
    assert plan != plan_epoch(lengths, 8, seed=3, epoch=1)
    assert sorted(i for b in plan for i in b) == list(range(203))
    assert sum(len(b) < 8 for b in plan) == 1  # one short batch, pooled from every chunk's leftovers
    # Bucketing: the spread of lengths inside a batch is far below the spread of the data.
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in plan) / len(plan)
    assert spread < 10
    dropped = plan_epoch(lengths, 8, seed=3, epoch=0, drop_last=True)
    assert all(len(b) == 8 for b in dropped) and len(dropped) == 203 // 8


def test_plan_keeps_duplicate_texts_out_of_one_batch() -> None:
    keys = [("same premise", f"hypothesis {i}") for i in range(6)] + [(f"p{i}", f"h{i}") for i in range(18)]
    plan = plan_epoch([3] * 24, 4, seed=0, epoch=0, keys=keys)
    assert sorted(i for b in plan for i in b) == list(range(24))
    for batch in plan:
        assert sum(i < 6 for i in batch) <= 1


def test_train_set_routes_data_to_each_family(minilm_tokenizer: Any) -> None:
    model = SiameseModel(make_tiny_transformer(minilm_tokenizer))
    pairs = make_pairs(10)
    cosent = build_train_set(model, pairs, "pair", "cosent")
    assert cosent.labels is not None and cosent.labels.tolist() == pairs.scores
    contrastive = build_train_set(model, pairs, "pair", "contrastive")
    assert contrastive.labels is not None and contrastive.labels.tolist() == pairs.labels
    ranking = build_train_set(model, pairs, "ranking")
    assert len(ranking) == 5 and [c.name for c in ranking.columns] == ["query", "positive"]
    labelled = build_train_set(model, pairs, "labelled")
    assert labelled.labels is not None and labelled.labels.tolist() == [0, 1, 2, 3, 4]
    triplets = make_triplets(6)
    assert [c.name for c in build_train_set(model, triplets, "ranking").columns] == [
        "query",
        "positive",
        "negative",
    ]
    assert len(build_train_set(model, triplets, "ranking", hard_negatives=False).columns) == 2
    assert [c.role for c in build_train_set(model, triplets, "triplet").columns] == [
        "query",
        "document",
        "document",
    ]
    with pytest.raises(TrainingError.__mro__[1]):  # TextSiameseError
        build_train_set(model, triplets, "pair", "cosent")
    with pytest.raises(Exception, match="0/1 labels"):
        build_train_set(model, PairData(["a"], ["b"], scores=[0.5]), "pair", "contrastive")


@pytest.mark.parametrize(
    ("loss_name", "options", "data"),
    [
        ("cosent", {}, "pairs"),
        ("online_contrastive", {"margin": 0.5, "distance": "cosine"}, "pairs"),
        ("logistic", {}, "pairs"),  # a loss with parameters of its own: they train too
        ("triplet", {"distance": "cosine", "margin": 0.3}, "triplets"),
        ("batch_hard_triplet", {"margin": 0.3}, "pairs"),
        ("multiple_negatives_ranking", {}, "triplets"),
    ],
)
def test_every_family_trains_and_lowers_its_loss(
    tmp_path: Path, loss_name: str, options: dict, data: str
) -> None:
    model = SiameseModel(make_tiny_lstm(), normalize=True)
    loss = get_loss(loss_name, **options)
    dataset = make_pairs(16) if data == "pairs" else make_triplets(16)
    trainer = Trainer(
        model, loss, dataset, config(max_steps=12, lr=1e-2, warmup_ratio=0.0, batch_size=8), tmp_path
    )
    before = trainer.batch_loss(list(range(8))).item()
    loss_params = [p.detach().clone() for p in loss.parameters()]
    result = trainer.train()
    assert result.steps == 12 and result.stopped == "completed"
    model.eval()
    with torch.no_grad():
        after = trainer.batch_loss(list(range(8))).item()
    assert after < before
    for old, new in zip(loss_params, loss.parameters(), strict=True):
        assert not torch.equal(old, new)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert {"loss", "lr", "examples_per_s"} <= set(records[0])
    assert (tmp_path / "final" / "model.safetensors").is_file()


def test_shared_tower_encodes_both_sides_in_one_forward(tmp_path: Path, minilm_tokenizer: Any) -> None:
    tower = make_tiny_transformer(minilm_tokenizer)
    calls: list[int] = []
    tower.register_forward_hook(lambda module, inputs, output: calls.append(output.shape[0]))
    trainer = Trainer(SiameseModel(tower), get_loss("cosent"), make_pairs(8), config(), tmp_path)
    trainer.batch_loss([0, 1, 2, 3])
    assert calls == [8]
    untied = SiameseModel.untied(make_tiny_transformer(minilm_tokenizer))
    seen: list[str] = []
    for name, t in untied.towers.items():
        t.register_forward_hook(lambda module, inputs, output, name=name: seen.append(name))
    Trainer(untied, get_loss("cosent"), make_pairs(8), config(), tmp_path / "u").batch_loss([0, 1])
    assert sorted(seen) == ["document", "query"]


# ---------------------------------------------------------------------------- gradient cache


@pytest.mark.parametrize("shared", [True, False])
def test_gradient_cache_gives_the_uncached_gradients(
    tmp_path: Path, minilm_tokenizer: Any, shared: bool
) -> None:
    def run(cache: int | None) -> dict[str, torch.Tensor]:
        tower = make_tiny_transformer(minilm_tokenizer, seed=1)
        model = SiameseModel(tower) if shared else SiameseModel.untied(tower)
        loss = get_loss("multiple_negatives_ranking", symmetric=True)
        trainer = Trainer(
            model, loss, make_triplets(12), config(cache_batch_size=cache, batch_size=12), tmp_path
        )
        model.eval()  # no dropout: the uncached pass sees one big batch, the cache several chunks
        trainer._backward(list(range(12)))
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain, cached = run(None), run(5)
    assert plain.keys() == cached.keys() and plain
    for name in plain:
        torch.testing.assert_close(cached[name], plain[name], rtol=1e-4, atol=1e-6, msg=name)


def test_gradient_cache_replays_dropout(tmp_path: Path, minilm_tokenizer: Any) -> None:
    """With dropout on, the cached step must back-propagate through the same masks it used for the loss:
    then two runs from one seed agree, and the step still lowers the loss."""
    results = []
    for _ in range(2):
        model = SiameseModel(make_tiny_transformer(minilm_tokenizer, seed=2))
        trainer = Trainer(
            model,
            get_loss("multiple_negatives_ranking"),
            make_triplets(12),
            config(cache_batch_size=4, batch_size=6, max_steps=4, lr=5e-3, warmup_ratio=0.0),
            tmp_path / f"r{len(results)}",
        )
        trainer.train()
        results.append(weights(model))
    assert same_weights(*results)


def test_gradient_cache_only_for_ranking_losses(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="ranking"):
        Trainer(
            SiameseModel(make_tiny_lstm()),
            get_loss("cosent"),
            make_pairs(),
            config(cache_batch_size=2),
            tmp_path,
        )


# ---------------------------------------------------------------------------- reproducibility and resume


def test_seeded_runs_are_reproducible_on_cpu(tmp_path: Path, minilm_tokenizer: Any) -> None:
    runs = []
    for name in ("a", "b"):
        model = SiameseModel(make_tiny_transformer(minilm_tokenizer))
        Trainer(model, get_loss("cosent"), make_pairs(), config(max_steps=5, seed=7), tmp_path / name).train()
        runs.append(weights(model))
    assert same_weights(*runs)
    model = SiameseModel(make_tiny_transformer(minilm_tokenizer))
    Trainer(model, get_loss("cosent"), make_pairs(), config(max_steps=5, seed=8), tmp_path / "c").train()
    assert not same_weights(runs[0], weights(model))


class InterruptAt(Trainer):
    """Sends itself SIGINT (or SIGTERM) right after optimizer step ``at``, as a user pressing Ctrl-C would."""

    at = 0
    signum = signal.SIGINT

    def _optimizer_step(self, step_loss: torch.Tensor) -> torch.Tensor:
        norm = super()._optimizer_step(step_loss)
        if self.step + 1 == self.at:
            os.kill(os.getpid(), self.signum)
        return norm


def sts_evaluator(model: SiameseModel) -> dict[str, Any]:
    pairs = make_pairs(12, seed=5)
    a, b = model.encode_pairs(pairs.sentence1, pairs.sentence2)
    return {"score": float((torch.from_numpy(a) * torch.from_numpy(b)).sum()), "n": 12}


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_then_resumed_equals_uninterrupted(
    tmp_path: Path, minilm_tokenizer: Any, signum: signal.Signals
) -> None:
    # 24 pairs / batch 4 = 6 batches per epoch; 2 batches per step: 9 steps cross an epoch boundary, and the
    # interruption at step 4 falls in the middle of the second epoch. Dropout is on (RNG state matters).
    options = {
        "max_steps": 9,
        "grad_accumulation": 2,
        "eval_every": 3,
        "metric": "score",
        "warmup_ratio": 0.3,
    }

    def fresh() -> SiameseModel:
        return SiameseModel(make_tiny_transformer(minilm_tokenizer), normalize=True)

    whole = fresh()
    full = Trainer(
        whole, get_loss("cosent"), make_pairs(), config(**options), tmp_path / "whole", sts_evaluator
    )
    full_result = full.train()

    InterruptAt.at, InterruptAt.signum = 4, signum
    part = InterruptAt(
        fresh(), get_loss("cosent"), make_pairs(), config(**options), tmp_path / "part", sts_evaluator
    )
    first = part.train()
    assert first.stopped == "interrupted" and first.steps == 4 and first.signal == signum.name
    assert not (tmp_path / "part" / "final").exists()
    state = torch.load(tmp_path / "part" / "checkpoint" / "state.pt", weights_only=True)
    assert (state["step"], state["epoch"], state["batch_index"]) == (4, 1, 2)

    resumed_model = fresh()  # a new process would rebuild the model from the recipe
    resumed = Trainer(
        resumed_model,
        get_loss("cosent"),
        make_pairs(),
        config(**options),
        tmp_path / "part",
        sts_evaluator,
        resume=True,
    )
    second = resumed.train()
    assert second.steps == 9 and second.stopped == "completed"
    assert same_weights(weights(whole), weights(resumed_model))
    assert second.best_step == full_result.best_step
    assert [e["step"] for e in second.evaluations] == [3, 6, 9]
    assert same_weights(
        weights(SiameseModel.from_directory(tmp_path / "whole" / "best")),
        weights(SiameseModel.from_directory(tmp_path / "part" / "best")),
    )


def test_resume_from_a_checkpoint_of_the_unfused_optimizer(tmp_path: Path) -> None:
    """Checkpoints written before the sync-free loop stored AdamW with fused=False; resuming one runs on (the
    fused kernel is what skips a non-finite step) and reaches the same weights as an uninterrupted run."""
    options = {"max_steps": 6, "checkpoint_every": 3}

    def trainer(output: Path, resume: bool = False) -> Trainer:
        torch.manual_seed(0)
        model = SiameseModel(make_tiny_lstm())
        return Trainer(model, get_loss("cosent"), make_pairs(), config(**options), output, resume=resume)

    whole = trainer(tmp_path / "whole")
    whole.train()
    InterruptAt.at, InterruptAt.signum = 3, signal.SIGINT
    torch.manual_seed(0)
    part = InterruptAt(
        SiameseModel(make_tiny_lstm()), get_loss("cosent"), make_pairs(), config(**options), tmp_path / "part"
    )
    assert part.train().stopped == "interrupted"
    state_file = tmp_path / "part" / "checkpoint" / "state.pt"
    state = torch.load(state_file, weights_only=True)
    for group in state["optimizer"]["param_groups"]:
        group["fused"] = False  # as the earlier trainer wrote it
    torch.save(state, state_file)
    resumed = trainer(tmp_path / "part", resume=True)
    assert resumed.train().stopped == "completed"
    assert all(group["fused"] for group in resumed.optimizer.param_groups)
    assert same_weights(weights(resumed.model), weights(whole.model))


def test_resume_without_checkpoint_or_with_other_length_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="no checkpoint"):
        Trainer(
            SiameseModel(make_tiny_lstm()),
            get_loss("cosent"),
            make_pairs(),
            config(max_steps=2),
            tmp_path,
            resume=True,
        ).train()
    Trainer(
        SiameseModel(make_tiny_lstm()), get_loss("cosent"), make_pairs(), config(max_steps=2), tmp_path
    ).train()
    with pytest.raises(TrainingError, match="2 steps"):
        Trainer(
            SiameseModel(make_tiny_lstm()),
            get_loss("cosent"),
            make_pairs(),
            config(max_steps=3),
            tmp_path,
            resume=True,
        ).train()


# ---------------------------------------------------------------------------- evaluation, early stopping, failures


def test_early_stopping_keeps_the_best_model(tmp_path: Path) -> None:
    scores = iter([0.5, 0.7, 0.6, 0.65, 0.9])

    def evaluator(model: SiameseModel) -> dict[str, Any]:
        return {"acc": next(scores)}

    model = SiameseModel(make_tiny_lstm())
    trainer = Trainer(
        model,
        get_loss("cosent"),
        make_pairs(),
        config(max_steps=20, eval_every=1, metric="acc", patience=2),
        tmp_path,
        evaluator,
    )
    result = trainer.train()
    assert result.stopped == "early_stopping" and result.steps == 4
    assert result.best_step == 2 and result.best == {"acc": 0.7}
    assert (tmp_path / "best" / "config.json").is_file() and (tmp_path / "final" / "config.json").is_file()


class NaNAfter(SiameseLoss):
    family = "pair"
    name = "nan_after"

    def __init__(self, good_calls: int) -> None:
        super().__init__()
        self.calls = 0
        self.good_calls = good_calls
        self.inner = get_loss("cosent")

    def forward(self, a: torch.Tensor, b: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        value = self.inner(a, b, labels)
        return value * float("nan") if self.calls > self.good_calls else value


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    model = SiameseModel(make_tiny_lstm())
    trainer = Trainer(model, NaNAfter(3), make_pairs(), config(max_steps=10, checkpoint_every=2), tmp_path)
    with pytest.raises(TrainingError, match=r"step 4 .*loss is nan.*last good checkpoint") as error:
        trainer.train()
    assert str(tmp_path / "checkpoint") in str(error.value)
    state = torch.load(tmp_path / "checkpoint" / "state.pt", weights_only=True)
    assert state["step"] == 2
    saved = SiameseModel.from_directory(tmp_path / "checkpoint" / "model")
    assert all(torch.isfinite(v).all() for v in saved.state_dict().values())
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the bad step was not applied


class NaNGradAfter(NaNAfter):
    """A finite loss whose gradient is NaN after ``good_calls`` calls: d sqrt(|x|)/dx at 0 is 0 · inf."""

    name = "nan_grad_after"

    def forward(self, a: torch.Tensor, b: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        value = self.inner(a, b, labels)
        return value + (a.sum() * 0).abs().sqrt() if self.calls > self.good_calls else value


class SnapshotAfter(Trainer):
    """Keeps copies of the weights and the optimizer's state right after optimizer step ``at``."""

    at = 0
    snapshot: tuple[dict[str, torch.Tensor], dict[int, dict[str, torch.Tensor]]] | None = None

    def _optimizer_step(self, step_loss: torch.Tensor) -> torch.Tensor:
        norm = super()._optimizer_step(step_loss)
        if self.step + 1 == self.at:
            self.snapshot = (weights(self.model), optimizer_state(self))
        return norm


def optimizer_state(trainer: Trainer) -> dict[int, dict[str, torch.Tensor]]:
    """Moments and step counts of every parameter."""
    state = trainer.optimizer.state_dict()["state"]
    return {i: {k: v.clone() for k, v in s.items()} for i, s in state.items()}


@pytest.mark.parametrize(
    ("loss", "what", "max_grad_norm"),
    [
        (NaNAfter(3), "loss is nan", 1.0),
        (NaNAfter(3), "loss is nan", None),
        (NaNGradAfter(3), "gradient norm is nan", 1.0),
        (NaNGradAfter(3), "gradient norm is nan", None),
    ],
)
def test_non_finite_step_found_between_log_points_applied_nothing(
    tmp_path: Path, loss: NaNAfter, what: str, max_grad_norm: float | None
) -> None:
    """Step 4 goes bad; the host learns of it only at the log point of step 5. Neither step 4 nor step 5
    changed the weights, the AdamW moments or its step counts, and the error names step 4."""
    model = SiameseModel(make_tiny_lstm())
    trainer = SnapshotAfter(
        model, loss, make_pairs(), config(max_steps=10, log_every=5, max_grad_norm=max_grad_norm), tmp_path
    )
    trainer.at = 3
    with pytest.raises(
        TrainingError, match=rf"step 4 \(epoch 0, batch 4\): {what}; nothing of this step"
    ) as error:
        trainer.train()
    assert "no checkpoint was written" in str(error.value)
    assert trainer.step == 5 and trainer.snapshot is not None
    good_weights, good_state = trainer.snapshot
    assert same_weights(weights(model), good_weights)
    state = optimizer_state(trainer)
    assert state.keys() == good_state.keys() and state
    for i in state:
        assert same_weights(state[i], good_state[i])
        assert float(state[i]["step"]) == 3
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 4 and what in records[-1]["error"]


class RecordingLoss(SiameseLoss):
    """Delegates to a real loss and keeps each call's value (read on the host: this test may sync)."""

    family = "pair"
    name = "recording"

    def __init__(self, inner: SiameseLoss) -> None:
        super().__init__()
        self.inner = inner
        self.values: list[float] = []

    def forward(self, a: torch.Tensor, b: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        value = self.inner(a, b, labels)
        self.values.append(float(value.detach()))
        return value


def test_logged_losses_are_the_means_of_the_step_losses(tmp_path: Path) -> None:
    """metrics.jsonl's loss is the mean over the steps since the last log line of each step's loss (the mean
    of its accumulated batches), computed here from the values the loss returned, batch by batch."""
    loss = RecordingLoss(get_loss("cosent"))
    loss.family = "pair"
    trainer = Trainer(
        SiameseModel(make_tiny_lstm()),
        loss,
        make_pairs(),
        config(max_steps=7, grad_accumulation=2, log_every=3),
        tmp_path,
    )
    trainer.train()
    assert len(loss.values) == 14
    steps = [loss.values[2 * i] / 2 + loss.values[2 * i + 1] / 2 for i in range(7)]
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    logged = [(r["step"], r["loss"]) for r in records if "loss" in r]
    assert [step for step, _ in logged] == [3, 6, 7]
    expected = [sum(steps[0:3]) / 3, sum(steps[3:6]) / 3, steps[6]]
    assert [value for _, value in logged] == pytest.approx(expected, rel=1e-12)


# Every Python entry point through which a tensor's value reaches the host. CPU has no equivalent of
# torch.cuda.set_sync_debug_mode, so the test wraps these and notes the step at which each was called; on a
# GPU each of them would make the host wait for the device.
HOST_READS = ("item", "tolist", "numpy", "nonzero", "__bool__", "__float__", "__int__", "__index__")


def test_no_host_reads_between_log_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = SiameseModel(make_tiny_lstm())
    trainer = Trainer(
        model,
        get_loss("cosent"),
        make_pairs(),
        config(max_steps=8, log_every=4, grad_accumulation=2),
        tmp_path,
    )
    reads: list[tuple[int, str]] = []
    in_tower = [0]
    for tower in model.towers.values():  # the towers' own code is not the loop's (the LSTM packs on the host)
        tower.register_forward_pre_hook(lambda module, args: in_tower.__setitem__(0, in_tower[0] + 1))
        tower.register_forward_hook(lambda module, args, out: in_tower.__setitem__(0, in_tower[0] - 1))

    def counted(name: str, original: Any) -> Any:
        def method(self: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            # The batch plan of a new epoch is host data (a seeded CPU permutation), never on the device.
            if not in_tower[0] and not sys._getframe(1).f_code.co_filename.endswith("batches.py"):
                reads.append((trainer.step, name))
            return original(self, *args, **kwargs)

        return method

    for name in HOST_READS:
        monkeypatch.setattr(torch.Tensor, name, counted(name, getattr(torch.Tensor, name)))
    original_getitem = torch.Tensor.__getitem__

    def getitem(self: torch.Tensor, index: Any) -> Any:
        parts = index if isinstance(index, tuple) else (index,)
        if not in_tower[0] and any(isinstance(p, torch.Tensor) and p.dtype == torch.bool for p in parts):
            reads.append((trainer.step, "boolean mask"))  # a data-dependent size
        return original_getitem(self, index)

    monkeypatch.setattr(torch.Tensor, "__getitem__", getitem)
    trainer.train()
    monkeypatch.undo()
    during = [(step, name) for step, name in reads if step < 8 or (step == 8 and name != "tolist")]
    assert {step for step, _ in during} <= {4}, during
    assert [name for step, name in during] == ["tolist"]  # one read at the log point of step 4


def test_training_labels_are_checked_once_when_the_set_is_built(tmp_path: Path) -> None:
    pairs = make_pairs()
    with pytest.raises(
        InputError, match=r"training labels do not suit the loss: cosine_similarity: .*score_range"
    ):
        Trainer(SiameseModel(make_tiny_lstm()), get_loss("cosine_similarity"), pairs, config(), tmp_path)
    model = SiameseModel(make_tiny_lstm())
    prepared = build_train_set(model, pairs, "pair", "contrastive")
    prepared.labels = torch.tensor([0.0, 1.0, 2.0] * 8)
    with pytest.raises(InputError, match=r"contrastive: labels must be binary"):
        Trainer(model, get_loss("contrastive"), prepared, config(), tmp_path)
    loss = get_loss("contrastive")
    Trainer(model, loss, pairs, config(max_steps=2), tmp_path).train()
    assert loss.validate_labels  # off only while training: called directly, the loss checks again


def logged_losses(output: Path) -> list[float]:
    return [
        r["loss"] for r in map(json.loads, (output / "metrics.jsonl").read_text().splitlines()) if "loss" in r
    ]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("g++") is None, reason="torch.compile on CPU needs a C++ compiler")
def test_compiled_towers_train_to_the_same_losses(tmp_path: Path) -> None:
    """train.compile gives the losses of the uncompiled run (no dropout in the tiny LSTM: same numbers up to
    the compiled kernels' rounding), with no fallback warning."""
    for compiled in (False, True):
        model = SiameseModel(make_tiny_lstm(), normalize=True)
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            Trainer(
                model,
                get_loss("cosent"),
                make_pairs(),
                config(max_steps=3, compile=compiled),
                tmp_path / f"{compiled}",
            ).train()
    assert logged_losses(tmp_path / "True") == pytest.approx(logged_losses(tmp_path / "False"), rel=1e-4)


@pytest.mark.slow
def test_compile_falls_back_with_one_warning_when_it_cannot_compile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch._dynamo
    import torch._inductor.config

    # A real failure: no usable C++ compiler, and no compiled kernels cached from an earlier test to reuse.
    torch._dynamo.reset()
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor-cache"))
    monkeypatch.setattr(torch._inductor.config, "fx_graph_cache", False)
    monkeypatch.setattr(torch._inductor.config.cpp, "cxx", (str(tmp_path / "no-such-compiler"),))
    with pytest.warns(
        RuntimeWarning, match=r"^train\.compile: torch\.compile is unavailable here .*uncompiled$"
    ):
        Trainer(
            SiameseModel(make_tiny_lstm()),
            get_loss("cosent"),
            make_pairs(),
            config(max_steps=2, compile=True),
            tmp_path,
        ).train()
    assert len(logged_losses(tmp_path)) == 2
