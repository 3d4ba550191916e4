"""Pairs drawn from labelled references on the fly, for few-shot fine-tuning.

SetFit-style training builds every (positive, negative) pair of the references up front: n² pairs, hours and
out-of-memory at tens of thousands of references, and encodes both texts of each pair. ``PairSampler`` instead
walks the references in shuffled, class-mixed groups and draws a fixed number of partners per reference inside
its group (same class: label 1, other classes: label 0), so one forward pass over a group serves all of its
pairs and memory is O(n): the epoch's order (one int per reference) and one group's pairs at a time.

``ClassBatchSampler`` is the ranking (MNRL-style) variant: each batch holds at most one anchor per class with a
positive from the same class, so the other anchors' positives in the batch are true negatives.

Both are seeded: the same seed and epoch give the same pairs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from textsiamese.errors import ConfigError


class _ClassIndex:
    """References grouped by class: ``order`` lists reference positions class by class, ``start`` / ``size``
    give each reference's class block within ``order``."""

    def __init__(self, labels: Sequence[str]) -> None:
        if len(labels) < 2:
            raise ConfigError("fine-tuning needs at least two references")
        names, codes = np.unique(np.asarray([str(label) for label in labels]), return_inverse=True)
        if len(names) < 2:
            raise ConfigError("fine-tuning needs references of at least two classes")
        self.codes = codes.astype(np.int64)
        self.order = np.argsort(self.codes, kind="stable")
        counts = np.bincount(self.codes)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        self.start = starts[self.codes]
        self.size = counts[self.codes]
        self.place = np.empty_like(self.order)
        self.place[self.order] = np.arange(len(self.order))
        self.n = len(labels)

    def positives(self, anchors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A random other member of each anchor's class (the anchor itself when it is alone in its class)."""
        size = self.size[anchors]
        offset = rng.integers(0, np.maximum(size - 1, 1))
        # Uniform over the size - 1 others: offsets at or past the anchor's own place move one further on.
        offset = offset + ((offset >= self.place[anchors] - self.start[anchors]) & (size > 1))
        return self.order[self.start[anchors] + offset]

    def negatives(self, anchors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A random reference of another class for each anchor (uniform over the other classes' references)."""
        r = rng.integers(0, self.n - self.size[anchors])
        r = np.where(r >= self.start[anchors], r + self.size[anchors], r)
        return self.order[r]


class PairSampler:
    """Per epoch, the references in shuffled groups of ``batch_size`` (classes mixed in proportion) and the
    pairs within each group: ``(members, left, right, labels)``, where ``left`` / ``right`` index into
    ``members`` and label 1 means the same class.

    Pairs are drawn inside a group so that one forward pass over its ``batch_size`` texts serves all of its
    pairs (the point: SetFit encodes both texts of every pair). ``pairs_per_reference=None`` takes every pair
    of the group (each reference then has ``batch_size - 1`` partners); a number k draws k partners per
    member, half (rounded up) from its class within the group and half from the others. Memory is O(n) for the
    epoch's order plus one group's pairs; the n² list never exists.
    """

    def __init__(
        self,
        labels: Sequence[str],
        pairs_per_reference: int | None = None,
        batch_size: int = 32,
        seed: int = 0,
    ) -> None:
        if (pairs_per_reference is not None and pairs_per_reference < 1) or batch_size < 2:
            raise ConfigError("pairs_per_reference must be at least 1 and batch_size at least 2")
        self.labels = np.asarray([str(label) for label in labels])
        self.index = _ClassIndex(self.labels.tolist())
        self.pairs_per_reference = pairs_per_reference
        self.batch_size = batch_size
        self.seed = seed

    def __len__(self) -> int:
        """Groups (steps) per epoch."""
        return -(-self.index.n // self.batch_size)

    def order(self, rng: np.random.Generator) -> np.ndarray:
        """All references, shuffled within each class and cut into runs of at least two of a class, the runs
        of all classes interleaved in proportion to the class sizes: every group mixes classes and nearly
        every member has a same-class partner in its group, however many classes there are."""
        index = self.index
        shuffled = rng.permutation(index.n)
        codes = index.codes[shuffled]
        classes = int(codes.max()) + 1
        run = max(2, self.batch_size // classes)
        within = np.empty(index.n, dtype=np.int64)
        rank = np.empty(index.n, dtype=np.float64)
        for code in range(classes):
            members = np.flatnonzero(codes == code)
            within[members] = np.arange(len(members))
            runs = -(-len(members) // run)
            rank[members] = (within[members] // run + rng.random()) / max(runs, 1)
        return shuffled[np.lexsort((within, codes, rank))]

    def epoch(self, number: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        rng = np.random.default_rng([self.seed, number])
        order = self.order(rng)
        for begin in range(0, len(order), self.batch_size):
            members = order[begin : begin + self.batch_size]
            if len(members) < 2:
                continue
            names = self.labels[members]
            if self.pairs_per_reference is None or len(np.unique(names)) < 2:
                left, right = np.triu_indices(len(members), k=1)
            else:
                group = _ClassIndex(names.tolist())
                left = np.repeat(np.arange(len(members)), self.pairs_per_reference)
                positive = np.tile(np.arange(self.pairs_per_reference) % 2 == 0, len(members))
                right = np.where(positive, group.positives(left, rng), group.negatives(left, rng))
                keep = left != right  # a member alone in its class has no positive partner in the group
                left, right = left[keep], right[keep]
            yield members, left, right, (names[left] == names[right]).astype(np.int64)


class ClassBatchSampler:
    """Per epoch, ``pairs_per_reference`` (anchor, same-class positive) pairs per reference, batched so that no
    two anchors of a batch share a class (for a ranking loss with in-batch negatives).

    A batch holds up to ``batch_size`` anchors, each of a different class; with fewer classes than
    ``batch_size`` a batch has one anchor per class.
    """

    def __init__(
        self, labels: Sequence[str], pairs_per_reference: int = 8, batch_size: int = 16, seed: int = 0
    ) -> None:
        if pairs_per_reference < 1 or batch_size < 2:
            raise ConfigError("pairs_per_reference must be at least 1 and batch_size at least 2")
        self.index = _ClassIndex(labels)
        self.pairs_per_reference = pairs_per_reference
        self.batch_size = batch_size
        self.seed = seed

    def epoch(self, number: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        rng = np.random.default_rng([self.seed, number])
        n, k = self.index.n, self.pairs_per_reference
        anchors = rng.permutation(n * k) % n
        # Stable sort by a random key per class round: anchors interleave across classes.
        codes = self.index.codes[anchors]
        rank = np.zeros(len(anchors), dtype=np.int64)
        for code in np.unique(codes):
            members = np.flatnonzero(codes == code)
            rank[members] = np.arange(len(members))
        classes = int(codes.max()) + 1
        width = min(self.batch_size, classes)
        order = np.lexsort((rng.random(len(anchors)), rank))
        batch: list[int] = []
        seen: set[int] = set()
        for position in order:
            code = int(codes[position])
            if code in seen or len(batch) == width:
                if len(batch) >= 2:
                    chosen = anchors[np.asarray(batch)]
                    yield chosen, self.index.positives(chosen, rng)
                batch, seen = [], set()
            batch.append(int(position))
            seen.add(code)
        if len(batch) >= 2:
            chosen = anchors[np.asarray(batch)]
            yield chosen, self.index.positives(chosen, rng)


__all__ = ["ClassBatchSampler", "PairSampler"]
