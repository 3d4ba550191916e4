"""``textsiamese mine``: hard negatives for (query, positive) pairs, written as rows for the trainer.

Each output row is ``anchor, positive, negative_1 .. negative_N``. Negatives are the corpus texts closest to
the anchor once every known positive of that anchor (all its label-1 pairs) and anything scoring within
``--margin`` of the positive are dropped, so likely false negatives stay out of the training set.
"""

from __future__ import annotations

import argparse
import sys

from textsiamese.cli.common import (
    INDEX_KIND_NAMES,
    add_model_options,
    add_pair_input_options,
    add_progress_option,
    count,
    read_pair_input,
    show_progress,
)
from textsiamese.cli.index import load_index_model
from textsiamese.errors import ConfigError, InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "mine",
        help="mine hard negatives for training pairs",
        description="For each (query, positive) pair (label-1 rows where the file has labels), retrieve "
        "neighbours of the query from a corpus, drop all known positives of the query and anything within "
        "--margin of the positive's score, and write anchor, positive, negative_1..N rows (CSV, TSV or "
        "JSONL by the output's extension; CSV on stdout).",
    )
    parser.add_argument("--pairs", required=True, metavar="FILE", help="pair file (sentence1 = query)")
    corpus = parser.add_mutually_exclusive_group()
    corpus.add_argument(
        "--corpus",
        metavar="FILE",
        help="corpus to draw negatives from (default: every distinct second sentence of --pairs)",
    )
    corpus.add_argument("--index", metavar="DIR", help="an index built with 'textsiamese index build'")
    parser.add_argument("--text-column", default="text", help="text column of --corpus (default: text)")
    parser.add_argument("--negatives", type=int, default=5, help="negatives per row (default: 5)")
    parser.add_argument(
        "--margin",
        type=float,
        default=0.05,
        help="drop candidates scoring above the positive's score minus this (default: 0.05)",
    )
    parser.add_argument("--kind", choices=INDEX_KIND_NAMES, default="auto", help="index kind for --corpus")
    parser.add_argument("--output", default=None, metavar="FILE", help="output file (default: stdout)")
    parser.add_argument("--with-scores", action="store_true", help="add the positive and negative scores")
    add_progress_option(parser)
    add_model_options(parser)
    add_pair_input_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from textsiamese.data import read_corpus
    from textsiamese.model.loading import load
    from textsiamese.search import Index, MiningStats, mine_hard_negatives, write_mined

    if args.negatives < 1:
        raise ConfigError("--negatives must be at least 1")
    pairs = read_pair_input(args, args.pairs)
    rows = range(len(pairs))
    if pairs.labels is not None:
        rows = [i for i in rows if pairs.labels[i] == 1]  # type: ignore[assignment]
    anchors = [pairs.sentence1[i] for i in rows]
    positives = [pairs.sentence2[i] for i in rows]
    if not anchors:
        raise InputError(args.pairs, "no positive pairs (label 1) to mine negatives for")
    if args.index:
        index = Index.load(args.index)
        model = load_index_model(args, index)
    else:
        model = load(args.model, device=args.device, backend=args.backend)
        if args.corpus:
            corpus = read_corpus(args.corpus, text_column=args.text_column, errors=args.errors)
            texts, ids = corpus.texts, corpus.ids
        else:
            texts = list(dict.fromkeys(pairs.sentence2))
            ids = [str(i) for i in range(1, len(texts) + 1)]
        index = Index.build(
            model,
            texts,
            ids=ids,
            kind=args.kind,
            batch_size=args.batch_size,
            show_progress=show_progress(args),
        )
    stats = MiningStats()
    mined = mine_hard_negatives(
        index,
        anchors,
        positives,
        model=model,
        num_negatives=args.negatives,
        margin=args.margin,
        encode_batch_size=args.batch_size,
        stats=stats,
    )
    written = write_mined(mined, args.output, args.negatives, with_scores=args.with_scores)
    print(
        f"textsiamese mine: {count(written, 'row')} from {count(stats.pairs, 'positive pair')} against "
        f"{count(len(index), 'corpus text')}"
        + (
            f"; {count(stats.skipped, 'pair')} skipped (too few negatives outside the margin)"
            if stats.skipped
            else ""
        ),
        file=sys.stderr,
    )
    return 0
