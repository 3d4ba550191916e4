"""Data readers: generic pair / triplet / corpus files, the standard named datasets, and datasets.Dataset.

The generic pair format is a CSV, TSV or JSONL file with a header and columns ``sentence1``, ``sentence2`` and
either ``score`` (float) or ``label`` (1 = similar, 0 = not); triplets use ``anchor``, ``positive``,
``negative``. Columns are always taken by name (remappable), never by position. See
``textsiamese.data.records`` for the label convention and the rules on empty texts.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from textsiamese.data.named import NAMED_PAIR_READERS, read_snli_triplets
from textsiamese.data.records import (
    Corpus,
    PairData,
    TripletData,
    corpus_from_table,
    pairs_from_table,
    table_from_records,
    triplets_from_table,
)
from textsiamese.data.tables import TABLE_FORMATS, Table, guess_format, read_table, read_text
from textsiamese.data.writers import atomic_open, write_rows
from textsiamese.errors import ConfigError, InputError

PAIR_FORMATS = ("auto", *TABLE_FORMATS, *NAMED_PAIR_READERS)


def read_pairs(
    path: str | Path,
    format: str = "auto",
    *,
    columns: Mapping[str, str] | None = None,
    need: str | None = None,
    label_convention: str = "1=similar",
    score_range: tuple[float, float] | None = None,
    errors: str = "strict",
) -> PairData:
    """Read sentence pairs from a generic table (``format`` auto/csv/tsv/jsonl) or a named dataset file.

    >>> pairs = read_pairs("pairs.csv", need="score")          # doctest: +SKIP
    >>> pairs = read_pairs("../shared/data/stsb/sts-dev.csv", format="stsb")  # doctest: +SKIP
    """
    if format in NAMED_PAIR_READERS:
        pairs = NAMED_PAIR_READERS[format](path, errors=errors)
        _check_need(pairs, need)
        return pairs
    if format not in PAIR_FORMATS:
        raise ConfigError(f"unknown pair format {format!r}; choose one of {', '.join(PAIR_FORMATS)}")
    table = read_table(path, None if format == "auto" else format, errors=errors)
    return pairs_from_table(
        table, columns=columns, need=need, label_convention=label_convention, score_range=score_range
    )


def _check_need(pairs: PairData, need: str | None) -> None:
    if need == "score" and pairs.scores is None:
        raise InputError(pairs.source, "this dataset has no similarity scores (needed here)")
    if need == "label" and pairs.labels is None:
        raise InputError(pairs.source, "this dataset has no 0/1 labels (needed here)")


def read_triplets(
    path: str | Path,
    format: str = "auto",
    *,
    columns: Mapping[str, str] | None = None,
    errors: str = "strict",
) -> TripletData:
    """Read (anchor, positive, negative[, negative_2 …]) rows, or the ``anchor, positive, negative_1..N`` rows
    ``textsiamese mine`` writes; ``format="snli"`` builds them from SNLI jsonl."""
    if format == "snli":
        return read_snli_triplets(path, errors=errors)
    table = read_table(path, None if format == "auto" else format, errors=errors)
    return triplets_from_table(table, columns=columns)


def read_corpus(
    path: str | Path, text_column: str = "text", id_column: str | None = None, errors: str = "strict"
) -> Corpus:
    """Read texts to encode or index: a ``.txt`` file is one text per line (ids are line numbers); a CSV, TSV
    or JSONL file takes ``text_column`` and its ids from ``id_column`` (by default a column named ``id`` when
    there is one, else row numbers; ``""`` forces row numbers); other columns become metadata."""
    if str(path) != "-" and Path(path).suffix.lower() == ".txt":
        text = read_text(path, errors=errors)
        lines = [(n, line.removesuffix("\r")) for n, line in enumerate(text.split("\n"), start=1)]
        kept = [(n, line) for n, line in lines if line.strip()]
        return Corpus(
            ids=[str(n) for n, _ in kept],
            texts=[line for _, line in kept],
            source=str(path),
            lines=[n for n, _ in kept],
        )
    return corpus_from_table(read_table(path, errors=errors), text_column=text_column, id_column=id_column)


def pairs_from_dataset(
    dataset: Any,
    *,
    columns: Mapping[str, str] | None = None,
    need: str | None = None,
    label_convention: str = "1=similar",
) -> PairData:
    """Sentence pairs from a ``datasets.Dataset`` (or any iterable of dict records), validated like a file."""
    table = table_from_records(dataset, source=f"<{type(dataset).__name__}>")
    return pairs_from_table(table, columns=columns, need=need, label_convention=label_convention)


__all__ = [
    "PAIR_FORMATS",
    "Corpus",
    "PairData",
    "Table",
    "TripletData",
    "atomic_open",
    "guess_format",
    "pairs_from_dataset",
    "read_corpus",
    "read_pairs",
    "read_table",
    "read_triplets",
    "write_rows",
]
