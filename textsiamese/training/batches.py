"""Training examples tokenized once, and the seeded, length-bucketed batch plan of each epoch.

``TrainSet`` holds token ids per column (each column tagged with the role whose tower reads it) and the
labels, ready for any loss family:

========== ====================================================== =========================================
family     columns                                                labels
========== ====================================================== =========================================
pair       sentence1 (query), sentence2 (document)                float scores or 0/1 labels
triplet    anchor (query), positive, negative (document)          none
ranking    query (query), positive + h hard negatives (document)  none (document i belongs to query i)
labelled   sentence1 (query), sentence2 (document)                pair i → class i for both of its texts
========== ====================================================== =========================================

``plan_epoch`` turns (seed, epoch) into the list of global batches of that epoch: a seeded shuffle, then
chunks of many batches sorted by length so each batch pads little, then the batch order shuffled again.
The plan is a pure function of its arguments, so resuming at (epoch, batch index) replays exactly the
batches an uninterrupted run would have seen, and every data-parallel process computes the same plan and
takes its own slice of each global batch. ``BatchPlan`` is that position (epoch, batch index) for a run.

``prepare_train_set`` is what the trainer does with its data before the first step: tokenize it (or take a
prepared ``TrainSet``), check it suits the loss and check every label once, so that ``labels_checked`` can
turn the loss's per-batch label check (a host read at every step) off while training.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from textsiamese.data import PairData, TripletData
from textsiamese.errors import ConfigError, InputError
from textsiamese.losses.base import SiameseLoss
from textsiamese.losses.labels import LabelError
from textsiamese.model import SiameseModel
from textsiamese.training.results import TrainingError

# Losses that regress or rank float similarity scores; every other pair loss wants 0/1 labels.
SCORE_LOSSES = frozenset({"cosine_similarity", "cosent", "angle"})
FAMILIES = ("pair", "triplet", "ranking", "labelled")
CHUNK_BATCHES = 32  # batches per length-sorted chunk: enough to bucket by length, few enough to stay random


@dataclass
class Column:
    """One text column of the training set: the role whose tower encodes it, and its token ids."""

    name: str
    role: str
    ids: list[list[int]]
    texts: list[str] = field(repr=False, default_factory=list)


@dataclass
class TrainSet:
    """Tokenized training examples for one loss family (see the module docstring)."""

    family: str
    columns: list[Column]
    labels: torch.Tensor | None = None
    truncated: int = 0
    source: str = "<memory>"

    def __len__(self) -> int:
        return len(self.columns[0].ids)

    def lengths(self) -> list[int]:
        """Total tokens of each example (what a batch of it will pad to, roughly)."""
        return [sum(len(c.ids[i]) for c in self.columns) for i in range(len(self))]

    def keys(self, i: int) -> tuple[str, ...]:
        """The texts of example ``i``: ranking batches must not hold one text twice (it would be a false
        in-batch negative of itself)."""
        return tuple(c.texts[i] for c in self.columns if c.texts)


def build_train_set(
    model: SiameseModel,
    data: PairData | TripletData,
    family: str,
    loss_name: str = "",
    hard_negatives: bool = True,
) -> TrainSet:
    """Tokenize ``data`` once with the towers of ``model`` for a loss of ``family``.

    Pair data feeds pair losses (scores for ``cosine_similarity``/``cosent``, else 0/1 labels), ranking losses
    (pairs labelled 0 are dropped: only positives are ranking examples) and labelled losses (each positive
    pair becomes a two-text class). Triplet data feeds triplet losses and ranking losses (the negatives as
    hard negatives unless ``hard_negatives`` is False).
    """
    if family not in FAMILIES:
        raise ConfigError(f"unknown loss family {family!r}")
    labels: torch.Tensor | None = None
    if isinstance(data, TripletData):
        texts = _triplet_texts(data, family, hard_negatives)
    else:
        texts, labels = _pair_texts(data, family, loss_name)
    columns: list[Column] = []
    truncated = 0
    for name, role, values in texts:
        tokens = model.tower(role).tokenize(model.prompted(values, role))
        truncated += tokens.truncated
        columns.append(Column(name, role, tokens.ids, list(values) if family == "ranking" else []))
    if not columns[0].ids:
        raise InputError(data.source, "no training examples")
    return TrainSet(family, columns, labels, truncated, data.source)


def _triplet_texts(data: TripletData, family: str, hard_negatives: bool) -> list[tuple[str, str, list[str]]]:
    """(column name, role, texts) of each column a ``family`` loss reads from triplets."""
    if family == "triplet":
        return [
            ("anchor", "query", data.anchor),
            ("positive", "document", data.positive),
            ("negative", "document", data.negative),
        ]
    if family != "ranking":
        raise ConfigError(f"a {family!r} loss cannot train on triplets; use a triplet or ranking loss")
    texts = [("query", "query", data.anchor), ("positive", "document", data.positive)]
    if hard_negatives:
        texts.append(("negative", "document", data.negative))
        for k in range(len(data.more_negatives[0]) if data.more_negatives else 0):
            column = [row[k] for row in data.more_negatives]
            texts.append((f"negative_{k + 2}", "document", column))
    return texts


def _pair_texts(
    data: PairData, family: str, loss_name: str
) -> tuple[list[tuple[str, str, list[str]]], torch.Tensor | None]:
    """(column name, role, texts) of each column a ``family`` loss reads from pairs, and the labels."""
    labels: torch.Tensor | None = None
    keep = list(range(len(data)))
    if family == "pair":
        if loss_name in SCORE_LOSSES and data.scores is not None:
            labels = torch.tensor(data.scores, dtype=torch.float32)
        elif data.labels is not None:
            labels = torch.tensor(data.labels, dtype=torch.float32)
        else:
            raise InputError(
                data.source, f"loss {loss_name!r} needs 0/1 labels; this data has similarity scores only"
            )
    elif family in ("ranking", "labelled"):
        if data.labels is not None:
            keep = [i for i, y in enumerate(data.labels) if y == 1]
        if not keep:
            raise InputError(data.source, f"a {family} loss needs positive pairs; none are labelled 1")
        if family == "labelled":
            labels = torch.arange(len(keep), dtype=torch.float32)
    else:
        raise ConfigError(f"a {family!r} loss needs triplets (anchor, positive, negative), not pairs")
    first = [data.sentence1[i] for i in keep]
    second = [data.sentence2[i] for i in keep]
    names = ("query", "positive") if family == "ranking" else ("sentence1", "sentence2")
    return [(names[0], "query", first), (names[1], "document", second)], labels


def check_train_labels(data: TrainSet, loss: SiameseLoss) -> None:
    """Check every label of ``data`` for ``loss`` once (binary 0/1, finite scores within the loss's range,
    whole class ids), so that the loss need not check them again at every batch. ``InputError`` naming the
    data and the loss otherwise."""
    if data.labels is None:
        return
    try:
        loss.check_labels(data.labels)
    except LabelError as error:
        raise InputError(data.source, f"the training labels do not suit the loss: {error}") from None


def prepare_train_set(
    model: SiameseModel,
    data: PairData | TripletData | TrainSet,
    loss: SiameseLoss,
    hard_negatives: bool = True,
    announce: bool = True,
) -> TrainSet:
    """The training set of a run: ``data`` tokenized for ``loss``'s family (a ``TrainSet`` is taken as it
    is), checked to be of that family and every label checked for the loss (``InputError``), once.
    ``announce`` prints a note when texts were truncated (the main process)."""
    family = getattr(loss, "family", "")
    if isinstance(data, TrainSet):
        train_set = data
    else:
        train_set = build_train_set(model, data, family, getattr(loss, "name", ""), hard_negatives)
    if train_set.family != family:
        raise TrainingError(f"training data was prepared for a {train_set.family} loss, not {family}")
    # Every training label is checked here, once: training turns the loss's per-batch check off (see
    # labels_checked), which would read the labels on the host at every step.
    check_train_labels(train_set, loss)
    if train_set.truncated and announce:
        print(
            f"note: {train_set.truncated} training texts were longer than the tower's maximum and were "
            "truncated",
            flush=True,
        )
    return train_set


@contextmanager
def labels_checked(loss: SiameseLoss) -> Iterator[None]:
    """The loss skips its per-call label check inside the block: ``prepare_train_set`` checked every label.
    Outside it (called directly) the loss checks again."""
    before = loss.validate_labels
    loss.validate_labels = False
    try:
        yield
    finally:
        loss.validate_labels = before


class BatchPlan:
    """Where a run is in its data: the next batch is ``batch_index`` of ``epoch``'s plan.

    Each epoch's plan is ``plan_epoch`` of the seed and the epoch (computed once per epoch), so the position
    is all a checkpoint needs. Batches are global (``batch_size`` × ``world_size`` examples); this process
    (``rank``) takes its slice of each. ``TrainingError`` when the data makes no full global batch.
    """

    def __init__(
        self, data: TrainSet, batch_size: int, seed: int, rank: int = 0, world_size: int = 1
    ) -> None:
        self.lengths = data.lengths()
        self.keys = [data.keys(i) for i in range(len(data))] if data.family == "ranking" else None
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.global_batch = batch_size * world_size
        self.epoch = 0
        self.batch_index = 0
        self._cached: tuple[int, list[list[int]]] | None = None
        self.batches_per_epoch = len(self.plan(0))
        if self.batches_per_epoch == 0:
            raise TrainingError(
                f"{len(data)} examples make no full batch of {self.global_batch} across {world_size} processes"
            )

    def plan(self, epoch: int) -> list[list[int]]:
        """The global batches of ``epoch`` (data parallel: short batches dropped, every slice is full)."""
        if self._cached is None or self._cached[0] != epoch:
            plan = plan_epoch(
                self.lengths, self.global_batch, self.seed, epoch, self.keys, drop_last=self.world_size > 1
            )
            self._cached = (epoch, plan)
        return self._cached[1]

    def next_batch(self) -> list[int]:
        """This process's part of the next batch; epochs roll over."""
        plan = self.plan(self.epoch)
        if self.batch_index >= len(plan):
            self.epoch += 1
            self.batch_index = 0
            plan = self.plan(self.epoch)
        batch = plan[self.batch_index]
        self.batch_index += 1
        return self.local(batch)

    def local(self, batch: list[int]) -> list[int]:
        """This process's slice of a global batch."""
        if self.world_size == 1:
            return batch
        return batch[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]


