"""``textsiamese paraphrases``: near-duplicate and paraphrase pairs inside one corpus.

Pairs at or above ``--threshold`` are found by chunked FAISS range search (exact, ``--kind flat``) or from
each text's nearest neighbours in an approximate index (``--kind hnsw|ivf``): the N x N similarity matrix is
never built.
"""

from __future__ import annotations

import argparse
import sys

from textsiamese.cli.common import (
    add_errors_option,
    add_id_column_option,
    add_model_options,
    add_progress_option,
    count,
    show_progress,
)
from textsiamese.errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "paraphrases",
        help="find paraphrase / near-duplicate pairs in a corpus",
        description="Encode a corpus and list every pair of texts whose similarity reaches --threshold, best "
        "first: id_1, id_2, score, text_1, text_2 (CSV on stdout, or --output FILE by extension, or --json).",
    )
    parser.add_argument("--corpus", required=True, metavar="FILE", help="corpus file (.txt, csv, tsv, jsonl)")
    parser.add_argument("--text-column", default="text", help="column holding the text (default: text)")
    add_id_column_option(parser, "text")
    parser.add_argument(
        "--threshold", type=float, default=0.8, help="minimum cosine similarity (default: 0.8)"
    )
    parser.add_argument(
        "--kind",
        choices=["flat", "hnsw", "ivf"],
        default="flat",
        help="flat: exact, O(N²) time; hnsw/ivf: approximate top --max-neighbors per text, for large corpora",
    )
    parser.add_argument("--max-neighbors", type=int, default=100, help="neighbours per text for hnsw/ivf")
    parser.add_argument("--output", default=None, metavar="FILE", help="output file (default: stdout)")
    parser.add_argument("--json", action="store_true", help="JSON lines on stdout")
    add_progress_option(parser)
    add_model_options(parser)
    add_errors_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from textsiamese.data import read_corpus, write_rows
    from textsiamese.model.loading import load
    from textsiamese.search import paraphrase_pairs

    if not -1.0 <= args.threshold <= 1.0:
        raise ConfigError(f"--threshold must be a cosine similarity in [-1, 1], got {args.threshold}")
    corpus = read_corpus(
        args.corpus, text_column=args.text_column, id_column=args.id_column, errors=args.errors
    )
    model = load(args.model, device=args.device, backend=args.backend)
    vectors = model.encode(
        corpus.texts, role="document", batch_size=args.batch_size, show_progress=show_progress(args)
    )
    pairs = paraphrase_pairs(vectors, args.threshold, kind=args.kind, max_neighbors=args.max_neighbors)
    columns = ["id_1", "id_2", "score", "text_1", "text_2"]
    rows = [
        [corpus.ids[i], corpus.ids[j], round(score, 6), corpus.texts[i], corpus.texts[j]]
        for i, j, score in pairs
    ]
    fmt = "jsonl" if args.json else None
    write_rows(args.output, columns, rows, fmt)
    print(
        f"textsiamese paraphrases: {count(len(rows), 'pair')} at or above {args.threshold} among "
        f"{count(len(corpus), 'text')}",
        file=sys.stderr,
    )
    return 0
