"""``textsiamese index build|add|remove|info``: a FAISS index directory over a corpus, updated by id.

``build`` encodes the corpus with the document tower and writes an index directory (FAISS file, ids, texts,
metadata and a manifest with the model's fingerprint). ``add`` and ``remove`` update it in place by id; the
directory is rewritten atomically, so a failed update leaves the previous index usable.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from textsiamese.cli import distributed
from textsiamese.cli.common import (
    INDEX_KIND_NAMES,
    INDEX_METRICS,
    add_errors_option,
    add_id_column_option,
    add_long_text_options,
    add_model_options,
    add_progress_option,
    apply_long_text,
    count,
    held_truncation,
    line_numbers,
    show_progress,
    truncated_flags,
    warn_truncation,
)
from textsiamese.cli.distributed import add_engine_options
from textsiamese.errors import ConfigError, InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``index`` and its actions (build, add, remove, info): one ``add_argument`` per option, so it is
    long but flat."""
    parser = subparsers.add_parser(
        "index",
        help="build and update a semantic-search index",
        description="Build a FAISS index over a corpus, add or remove rows by id, or describe an index.",
    )
    actions = parser.add_subparsers(dest="index_command", metavar="ACTION", required=True)

    build = actions.add_parser(
        "build",
        help="encode a corpus and build an index",
        description="Encode a corpus (document tower) and write an index directory. Corpus: a .txt file (one "
        "text per line, ids = line numbers) or a CSV/TSV/JSONL file with a text column; other columns are "
        "kept as metadata and returned with each hit (with --report-truncation also tokens and truncated). "
        "--from-shards builds it from the shard directory of 'encode --engine ray' instead, and --engine ray "
        "runs both steps.",
    )
    add_corpus_options(build, required=False)
    build.add_argument(
        "--from-shards",
        metavar="DIR",
        help="build from a shard directory written by 'textsiamese encode --engine ray' (instead of --corpus)",
    )
    build.add_argument(
        "--shards",
        metavar="DIR",
        help="--engine ray: where the shards go (default: <output>.shards beside the index; kept for --resume)",
    )
    build.add_argument("--output", metavar="DIR", help="index directory (default: <corpus name>.index)")
    build.add_argument("--kind", choices=INDEX_KIND_NAMES, default="auto", help="index kind (default: auto)")
    build.add_argument(
        "--metric", choices=INDEX_METRICS, default="cosine", help="similarity (default: cosine)"
    )
    build.add_argument(
        "--recall-target",
        type=float,
        default=0.95,
        help="tune nprobe / ef_search until recall@10 against exact search reaches this (default: 0.95; "
        "0 keeps the kind's defaults)",
    )
    build.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="index parameter, e.g. nlist=4096, M=32, m=48 (repeatable)",
    )
    add_long_text_options(build)
    add_model_options(build)
    add_errors_option(build)
    add_engine_options(build)
    build.set_defaults(func=run_build)

    add = actions.add_parser(
        "add",
        help="add corpus rows to an index",
        description="Add rows by id. The corpus is read with the text and id columns that 'index build' was "
        "given unless --text-column or --id-column name others.",
    )
    add.add_argument("--index", required=True, metavar="DIR", help="index directory")
    add_corpus_options(add, remembered=True)
    add_long_text_options(add, report=False)
    add_model_options(add)
    add_errors_option(add)
    add.set_defaults(func=run_add)

    remove = actions.add_parser(
        "remove", help="remove rows from an index by id", description="Remove rows by id (all or nothing)."
    )
    remove.add_argument("--index", required=True, metavar="DIR", help="index directory")
    remove.add_argument("--ids", nargs="+", default=[], metavar="ID", help="ids to remove")
    remove.add_argument("--ids-file", metavar="FILE", help="file with one id per line")
    remove.set_defaults(func=run_remove)

    info = actions.add_parser("info", help="describe an index", description="Print an index's manifest.")
    info.add_argument("--index", required=True, metavar="DIR", help="index directory")
    info.add_argument("--json", action="store_true", help="print the manifest as JSON")
    info.set_defaults(func=run_info)


