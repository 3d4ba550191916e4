"""One-shot (few-shot) matching: classify texts by their nearest enrolled reference, with no training.

Enrol one or a few example texts per class; a new text gets the class of the nearest class centroid, the
mean of the class's reference vectors (``strategy="centroid"``, the default), or of its nearest single
reference (``strategy="reference"``), with its similarity. The two coincide with one reference per class;
with more, the centroid is the better default (AG News, 8 per class: 78.9% against 69.2%). Below ``threshold`` the answer is ``unknown``: the text is
not close enough to any class. A new class is one more ``enroll`` call; nothing is retrained, and a
reference already enrolled (same class, same text) is not enrolled twice.

The two strategies put similarities on different scales (a centroid is closer to its class's texts than most
single references are), so a threshold belongs to a strategy: ``thresholds`` holds one per strategy, and
``threshold`` is the one of the current ``strategy``.

References are encoded with the model's ``document`` tower and texts to classify with its ``query`` tower.
Similarity is the model's own metric (cosine by default; for a distance metric, the negated distance).

Saved sets are a directory with ``enrolled.json`` (labels, texts, strategy, thresholds, metric and the model
fingerprint) and ``embeddings.npy``, written under a temporary name and renamed into place. Loading with a
different model is refused: its vectors would not be comparable.

>>> matcher = OneShotClassifier(textsiamese.load())                                   # doctest: +SKIP
>>> matcher.enroll(["sport", "business"], ["The match ended 2-1.", "Shares fell 3%."])  # doctest: +SKIP
>>> matcher.classify(["The striker scored twice."]).labels                             # doctest: +SKIP
['sport']
>>> matcher.save("refs"); OneShotClassifier.load("refs", model)                      # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from textsiamese.decisions.enrolled_store import FORMAT_NAME as FORMAT_NAME
from textsiamese.decisions.enrolled_store import FORMAT_VERSION as FORMAT_VERSION
from textsiamese.decisions.enrolled_store import META_FILE as META_FILE
from textsiamese.decisions.enrolled_store import TOWER_DIR as TOWER_DIR
from textsiamese.decisions.enrolled_store import VECTORS_FILE as VECTORS_FILE
from textsiamese.decisions.enrolled_store import load_enrolled, save_enrolled
from textsiamese.decisions.fewshot import (
    HEAD_CS,
    TUNED_HEAD_C,
    FineTuneConfig,
    FineTuneReport,
    Head,
    choose_by_holdout,
    fine_tune,
    fit_head,
)
from textsiamese.errors import ConfigError
from textsiamese.model.distances import get_distance

if TYPE_CHECKING:
    from textsiamese.model import SiameseModel

STRATEGIES = ("reference", "centroid", "head")


@dataclass
class Predictions:
    """Per text: the answer (a class or ``unknown``), the nearest class whatever the threshold, and the
    similarity to it."""

    labels: list[str]
    nearest: list[str]
    similarities: np.ndarray


class OneShotClassifier:
    """Nearest-reference / nearest-centroid classifier over a model's embedding space."""

    def __init__(
        self,
        model: SiameseModel,
        strategy: str = "centroid",
        threshold: float | None = None,
        unknown_label: str = "unknown",
        batch_size: int | None = None,
    ) -> None:
        if strategy not in STRATEGIES:
            raise ConfigError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
        self.model = model
        self.strategy = strategy
        self.thresholds: dict[str, float] = {}
        self.threshold = threshold
        self.unknown_label = unknown_label
        self.batch_size = batch_size
        self.metric = model.similarity_metric
        self.labels: list[str] = []
        self.texts: list[str] = []
        self.skipped = 0
        self.embeddings = np.zeros((0, model.dimension), dtype=np.float32)
        # Set by fine_tune: the model it started from, the classes the tower was tuned on, its settings.
        self.base_model: SiameseModel | None = None
        self.tuned_classes: list[str] = []
        self.tuning: dict[str, Any] = {}
        self.head: Head | None = None
        # Per strategy, an optional unsure band (low, high): below low unknown, from high the class.
        self.bands: dict[str, tuple[float, float]] = {}
        self.unsure_label = "unsure"

    @property
    def threshold(self) -> float | None:
        """The unknown threshold of the current strategy (None: never unknown)."""
        return self.thresholds.get(self.strategy)

    @threshold.setter
    def threshold(self, value: float | None) -> None:
        if value is None:
            self.thresholds.pop(self.strategy, None)
        else:
            self.thresholds[self.strategy] = float(value)

    def threshold_for(self, strategy: str | None = None) -> float | None:
        """The stored threshold of ``strategy`` (default: the current one), None when none was set."""
        return self.thresholds.get(strategy or self.strategy)

    @property
    def classes(self) -> list[str]:
        """Enrolled classes in order of first enrolment."""
        return list(dict.fromkeys(self.labels))

    def __len__(self) -> int:
        return len(self.labels)

    def enroll(
        self, labels: Sequence[str], texts: Sequence[str], show_progress: bool = False
    ) -> OneShotClassifier:
        """Add reference ``texts`` for ``labels`` (new classes or more examples of known ones).

        A (class, text) pair already enrolled, or repeated in this call, is skipped: enrolling the same file
        twice must not weigh its references double. ``skipped`` afterwards says how many were.
        """
        if len(labels) != len(texts):
            raise ConfigError(f"{len(labels)} labels for {len(texts)} texts")
        if not texts:
            raise ConfigError("nothing to enroll")
        clean = [str(label).strip() for label in labels]
        if any(not label for label in clean):
            raise ConfigError("class labels must not be empty")
        if self.unknown_label in clean:
            raise ConfigError(f"{self.unknown_label!r} is reserved for texts that match no class")
        if self.unsure_label in clean:
            raise ConfigError(f"{self.unsure_label!r} is reserved for texts inside the unsure band")
        seen = set(zip(self.labels, self.texts, strict=True))
        fresh: list[tuple[str, str]] = []
        for pair in zip(clean, texts, strict=True):
            if pair not in seen:
                seen.add(pair)
                fresh.append(pair)
        self.skipped = len(clean) - len(fresh)
        if not fresh:
            return self
        new_labels, new_texts = (list(column) for column in zip(*fresh, strict=True))
        vectors = self.model.encode(
            new_texts, role="document", batch_size=self.batch_size, show_progress=show_progress
        )
        self.labels += new_labels
        self.texts += new_texts
        self.embeddings = np.concatenate([self.embeddings, vectors.astype(np.float32)])
        if self.head is not None:  # refitted on the stored vectors: seconds, and the tower is untouched
            self.head = self._fit_head()
        return self

    def _fit_head(self) -> Head:
        """The logistic head on the stored vectors: C fixed on a tuned tower (``TUNED_HEAD_C``: the tuning
        separated the references it saw, so cross-validating over them says nothing), else cross-validated."""
        tuned = self.base_model is not None
        return fit_head(self.labels, self.embeddings, cs=(TUNED_HEAD_C,) if tuned else HEAD_CS)

    @property
    def untuned_classes(self) -> list[str]:
        """Classes enrolled after fine-tuning (the tower never saw them); empty for an untuned set."""
        if self.base_model is None:
            return []
        return [c for c in self.classes if c not in self.tuned_classes]

    def fine_tune(
        self, config: FineTuneConfig | None = None, select: str = "head", show_progress: bool = False
    ) -> FineTuneReport:
        """Fine-tune the tower on pairs of the enrolled references, re-encode them, and fit the logistic
        head; ``select`` sets the strategy: ``head`` (the default: on the few-shot dev split it beat the
        centroid on average at 8 and at 64 references per class), ``centroid``, or ``holdout`` (whichever
        classifies a 25 % held-out part of the references better after tuning on the rest, at the cost of a
        second run; centroid on a tie). Tuning always starts from the untuned model, so calling it again retrains on all
        references. Thresholds are dropped: the similarities they were chosen on have changed."""
        if select not in ("holdout", "centroid", "head"):
            raise ConfigError(f"unknown select {select!r}; choose holdout, centroid or head")
        base = self.base_model or self.model
        if select == "holdout":
            select = choose_by_holdout(base, self.labels, self.texts, config, self.batch_size)
        tuned, report = fine_tune(base, self.labels, self.texts, config, show_progress)
        self.base_model, self.model = base, tuned
        self.embeddings = tuned.encode(self.texts, role="document", batch_size=self.batch_size).astype(
            np.float32
        )
        self.tuned_classes = self.classes
        self.head = self._fit_head()
        self.tuning = {**(config or FineTuneConfig()).to_dict(), "select": select}
        self.strategy = select
        self.thresholds, self.bands = {}, {}
        return report

    def _class_vectors(self, strategy: str) -> tuple[list[str], np.ndarray]:
        """One row per reference (``reference``) or per class centroid (``centroid``), with its class."""
        if strategy == "reference":
            return self.labels, self.embeddings
        vectors = self.embeddings
        if self.metric == "cosine":
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            vectors = vectors / np.maximum(norms, 1e-12)
        labels = np.asarray(self.labels)
        classes = self.classes
        return classes, np.stack([vectors[labels == c].mean(axis=0) for c in classes])

    def scores(
        self, texts: Sequence[str], strategy: str | None = None, show_progress: bool = False
    ) -> tuple[list[str], np.ndarray]:
        """Classes and the (texts, classes) closeness matrix: each class's best reference, or its centroid."""
        if not self.labels:
            raise ConfigError("no references enrolled yet")
        strategy = strategy or self.strategy
        if strategy not in STRATEGIES:
            raise ConfigError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
        queries = self.model.encode(
            list(texts), role="query", batch_size=self.batch_size, show_progress=show_progress
        )
        if strategy == "head":
            if self.head is None:
                raise ConfigError(
                    "strategy head needs a fine-tuned set (enroll --fine-tune) or fit_head first"
                )
            order = [self.head.classes.index(c) for c in self.classes]
            return self.classes, self.head.probabilities(queries)[:, order]
        owners, references = self._class_vectors(strategy)
        distance = get_distance(self.metric)
        closeness = -distance.as_distance(
            distance.matrix(torch.from_numpy(queries), torch.from_numpy(np.ascontiguousarray(references)))
        ).numpy()
        classes = self.classes
        if strategy == "centroid":
            return classes, closeness
        owner = np.asarray(owners)
        per_class = np.stack([closeness[:, owner == c].max(axis=1) for c in classes], axis=1)
        return classes, per_class

    def classify(
        self,
        texts: Sequence[str],
        strategy: str | None = None,
        threshold: float | None = None,
        show_progress: bool = False,
    ) -> Predictions:
        """The nearest class of each text, or ``unknown_label`` when its similarity is below the threshold
        (``threshold`` here, else the one stored for the strategy used; None means never unknown)."""
        if not texts:
            return Predictions([], [], np.zeros(0))
        classes, matrix = self.scores(texts, strategy, show_progress)
        best = matrix.argmax(axis=1)
        similarity = matrix[np.arange(len(texts)), best]
        nearest = [classes[i] for i in best]
        limit = self.threshold_for(strategy) if threshold is None else threshold
        answers = [
            label if limit is None or value >= limit else self.unknown_label
            for label, value in zip(nearest, similarity, strict=True)
        ]
        band = self.bands.get(strategy or self.strategy) if threshold is None else None
        if band is not None:  # below the band: unknown; inside it: unsure; from its top: the class
            answers = [
                label if value >= band[1] else self.unsure_label if value >= band[0] else self.unknown_label
                for label, value in zip(nearest, similarity, strict=True)
            ]
        return Predictions(answers, nearest, similarity.astype(np.float64))

    def choose_target_threshold(
        self,
        texts: Sequence[str],
        labels: Sequence[str],
        targets: Sequence[tuple[str, float]],
        strategy: str | None = None,
        unsure: tuple[float, float] | None = None,
        resamples: int = 2000,
    ) -> dict[str, Any]:
        """Set the threshold of ``strategy`` for a target on labelled dev texts: ``precision=0.95`` keeps
        the most answers of which 95 % are right (an answer is right when its class is the text's; texts
        of classes not enrolled are wrong whenever answered), ``fpr=0.05`` answers at most 5 % of the texts
        it would get wrong. Two targets (or ``unsure``) give a band: below it unknown, inside it unsure.
        Returns the fitted keys (``textsiamese.decisions.targets.fit_targets``) with bootstrap intervals."""
        from textsiamese.decisions.targets import fit_targets

        strategy = strategy or self.strategy
        predictions = self.classify(texts, strategy, threshold=float("-inf"))
        right = np.array([n == str(y) for n, y in zip(predictions.nearest, labels, strict=True)])
        if right.all() or not right.any():
            raise ConfigError("a target threshold needs dev texts answered both rightly and wrongly")
        chosen = fit_targets(
            predictions.similarities, right.astype(int), targets, self.metric, unsure, resamples
        )
        band = chosen.get("unsure")
        if band is not None:
            self.bands[strategy] = (float(band[0]), float(band[1]))  # type: ignore[index]
            self.thresholds[strategy] = float(band[0])  # type: ignore[index]
        else:
            self.bands.pop(strategy, None)
            self.thresholds[strategy] = float(chosen["threshold"])  # type: ignore[arg-type]
        return chosen

    def choose_threshold(
        self, texts: Sequence[str], labels: Sequence[str], strategy: str | None = None
    ) -> float:
        """Set (and return) the threshold of ``strategy`` (default: the current one) that maximises accuracy
        on labelled dev ``texts``.

        Dev texts whose label is not an enrolled class should come out ``unknown``; with none of them the
        chosen threshold lies below every dev similarity (nothing is rejected).
        """
        if len(texts) != len(labels) or not texts:
            raise ConfigError("need equally many, and at least one, dev texts and labels")
        predictions = self.classify(texts, strategy, threshold=float("-inf"))
        known = set(self.classes)
        right_if_kept = np.array([n == str(y) for n, y in zip(predictions.nearest, labels, strict=True)])
        right_if_rejected = np.array([str(y) not in known for y in labels])
        order = np.argsort(-predictions.similarities, kind="stable")
        sims = predictions.similarities[order]
        kept, rejected = right_if_kept[order], right_if_rejected[order]
        # Keeping the k most similar: correct = kept[:k].sum() + rejected[k:].sum().
        correct = np.concatenate([[0], np.cumsum(kept)]) + np.concatenate(
            [np.cumsum(rejected[::-1])[::-1], [0]]
        )
        valid = np.ones(len(sims) + 1, dtype=bool)
        valid[1:-1] = sims[:-1] != sims[1:]
        best = int(np.argmax(np.where(valid, correct, -1)))
        if best == 0:
            threshold = float(sims[0]) + 1e-6
        elif best == len(sims):
            threshold = float(sims[-1]) - 1e-6
        else:
            threshold = float(sims[best - 1] + sims[best]) / 2
        self.thresholds[strategy or self.strategy] = threshold
        return threshold

    def save(self, path: str | Path) -> Path:
        """Write ``enrolled.json`` and ``embeddings.npy`` (and a fine-tuned tower) to ``path``, staged and
        renamed into place (``decisions.enrolled_store``)."""
        return save_enrolled(self, path)

    @classmethod
    def load(cls, path: str | Path, model: SiameseModel, batch_size: int | None = None) -> OneShotClassifier:
        """Read a saved set; refuses it when ``model`` is not the model that encoded it."""
        return load_enrolled(cls, path, model, batch_size)


def accuracy(predicted: Sequence[str], gold: Sequence[str]) -> float:
    """Fraction of exact label matches."""
    if len(predicted) != len(gold) or not gold:
        raise ValueError("need equally many, and at least one, predictions and gold labels")
    return float(np.mean([p == str(g) for p, g in zip(predicted, gold, strict=True)]))


__all__ = ["STRATEGIES", "OneShotClassifier", "Predictions", "accuracy"]
