"""Few-shot fine-tuning: teach the tower the enrolled classes from pairs of their references.

``fine_tune`` returns a copy of the model whose towers were trained for a few epochs on pairs drawn from the
references by ``textsiamese.decisions.pairs`` (a fixed number per reference, on the fly, never the n² list),
with a loss from ``textsiamese.losses``:

``contrastive`` (default)
    ``ContrastiveLoss`` on the cosine dissimilarity, margin 0.5: same-class pairs pulled together, other-class
    pairs pushed to at least the margin and then left alone.
``cosine``
    ``CosineSimilarityLoss``: the pair's cosine regressed onto 1 (same class) or 0 (SetFit's loss).
``mnrl``
    ``MultipleNegativesRankingLoss`` on (anchor, same-class positive) batches holding one anchor per class,
    so every in-batch negative is of another class.

Anchors go through the ``query`` tower and partners through the ``document`` tower, as classify encodes
texts and references; a siamese model trains its one tower on both.

``fit_head`` fits a logistic-regression head on the (normalised) reference embeddings, with class-balanced
weights and its regularisation chosen by cross-validation over the references, or fixed (``TUNED_HEAD_C``)
when the tower was tuned on them; ``Head`` applies it.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from textsiamese.decisions.pairs import ClassBatchSampler, PairSampler
from textsiamese.errors import ConfigError
from textsiamese.losses import get_loss

if TYPE_CHECKING:
    from textsiamese.model import SiameseModel

LOSSES = ("contrastive", "cosine", "mnrl")
HEAD_CS = (0.1, 1.0, 10.0, 100.0)
# The head's C on a tower fine-tuned on the very references it is fitted on. Cross-validation over them is
# blind there (the tuning separates them all, every C ties and the smallest won); on the few-shot dev split
# (AG News, 8 per class, 5 draws of 400 texts) C = 0.1 / 1 / 10 / 100 classified 80.4 / 81.1 / 81.35 /
# 81.25 %, the cross-validated choice 80.45 %.
TUNED_HEAD_C = 10.0


@dataclass
class FineTuneConfig:
    """What ``fine_tune`` trains with (stored in the enrolment so a later run can say how it was tuned)."""

    loss: str = "contrastive"
    epochs: int = 10
    pairs_per_reference: int | None = None
    batch_size: int = 32
    learning_rate: float = 5e-5
    warmup: float = 0.1
    margin: float = 0.5
    seed: int = 0
    precision: str = "auto"
    max_steps: int | None = None

    def check(self) -> FineTuneConfig:
        if self.loss not in LOSSES:
            raise ConfigError(f"unknown fine-tuning loss {self.loss!r}; choose one of {', '.join(LOSSES)}")
        if self.epochs < 1 or (self.pairs_per_reference or 1) < 1 or self.batch_size < 2:
            raise ConfigError("epochs and pairs_per_reference must be at least 1, batch_size at least 2")
        if not self.learning_rate > 0 or not 0 <= self.warmup < 1:
            raise ConfigError("learning_rate must be > 0 and warmup in [0, 1)")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class FineTuneReport:
    """What a fine-tuning run did: steps, seconds and the mean loss of each epoch."""

    steps: int = 0
    seconds: float = 0.0
    epoch_losses: list[float] = field(default_factory=list)


def _autocast(precision: str, device: torch.device) -> Any:
    from textsiamese.inference.precision import autocast_for, resolve_precision

    return autocast_for(resolve_precision(precision, device), device)


def _embed(model: SiameseModel, role: str, ids: list[list[int]], precision: str) -> torch.Tensor:
    tower = model.tower(role)
    features = {k: v.to(model.device) for k, v in tower.collate(ids).items()}
    with _autocast(precision, model.device):
        vectors = tower(features)
    return F.normalize(vectors.float(), dim=-1)


def _loss(config: FineTuneConfig) -> Any:
    if config.loss == "mnrl":
        return get_loss("multiple_negatives_ranking")
    if config.loss == "contrastive":
        return get_loss("contrastive", margin=config.margin, distance="cosine")
    return get_loss("cosine_similarity")


def _batch_loss(
    model: SiameseModel,
    ids: dict[str, list[list[int]]],
    batch: tuple[np.ndarray, ...],
    loss_fn: Any,
    config: FineTuneConfig,
) -> torch.Tensor:
    """One step's loss. Pair losses: the group is encoded once per tower and the loss averaged over its
    same-class and its other-class pairs (each half weighs the same, whatever the class mix of the group).
    MNRL: anchors through the query tower, their positives through the document tower."""
    if config.loss == "mnrl":
        anchors, positives = batch
        a = _embed(model, "query", [ids["query"][i] for i in anchors], config.precision)
        b = _embed(model, "document", [ids["document"][i] for i in positives], config.precision)
        loss: torch.Tensor = loss_fn(a, b)
        return loss
    members, left, right, labels = batch
    a = _embed(model, "query", [ids["query"][i] for i in members], config.precision)
    b = (
        a
        if model.is_shared
        else _embed(model, "document", [ids["document"][i] for i in members], config.precision)
    )
    y = torch.from_numpy(labels).float().to(a.device)
    parts = []
    for mask in (labels == 1, labels == 0):
        if mask.any():
            rows = torch.from_numpy(np.flatnonzero(mask)).to(a.device)
            parts.append(
                loss_fn(
                    a[torch.from_numpy(left).to(a.device)[rows]],
                    b[torch.from_numpy(right).to(a.device)[rows]],
                    y[rows],
                )
            )
    return torch.stack(parts).mean()


def fine_tune(
    model: SiameseModel,
    labels: Sequence[str],
    texts: Sequence[str],
    config: FineTuneConfig | None = None,
    show_progress: bool = False,
) -> tuple[SiameseModel, FineTuneReport]:
    """A fine-tuned copy of ``model`` (the original is untouched) and what the run did.

    Seeded: the same references, config and seed give the same weights (on the same machine and threads).
    """
    from textsiamese.inference.pipeline import progress_bar

    config = (config or FineTuneConfig()).check()
    if len(labels) != len(texts):
        raise ConfigError(f"{len(labels)} labels for {len(texts)} texts")
    torch.manual_seed(config.seed)
    tuned = copy.deepcopy(model)
    tuned.train()
    ids = {role: tuned.tower(role).tokenize(list(texts)).ids for role in ("query", "document")}
    if config.loss == "mnrl":
        sampler: Any = ClassBatchSampler(
            labels, config.pairs_per_reference or 1, config.batch_size, config.seed
        )
        per_epoch = sum(1 for _ in sampler.epoch(0))
    else:
        sampler = PairSampler(labels, config.pairs_per_reference, config.batch_size, config.seed)
        per_epoch = len(sampler)
    loss_fn = _loss(config)
    total = per_epoch * config.epochs
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    optimizer = torch.optim.AdamW(tuned.parameters(), lr=config.learning_rate)
    warm = max(1, int(config.warmup * total))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warm, max(0.0, (total - step) / max(1, total - warm)))
    )
    report = FineTuneReport()
    start = time.perf_counter()
    progress = progress_bar(total, show_progress, "fine-tune")
    try:
        for epoch in range(config.epochs):
            losses: list[float] = []
            for batch in sampler.epoch(epoch):
                if report.steps >= total:
                    break
                loss = _batch_loss(tuned, ids, batch, loss_fn, config)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(tuned.parameters(), 1.0)
                optimizer.step()
                schedule.step()
                losses.append(float(loss.detach()))
                report.steps += 1
                progress.update(1)
            report.epoch_losses.append(float(np.mean(losses)) if losses else math.nan)
    finally:
        progress.close()
    tuned.eval()
    report.seconds = time.perf_counter() - start
    return tuned, report


def _normalised(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


@dataclass
class Head:
    """A multinomial logistic-regression head: ``softmax(W · normalise(x) + b)`` over ``classes``."""

    classes: list[str]
    weights: np.ndarray
    bias: np.ndarray
    c: float

    def probabilities(self, vectors: np.ndarray) -> np.ndarray:
        logits = _normalised(vectors.astype(np.float64)) @ self.weights.T + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        out: np.ndarray = exp / exp.sum(axis=1, keepdims=True)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "classes": self.classes,
            "weights": self.weights.tolist(),
            "bias": self.bias.tolist(),
            "c": self.c,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Head:
        return cls(
            [str(c) for c in data["classes"]],
            np.asarray(data["weights"], dtype=np.float64),
            np.asarray(data["bias"], dtype=np.float64),
            float(data["c"]),
        )


def _logistic(vectors: np.ndarray, labels: np.ndarray, c: float) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, class_weight="balanced", max_iter=2000).fit(vectors, labels)


def fit_head(
    labels: Sequence[str], vectors: np.ndarray, cs: Sequence[float] = HEAD_CS, seed: int = 0
) -> Head:
    """A logistic head on the references, C chosen by stratified cross-validation over them (up to 5 folds,
    fewer when a class has fewer references; the middle C when a class has a single one)."""
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray([str(label) for label in labels])
    x = _normalised(vectors.astype(np.float64))
    classes = list(dict.fromkeys(y.tolist()))
    if len(classes) < 2:
        raise ConfigError("a head needs references of at least two classes")
    smallest = min(int((y == c).sum()) for c in classes)
    if smallest >= 2 and len(cs) > 1:
        folds = StratifiedKFold(n_splits=min(5, smallest), shuffle=True, random_state=seed)
        scores = []
        for c in cs:
            right = 0
            for train, test in folds.split(x, y):
                right += int((_logistic(x[train], y[train], c).predict(x[test]) == y[test]).sum())
            scores.append(right)
        best = float(cs[int(np.argmax(scores))])
    else:
        best = float(cs[len(cs) // 2])
    fit = _logistic(x, y, best)
    order = [list(fit.classes_).index(c) for c in classes]
    weights, bias = fit.coef_, fit.intercept_
    if len(fit.classes_) == 2:  # sklearn keeps one row for two classes: logits (-z, z) give the same softmax
        weights = np.concatenate([-fit.coef_ / 2, fit.coef_ / 2])
        bias = np.concatenate([-fit.intercept_ / 2, fit.intercept_ / 2])
    return Head(classes, np.asarray(weights)[order], np.asarray(bias)[order], best)


def choose_by_holdout(
    model: SiameseModel,
    labels: Sequence[str],
    texts: Sequence[str],
    config: FineTuneConfig | None = None,
    batch_size: int | None = None,
    fraction: float = 0.25,
) -> str:
    """``centroid`` or ``head``: which classifies a held-out ``fraction`` of the references (per class, at
    least one where a class has two or more) better after fine-tuning on the rest; centroid on a tie, or when
    nothing can be held out."""
    config = config or FineTuneConfig()
    y = np.asarray([str(label) for label in labels])
    rng = np.random.default_rng([config.seed, 25])
    held: list[int] = []
    for c in dict.fromkeys(y.tolist()):
        members = rng.permutation(np.flatnonzero(y == c))
        if len(members) >= 2:
            held += members[: max(1, round(fraction * len(members)))].tolist()
    keep = np.setdiff1d(np.arange(len(y)), held)
    if not held or len(set(y[keep].tolist())) < 2:
        return "centroid"
    train_texts = [texts[i] for i in keep]
    tuned, _ = fine_tune(model, y[keep].tolist(), train_texts, config)
    refs = tuned.encode(train_texts, role="document", batch_size=batch_size)
    queries = _normalised(tuned.encode([texts[i] for i in held], role="query", batch_size=batch_size))
    gold = y[held]
    classes = sorted(set(y[keep].tolist()))
    unit = _normalised(refs)
    centroids = np.stack([unit[y[keep] == c].mean(axis=0) for c in classes])
    by_centroid = np.mean(np.asarray(classes)[(queries @ centroids.T).argmax(axis=1)] == gold)
    head = fit_head(y[keep].tolist(), refs, cs=(TUNED_HEAD_C,), seed=config.seed)
    by_head = np.mean(np.asarray(head.classes)[head.probabilities(queries).argmax(axis=1)] == gold)
    return "head" if by_head > by_centroid else "centroid"


__all__ = [
    "LOSSES",
    "TUNED_HEAD_C",
    "FineTuneConfig",
    "FineTuneReport",
    "Head",
    "choose_by_holdout",
    "fine_tune",
    "fit_head",
]
