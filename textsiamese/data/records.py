"""Validated sentence-pair, triplet and corpus data, built from tables or in-memory datasets.

Labels follow the library's one convention, written down in the ``textsiamese.losses`` docstring:
1 = similar. Files that say 0 = same are read with ``label_convention="0=similar"`` and flipped here, at the
edge (``LABEL_CONVENTIONS``, re-exported as ``textsiamese.losses.labels.CONVENTIONS`` for the tensor checks; it lives
here, in torch-free code, so that reading files never imports torch). Scores are finite floats.

Empty or whitespace-only texts are rejected with an error naming the cell: encoding them silently gives every
empty text the same vector, which hides data bugs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from textsiamese.data.tables import Row, Table, column_list
from textsiamese.errors import ConfigError, InputError

LABEL_CONVENTIONS = ("1=similar", "0=similar")
PAIR_COLUMNS = ("sentence1", "sentence2")
TRIPLET_COLUMNS = ("anchor", "positive", "negative")


@dataclass
class PairData:
    """Aligned sentence pairs with an optional gold ``scores`` (floats) or ``labels`` (0/1) column.

    ``columns`` and ``extra`` keep the input's own columns so an output can carry them through unchanged.
    """

    sentence1: list[str]
    sentence2: list[str]
    scores: list[float] | None = None
    labels: list[int] | None = None
    source: str = "<memory>"
    columns: list[str] = field(default_factory=list)
    extra: dict[str, list[str]] = field(default_factory=dict)
    lines: list[int] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.sentence1)

    def as_table(self) -> tuple[list[str], list[list[str | float | int]]]:
        """Columns and rows as read: the file's own column names and order where known (``names`` maps
        canonical names to them), otherwise sentence1, sentence2, score/label and the extra columns."""
        canonical: dict[str, list[str] | list[float] | list[int] | None] = {
            "sentence1": self.sentence1,
            "sentence2": self.sentence2,
            "score": self.scores,
            "label": self.labels,
        }
        values: dict[str, Sequence[str | float | int]] = {}
        for name, column in canonical.items():
            if column is not None:
                values[self.names.get(name, name)] = column
        values.update(self.extra)
        order = [c for c in self.columns if c in values] if self.names else []
        order += [c for c in values if c not in order]
        rows = [[values[c][i] for c in order] for i in range(len(self))]
        return order, rows

    def __post_init__(self) -> None:
        n = len(self.sentence1)
        for name, values in (("sentence2", self.sentence2), ("scores", self.scores), ("labels", self.labels)):
            if values is not None and len(values) != n:
                raise InputError(self.source, f"{name} has {len(values)} values but sentence1 has {n}")

    def subset(self, indices: Sequence[int]) -> PairData:
        """The pairs at ``indices``, in that order (for dev splits and shuffles)."""
        return PairData(
            sentence1=[self.sentence1[i] for i in indices],
            sentence2=[self.sentence2[i] for i in indices],
            scores=None if self.scores is None else [self.scores[i] for i in indices],
            labels=None if self.labels is None else [self.labels[i] for i in indices],
            source=self.source,
            columns=list(self.columns),
            extra={k: [v[i] for i in indices] for k, v in self.extra.items()},
            lines=[self.lines[i] for i in indices] if self.lines else [],
            names=dict(self.names),
        )


@dataclass
class TripletData:
    """(anchor, positive, negative) rows; ``more_negatives`` holds any further hard-negative columns."""

    anchor: list[str]
    positive: list[str]
    negative: list[str]
    more_negatives: list[list[str]] = field(default_factory=list)
    source: str = "<memory>"

    def __len__(self) -> int:
        return len(self.anchor)


@dataclass
class Corpus:
    """Texts to index or encode, with string ids and any other columns as metadata."""

    ids: list[str]
    texts: list[str]
    metadata: dict[str, list[str]] = field(default_factory=dict)
    source: str = "<memory>"
    lines: list[int] = field(default_factory=list)  # each text's line in its file (header = line 1), if read

    def __len__(self) -> int:
        return len(self.texts)


def text_cell(table_source: str, row: Row, column: str) -> str:
    """The text in ``column`` of ``row``; missing or blank cells are errors."""
    value = row.cells.get(column)
    if value is None:
        raise InputError(table_source, "row has no value for this column", line=row.line, column=column)
    if not value.strip():
        raise InputError(table_source, "text is empty", line=row.line, column=column)
    return value


def score_cell(source: str, row: Row, column: str, score_range: tuple[float, float] | None = None) -> float:
    """A finite float score, optionally inside ``score_range`` (inclusive)."""
    raw = row.cells.get(column)
    if raw is None or not raw.strip():
        raise InputError(source, "score is missing", line=row.line, column=column)
    try:
        value = float(raw)
    except ValueError:
        raise InputError(source, f"cannot parse {raw!r} as a number", line=row.line, column=column) from None
    if not math.isfinite(value):
        raise InputError(source, f"score {raw!r} is not a finite number", line=row.line, column=column)
    if score_range is not None and not score_range[0] <= value <= score_range[1]:
        raise InputError(
            source,
            f"score {value:g} is outside the range {score_range[0]:g} to {score_range[1]:g}",
            line=row.line,
            column=column,
        )
    return value


def label_cell(source: str, row: Row, column: str, convention: str = "1=similar") -> int:
    """A 0/1 label, flipped to the internal 1 = similar convention when the file says 0 = similar."""
    raw = (row.cells.get(column) or "").strip()
    try:
        number = float(raw)
    except ValueError:
        number = math.nan
    if number not in (0.0, 1.0):
        raise InputError(
            source,
            f"label must be 0 or 1, got {raw!r}" if raw else "label is missing",
            line=row.line,
            column=column,
        )
    label = int(number)
    return 1 - label if convention == "0=similar" else label


def _resolve_columns(mapping: Mapping[str, str] | None, names: Iterable[str]) -> dict[str, str]:
    """Canonical column name → the file's column name, after the user's remapping."""
    mapping = dict(mapping or {})
    unknown = set(mapping) - {*names, "score", "label", "id", "text"}
    if unknown:
        raise ConfigError(f"cannot remap unknown column(s) {', '.join(sorted(unknown))}")
    return {name: mapping.get(name, name) for name in (*names, "score", "label", "id", "text")}


# How to point each reader parameter at other columns, in Python; the CLI says it with its own options.
API_COLUMN_HINTS = {
    "columns": "remap names with columns={'canonical': 'actual'}",
    "text_column": "name the text column with text_column='...'",
    "id_column": "name the id column with id_column='...', or id_column='' for row numbers",
}


class MissingColumnsError(InputError):
    """A header without a column the reader needs (line 1 of the file).

    ``missing`` maps each missing column to the reader parameter that chose it (``columns``,
    ``text_column`` or ``id_column``), so that whoever called the reader can say how to choose another in
    its own terms: the message says it in Python (``API_COLUMN_HINTS``); ``message_with`` lets the CLI name
    the option the running command has instead of one it lacks.
    """

    def __init__(self, source: str, missing: Mapping[str, str], columns: Sequence[str]) -> None:
        self.missing = dict(missing)
        self.available = list(columns)
        super().__init__(source, self._reason(API_COLUMN_HINTS), line=1)

    def message_with(self, hints: Mapping[str, str]) -> str:
        """The one-line message with ``hints[parameter]`` as the advice for each missing column's parameter
        (``API_COLUMN_HINTS`` for a parameter ``hints`` lacks)."""
        return f"{self.location}: {self._reason({**API_COLUMN_HINTS, **hints})}"

    def _reason(self, hints: Mapping[str, str]) -> str:
        advice = "; ".join(dict.fromkeys(hints[p] for p in self.missing.values() if p in hints))
        text = (
            f"header lacks column(s) {', '.join(repr(m) for m in self.missing)}; "
            f"it has {column_list(self.available)}"
        )
        return f"{text} ({advice})" if advice else text


def _require(table: Table, needed: Mapping[str, str]) -> None:
    """Refuse a table whose header lacks any of ``needed`` (column → the reader parameter that chose it)."""
    missing = {name: parameter for name, parameter in needed.items() if name not in table.columns}
    if missing:
        raise MissingColumnsError(table.source, missing, table.columns)


def pairs_from_table(
    table: Table,
    *,
    columns: Mapping[str, str] | None = None,
    need: str | None = None,
    label_convention: str = "1=similar",
    score_range: tuple[float, float] | None = None,
) -> PairData:
    """Validate a table as sentence pairs.

    ``need``: ``"score"`` or ``"label"`` makes that column required; otherwise it is read when present.
    """
    if label_convention not in LABEL_CONVENTIONS:
        raise ConfigError(f"label_convention must be one of {', '.join(LABEL_CONVENTIONS)}")
    names = _resolve_columns(columns, PAIR_COLUMNS)
    s1, s2, score_col, label_col = names["sentence1"], names["sentence2"], names["score"], names["label"]
    _require(table, dict.fromkeys([s1, s2] + ([names[need]] if need else []), "columns"))
    with_scores = score_col in table.columns and need != "label"
    with_labels = label_col in table.columns and need != "score"
    pairs = PairData(
        sentence1=[text_cell(table.source, row, s1) for row in table.rows],
        sentence2=[text_cell(table.source, row, s2) for row in table.rows],
        scores=[score_cell(table.source, r, score_col, score_range) for r in table.rows]
        if with_scores
        else None,
        labels=[label_cell(table.source, r, label_col, label_convention) for r in table.rows]
        if with_labels
        else None,
        source=table.source,
        columns=list(table.columns),
        lines=[row.line for row in table.rows],
        names={"sentence1": s1, "sentence2": s2, "score": score_col, "label": label_col},
    )
    used = {s1, s2} | ({score_col} if with_scores else set()) | ({label_col} if with_labels else set())
    pairs.extra = {c: [row.cells.get(c, "") for row in table.rows] for c in table.columns if c not in used}
    return pairs


def triplets_from_table(table: Table, *, columns: Mapping[str, str] | None = None) -> TripletData:
    """Validate a table as (anchor, positive, negative[, negative_2 …]) triplets.

    The first negative is the ``negative`` column; a table without one (and no remapping of it) takes
    ``negative_1``, so the ``anchor, positive, negative_1..N`` rows that ``textsiamese mine`` writes train as
    they are. Every other ``negative_<n>`` column, in number order, is a further negative.
    """
    mapping = dict(columns or {})
    anchor, positive, negative = (mapping.get(c, c) for c in TRIPLET_COLUMNS)
    numbered = sorted(
        (c for c in table.columns if c.startswith("negative_") and c[9:].isdigit()), key=lambda c: int(c[9:])
    )
    if "negative" not in mapping and negative not in table.columns and "negative_1" in numbered:
        negative = "negative_1"
    _require(table, dict.fromkeys([anchor, positive, negative], "columns"))
    more = [c for c in numbered if c != negative]
    return TripletData(
        anchor=[text_cell(table.source, row, anchor) for row in table.rows],
        positive=[text_cell(table.source, row, positive) for row in table.rows],
        negative=[text_cell(table.source, row, negative) for row in table.rows],
        more_negatives=[[text_cell(table.source, row, c) for c in more] for row in table.rows]
        if more
        else [],
        source=table.source,
    )


# The column that holds a corpus's ids when the caller names none, as ``text`` holds its texts.
DEFAULT_ID_COLUMN = "id"


def corpus_from_table(table: Table, *, text_column: str = "text", id_column: str | None = None) -> Corpus:
    """Validate a table as a corpus.

    Ids come from ``id_column``; with ``None`` from a column named ``id`` when the table has one (what users
    with such a column mean), else from the 1-based row number, as they do with ``id_column=""``.
    """
    if id_column is None:
        id_column = DEFAULT_ID_COLUMN if DEFAULT_ID_COLUMN in table.columns else ""
    _require(table, {text_column: "text_column", **({id_column: "id_column"} if id_column else {})})
    texts = [text_cell(table.source, row, text_column) for row in table.rows]
    if id_column:
        ids = [text_cell(table.source, row, id_column).strip() for row in table.rows]
        seen: dict[str, int] = {}
        for row, identifier in zip(table.rows, ids, strict=True):
            if identifier in seen:
                raise InputError(
                    table.source,
                    f"id {identifier!r} already used on line {seen[identifier]}",
                    line=row.line,
                    column=id_column,
                )
            seen[identifier] = row.line
    else:
        ids = [str(i) for i in range(1, len(texts) + 1)]
    used = {text_column, id_column}
    metadata = {c: [row.cells.get(c, "") for row in table.rows] for c in table.columns if c not in used}
    lines = [row.line for row in table.rows]
    return Corpus(ids=ids, texts=texts, metadata=metadata, source=table.source, lines=lines)


def table_from_records(records: Iterable[Mapping[str, Any]], source: str = "<dataset>") -> Table:
    """A ``Table`` from in-memory records (e.g. a ``datasets.Dataset``), cells turned to text."""
    rows: list[Row] = []
    columns: dict[str, None] = {}
    for number, record in enumerate(records, start=1):
        cells = {str(k): "" if v is None else str(v) for k, v in record.items()}
        columns.update(dict.fromkeys(cells))
        rows.append(Row(number, cells))
    if not rows:
        raise InputError(source, "dataset is empty")
    return Table(source, list(columns), rows)