def add_corpus_options(
    parser: argparse.ArgumentParser, remembered: bool = False, required: bool = True
) -> None:
    """``--corpus``, ``--text-column``, ``--id-column``, ``--progress`` / ``--no-progress``.

    ``remembered``: the command updates an index, whose manifest holds the build's columns; there the text
    column defaults to None, meaning the recorded one (see :func:`run_add`). ``required=False``: the
    command checks for ``--corpus`` itself (``index build`` also takes ``--from-shards``)."""
    parser.add_argument(
        "--corpus", required=required, metavar="FILE", help="corpus file (.txt, csv, tsv, jsonl)"
    )
    parser.add_argument(
        "--text-column",
        default=None if remembered else "text",
        help="column holding the text (default: "
        + ("the one the index was built with, else text)" if remembered else "text)"),
    )
    add_id_column_option(parser)
    add_progress_option(parser)


def parse_params(items: list[str]) -> dict[str, Any]:
    """``["nlist=1024", "M=32"]`` → ``{"nlist": 1024, "M": 32}`` (integers where they parse)."""
    params: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--param expects NAME=VALUE, got {item!r}")
        try:
            params[name.strip()] = int(value)
        except ValueError:
            raise ConfigError(f"--param {name.strip()}: expected an integer, got {value!r}") from None
    return params


def load_index_model(args: argparse.Namespace, index: Any) -> Any:
    """The model for an index: ``--model``, else the directory recorded at build time, else the default.

    The index refuses it (one-line ModelError) unless its fingerprint and dimension match.
    """
    from textsiamese.model.loading import load

    path = args.model
    if path is None and index.model_source and Path(index.model_source).is_dir():
        path = index.model_source
    model = load(path, device=args.device, backend=args.backend)
    index.attach_model(model)
    return model


def run_build(args: argparse.Namespace) -> int:
    from textsiamese.data import read_corpus
    from textsiamese.model.loading import load

    if bool(args.corpus) == bool(args.from_shards):
        raise ConfigError(
            "give the corpus with --corpus FILE, or shards with --from-shards DIR (one of them)"
        )
    if args.from_shards or args.engine == "ray":
        return _run_build_sharded(args)

    corpus = read_corpus(
        args.corpus, text_column=args.text_column, id_column=args.id_column, errors=args.errors
    )
    if not corpus.texts:
        raise InputError(args.corpus, "the corpus has no texts")
    model = load(args.model, device=args.device, backend=args.backend)
    apply_long_text(args, model, ("document",))
    output = Path(args.output) if args.output else Path(args.corpus).with_suffix(".index")
    metadata = dict(corpus.metadata)
    tokens = model.token_counts(corpus.texts, "document") if args.report_truncation else None
    if tokens is not None:
        clash = [name for name in ("tokens", "truncated") if name in metadata]
        if clash:
            raise ConfigError(
                f"--report-truncation adds {' and '.join(clash)} to each row; the corpus has them"
            )
        metadata["tokens"] = tokens.tolist()
        metadata["truncated"] = truncated_flags(model, "document", tokens).tolist()
    with held_truncation() as held:
        index = _build_index(args, model, corpus, metadata)
    if held:
        tokens = model.token_counts(corpus.texts, "document") if tokens is None else tokens
        cut = line_numbers(truncated_flags(model, "document", tokens), corpus.lines)
        warn_truncation(len(corpus.texts), cut, [model.tower("document").max_length])
    # recorded for index add; row numbers (--id-column "") are no column, and numbering an added file again
    # would repeat the build's ids, so they are not recorded
    index.corpus_columns = {key: value for key, value in given_corpus_columns(args).items() if value}
    index.save(output)
    print(f"textsiamese index: {describe(index)} -> {output}", file=sys.stderr)
    return 0


