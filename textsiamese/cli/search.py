"""``textsiamese search``: top-k hits from an index for one query or a file of queries, streamed out.

Queries are encoded with the query tower of the model the index was built with (checked by fingerprint).
``--json`` writes one object per query and line: ``{"id": ..., "query": ..., "hits": [{"id", "score", "text",
...}]}``, the query's id from the queries file (its ``id`` column, or ``--id-column``, else the row number; for
``--query`` the position on the command line).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from textsiamese.cli.common import (
    add_errors_option,
    add_id_column_option,
    add_long_text_options,
    add_model_options,
    add_prompt_option,
    apply_long_text,
)
from textsiamese.cli.index import load_index_model
from textsiamese.errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "search",
        help="search an index with text queries",
        description="Top-k search of an index built with 'textsiamese index build'. Queries come from --query "
        "or from a file (one per line, or a CSV/TSV/JSONL with a text column); results stream out a batch "
        "at a time.",
    )
    parser.add_argument("--index", required=True, metavar="DIR", help="index directory")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--query", action="append", metavar="TEXT", help="a query (repeatable)")
    source.add_argument("--queries", metavar="FILE", help="queries file (.txt one per line, csv/tsv/jsonl)")
    parser.add_argument("--text-column", default="text", help="query column of a table file (default: text)")
    add_id_column_option(parser, "query")
    parser.add_argument(
        "-k", type=int, default=None, help="hits per query (default: 10, or the index size if smaller)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per query and line")
    parser.add_argument("--mmap", action="store_true", help="memory-map the index file (IVF kinds)")
    add_long_text_options(parser, report=False)
    add_model_options(parser)
    add_prompt_option(parser, "query")
    add_errors_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from textsiamese.data import read_corpus
    from textsiamese.search import Index

    index = Index.load(args.index, mmap=args.mmap)
    if args.k is None:
        args.k = max(1, min(10, len(index)))
    if args.k < 1 or len(index) == 0:  # refused before the model loads; a larger -k is clamped by the index
        raise ConfigError(f"-k {args.k} must be between 1 and the index size ({len(index)})")
    if args.queries:
        corpus = read_corpus(
            args.queries, text_column=args.text_column, id_column=args.id_column, errors=args.errors
        )
        queries, query_ids = corpus.texts, corpus.ids
    else:
        queries = list(args.query)
        query_ids = [str(n) for n in range(1, len(queries) + 1)]
    model = load_index_model(args, index)
    apply_long_text(args, model, ("query",))
    batch = max(1, args.batch_size or 64)  # queries per search call (each call encodes its chunk)
    for start in range(0, len(queries), batch):
        chunk = queries[start : start + batch]
        results = index.search(chunk, k=args.k, model=model, batch_size=args.batch_size, prompt=args.prompt)
        for query_id, query, hits in zip(query_ids[start : start + batch], chunk, results, strict=True):
            if args.json:
                record: dict[str, Any] = {
                    "id": query_id,
                    "query": query,
                    "hits": [hit.to_dict() for hit in hits],
                }
                sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
            else:
                sys.stdout.write(format_hits(query, hits))
        sys.stdout.flush()
    return 0


def format_hits(query: str, hits: list[Any], width: int = 100) -> str:
    """A readable block: the query, then rank, score, id and (shortened) text per hit."""
    lines = [f"query: {query}"]
    for rank, hit in enumerate(hits, start=1):
        text = " ".join((hit.text or "").split())
        if len(text) > width:
            text = text[: width - 1] + "…"
        lines.append(f"{rank:>4}  {hit.score:.4f}  {hit.id}  {text}")
    return "\n".join(lines) + "\n\n"
