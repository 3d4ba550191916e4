"""Readers for the standard published files (STS-B, SICK, MRPC, WikiQA, AG News, SNLI), quirks included.

Each turns its file into the generic ``PairData`` / ``TripletData`` with the internal conventions: gold
similarity in ``scores`` on the file's own scale (the range is checked), labels 1 = similar.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from textsiamese.data.records import (
    PairData,
    TripletData,
    label_cell,
    pairs_from_table,
    score_cell,
    text_cell,
)
from textsiamese.data.tables import Row, Table, read_table
from textsiamese.errors import InputError

STSB_COLUMNS = ["genre", "file", "year", "id", "score", "sentence1", "sentence2"]


def read_stsb(path: str | Path, errors: str = "strict") -> PairData:
    """STS Benchmark ``sts-*.csv``: tab-separated, no header, score 0-5; some rows carry 1-2 extra columns."""
    table = read_table(path, "tsv", header=STSB_COLUMNS, errors=errors, allow_extra_cells=True)
    return pairs_from_table(table, need="score", score_range=(0.0, 5.0))


def read_sick(path: str | Path, errors: str = "strict") -> PairData:
    """SICK (``SICK-train-trial.txt``): relatedness 1-5 as ``scores``; entailment label and split kept as extras."""
    table = read_table(path, "tsv", errors=errors)
    mapping = {"sentence1": "sentence_A", "sentence2": "sentence_B", "score": "relatedness_score"}
    return pairs_from_table(table, columns=mapping, need="score", score_range=(1.0, 5.0))


def read_mrpc(path: str | Path, errors: str = "strict") -> PairData:
    """MRPC ``msr_paraphrase_*.txt``: tab-separated with header; Quality 1 = paraphrase."""
    table = read_table(path, "tsv", errors=errors)
    mapping = {"sentence1": "#1 String", "sentence2": "#2 String", "label": "Quality"}
    return pairs_from_table(table, columns=mapping, need="label")


def read_wikiqa(path: str | Path, errors: str = "strict") -> PairData:
    """WikiQA ``WikiQA-*.txt``: no header; question, candidate sentence, label (1 = answers the question)."""
    table = read_table(path, "tsv", header=["sentence1", "sentence2", "label"], errors=errors)
    return pairs_from_table(table, need="label")


def read_agnews(path: str | Path, errors: str = "strict") -> PairData:
    """AG News title/description CSV: each title paired with its own description (label 1).

    The news class (1-4) is kept in ``extra["class"]``.
    """
    table = read_table(path, "csv", errors=errors)
    mapping = {"sentence1": "title", "sentence2": "description", "label": "__none__"}
    pairs = pairs_from_table(table, columns=mapping)
    pairs.labels = [1] * len(pairs)
    pairs.extra["class"] = pairs.extra.pop("label")
    return pairs


SNLI_LABELS = ("entailment", "neutral", "contradiction")


def _snli_rows(path: str | Path, errors: str) -> tuple[Table, list[Row]]:
    table = read_table(path, "jsonl", errors=errors)
    for needed in ("sentence1", "sentence2", "gold_label"):
        if needed not in table.columns:
            raise InputError(table.source, f"SNLI file lacks field {needed!r}")
    return table, [row for row in table.rows if row.cells.get("gold_label") in SNLI_LABELS]


def read_snli_pairs(path: str | Path, errors: str = "strict") -> PairData:
    """SNLI jsonl as pairs: entailment → 1, contradiction → 0; neutral and no-consensus rows are dropped."""
    table, rows = _snli_rows(path, errors)
    kept = [row for row in rows if row.cells["gold_label"] != "neutral"]
    return PairData(
        sentence1=[text_cell(table.source, row, "sentence1") for row in kept],
        sentence2=[text_cell(table.source, row, "sentence2") for row in kept],
        labels=[1 if row.cells["gold_label"] == "entailment" else 0 for row in kept],
        source=table.source,
        columns=["sentence1", "sentence2", "label"],
        lines=[row.line for row in kept],
    )


def read_snli_triplets(path: str | Path, errors: str = "strict") -> TripletData:
    """SNLI jsonl as (premise, entailed hypothesis, contradicting hypothesis) triplets, one per premise and
    entailment (each paired with the premise's first contradiction), as in the SBERT NLI recipes."""
    table, rows = _snli_rows(path, errors)
    by_premise: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        premise = text_cell(table.source, row, "sentence1")
        by_premise[premise][row.cells["gold_label"]].append(text_cell(table.source, row, "sentence2"))
    anchors, positives, negatives = [], [], []
    for premise, hypotheses in by_premise.items():
        if hypotheses["contradiction"]:
            for positive in hypotheses["entailment"]:
                anchors.append(premise)
                positives.append(positive)
                negatives.append(hypotheses["contradiction"][0])
    return TripletData(anchors, positives, negatives, source=table.source)


NAMED_PAIR_READERS: dict[str, Callable[..., PairData]] = {
    "stsb": read_stsb,
    "sick": read_sick,
    "mrpc": read_mrpc,
    "wikiqa": read_wikiqa,
    "agnews": read_agnews,
    "snli": read_snli_pairs,
}

__all__ = [
    "NAMED_PAIR_READERS",
    "label_cell",
    "read_agnews",
    "read_mrpc",
    "read_sick",
    "read_snli_pairs",
    "read_snli_triplets",
    "read_stsb",
    "read_wikiqa",
    "score_cell",
]
