"""Hard negatives from a file's own candidate lists: each positive pair takes negative candidates of its
own query (WikiQA: the other sentences of the same question's Wikipedia passage, labelled 0).

Those candidates are on the question's topic, so they are far harder than the random in-batch negatives
of other questions: a ranking loss that sees them learns to tell the answer from its neighbours, which is
exactly what re-ranking a question's candidate list measures.

>>> triplets, dropped = group_negatives(read_pairs("WikiQA-train.txt", "wikiqa"), count=1, seed=42)
... # doctest: +SKIP
"""

from __future__ import annotations

import random

from textsiamese.data.records import PairData, TripletData
from textsiamese.errors import ConfigError, InputError


def group_negatives(pairs: PairData, count: int = 1, seed: int = 42) -> tuple[TripletData, int]:
    """(query, positive, negative[, more negatives]) rows: one per pair labelled 1, its ``count``
    negatives drawn (seeded, without repeats where the query has enough) from the pairs labelled 0 that
    share its ``sentence1``. Returns the triplets and the number of positives dropped because their query
    has no negative candidate. ``InputError`` when the pairs have no 0/1 labels or no positive keeps one.
    """
    if count < 1:
        raise ConfigError(f"data.num_negatives must be at least 1, got {count}")
    if pairs.labels is None:
        raise InputError(pairs.source, "hard negatives from the query's candidates need a 0/1 'label' column")
    negatives: dict[str, list[str]] = {}
    for query, text, label in zip(pairs.sentence1, pairs.sentence2, pairs.labels, strict=True):
        if label == 0:
            negatives.setdefault(query, []).append(text)
    rng = random.Random(seed)
    anchor: list[str] = []
    positive: list[str] = []
    chosen: list[list[str]] = []
    dropped = 0
    for query, text, label in zip(pairs.sentence1, pairs.sentence2, pairs.labels, strict=True):
        if label != 1:
            continue
        pool = [n for n in dict.fromkeys(negatives.get(query, [])) if n != text]
        if not pool:
            dropped += 1
            continue
        # Without repeats while the pool lasts, then cycling through it again (a short candidate list).
        picks = rng.sample(pool, min(count, len(pool)))
        while len(picks) < count:
            picks.append(pool[len(picks) % len(pool)])
        anchor.append(query)
        positive.append(text)
        chosen.append(picks)
    if not anchor:
        raise InputError(pairs.source, "no positive pair has a negative candidate of the same query")
    triplets = TripletData(
        anchor, positive, [c[0] for c in chosen], [c[1:] for c in chosen], source=pairs.source
    )
    return triplets, dropped