def plan_epoch(
    lengths: Sequence[int],
    batch_size: int,
    seed: int,
    epoch: int,
    keys: Sequence[tuple[str, ...]] | None = None,
    drop_last: bool = False,
) -> list[list[int]]:
    """The batches (lists of example indices) of ``epoch``: shuffled, bucketed by length, reproducible.

    With ``keys``, no batch holds two examples that share a text (ranking losses: a repeated text would be
    its own negative). ``drop_last`` drops a final batch smaller than ``batch_size`` (data-parallel runs,
    where every process must get a slice of equal size).
    """
    if batch_size < 1:
        raise ConfigError("batch_size must be at least 1")
    generator = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    order = torch.randperm(len(lengths), generator=generator).tolist()
    chunk = batch_size * CHUNK_BATCHES
    batches: list[list[int]] = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start : start + chunk], key=lambda i: lengths[i], reverse=True)
        batches.extend(_fill(part, batch_size, keys) if keys is not None else _cut(part, batch_size))
    full = [b for b in batches if len(b) == batch_size]
    partial = [i for b in batches if len(b) < batch_size for i in b]
    # Leftovers of every chunk are pooled into last batches so that only one batch is short.
    tail = _fill(partial, batch_size, keys) if keys is not None else _cut(partial, batch_size)
    full += [b for b in tail if len(b) == batch_size]
    short = [b for b in tail if len(b) < batch_size]
    shuffled = [full[i] for i in torch.randperm(len(full), generator=generator).tolist()]
    if not drop_last:
        shuffled += short
    return shuffled


def _cut(items: list[int], size: int) -> list[list[int]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _fill(items: list[int], size: int, keys: Sequence[tuple[str, ...]]) -> list[list[int]]:
    """Greedy: each item goes into the first open batch holding none of its texts."""
    open_batches: list[tuple[list[int], set[str]]] = []
    done: list[list[int]] = []
    for i in items:
        for batch, seen in open_batches:
            if not seen.intersection(keys[i]):
                batch.append(i)
                seen.update(keys[i])
                if len(batch) == size:
                    done.append(batch)
                    open_batches.remove((batch, seen))
                break
        else:
            if size == 1:
                done.append([i])
            else:
                open_batches.append(([i], set(keys[i])))
    return done + [batch for batch, _ in open_batches]