def _run_build_sharded(args: argparse.Namespace) -> int:
    """``index build --from-shards`` / ``--engine ray`` (see :mod:`textsiamese.cli.distributed`)."""
    index, output = distributed.build_index(args, parse_params(args.param))
    if args.corpus:
        index.corpus_columns = {key: value for key, value in given_corpus_columns(args).items() if value}
    index.save(output)
    print(f"textsiamese index: {describe(index)} -> {output}", file=sys.stderr)
    return 0


def _build_index(args: argparse.Namespace, model: Any, corpus: Any, metadata: dict[str, Any]) -> Any:
    from textsiamese.search import Index

    return Index.build(
        model,
        corpus.texts,
        ids=corpus.ids,
        metadata=metadata or None,
        kind=args.kind,
        metric=args.metric,
        params=parse_params(args.param),
        recall_target=args.recall_target or None,
        batch_size=args.batch_size,
        show_progress=show_progress(args),
        model_source=str(getattr(model, "source", args.model) or "") or None,
    )


def run_add(args: argparse.Namespace) -> int:
    from textsiamese.data import read_corpus
    from textsiamese.search import Index

    index = Index.load(args.index)
    columns = {**index.corpus_columns, **given_corpus_columns(args)}
    corpus = read_corpus(args.corpus, errors=args.errors, **columns)
    model = load_index_model(args, index)
    apply_long_text(args, model, ("document",))
    added = index.add(
        corpus.texts,
        ids=corpus.ids,
        metadata=corpus.metadata or None,
        batch_size=args.batch_size,
        show_progress=show_progress(args),
    )
    index.save(args.index)
    print(f"textsiamese index: added {count(len(added), 'row')}; {describe(index)}", file=sys.stderr)
    return 0


def given_corpus_columns(args: argparse.Namespace) -> dict[str, str]:
    """The corpus columns named on the command line, as ``read_corpus`` keywords: what ``build`` records in
    the manifest, and what overrides the recorded ones on ``add`` (where an unnamed one is None)."""
    given = {"text_column": args.text_column, "id_column": args.id_column}
    return {key: value for key, value in given.items() if value is not None}


def run_remove(args: argparse.Namespace) -> int:
    from textsiamese.search import Index

    ids = list(args.ids)
    if args.ids_file:
        try:
            with open(args.ids_file, encoding="utf-8") as handle:
                ids += [line.strip() for line in handle if line.strip()]
        except OSError as error:
            raise InputError(args.ids_file, error.strerror or str(error)) from None
    if not ids:
        raise ConfigError("give the ids to remove with --ids or --ids-file")
    index = Index.load(args.index)
    removed = index.remove(ids)
    index.save(args.index)
    print(f"textsiamese index: removed {count(removed, 'row')}; {describe(index)}", file=sys.stderr)
    return 0


def run_info(args: argparse.Namespace) -> int:
    from textsiamese.search import storage

    manifest = storage.read_manifest(Path(args.index))
    if args.json:
        print(json.dumps(manifest, indent=2))
        return 0
    for key in (
        "kind",
        "metric",
        "dimension",
        "count",
        "params",
        "tuning",
        "model_source",
        "corpus_columns",
        "model_fingerprint",
        "library_version",
        "faiss_version",
        "created",
    ):
        print(f"{key + ':':<19}{manifest.get(key)}")
    return 0


def describe(index: Any) -> str:
    """One line: count, kind, parameters and the tuned recall."""
    text = f"{count(len(index), 'row')}, {index.kind} ({index.metric}"
    if index.params:
        text += ", " + ", ".join(f"{k}={v}" for k, v in index.params.items())
    text += ")"
    tuning = index.tuning
    if tuning and tuning.get("parameter"):
        text += f", recall@{tuning['k']} {tuning['recall']:.3f} (target {tuning['recall_target']})"
    return text
