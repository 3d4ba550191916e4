"""Long documents whose answer sits past the truncation limit: truncate vs chunk-then-pool.

Documents are AG News descriptions (the shared train file) shuffled with a seed and concatenated, a space
apart, until each reaches a length drawn uniformly from 300-2,000 tokens. A query is the title of one of the
descriptions; its one relevant document is the one holding that description. Queries fall in two groups by
where their description sits: ``tail`` (it starts at or after token ``--limit``, so truncation never reads a
word of it) and ``head`` (it ends before the limit: the control, where truncation reads all of it).
Descriptions across the limit are in neither group. Documents are encoded with the document role under each
setting; queries once. Prints recall@10 and MRR@10 per group, and the cost: seconds, documents/s, tokens
encoded (windows included, special tokens counted) and tokens/s. Writes benchmarks/results/long_text_retrieval.json.

Usage: nice -n 10 python benchmarks/long_text_retrieval.py [--max-docs N] [--settings truncate,mean,...]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

import textsiamese
from textsiamese.inference import long_text
from textsiamese.inference.long_text import LongText, windows
from textsiamese.training.machine import machine_description

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"  # ../shared/data beside the checkout
DATA = SHARED / "agnews" / "agnews-title-description-train.csv"
RESULTS = Path(__file__).resolve().parent / "results" / "long_text_retrieval.json"
# name → (long_text setting, window vectors normalised before pooling)
SETTINGS: dict[str, tuple[LongText, bool]] = {
    "truncate": (LongText("truncate"), True),
    "chunk-mean": (LongText("chunk", pooling="mean"), True),
    "chunk-max": (LongText("chunk", pooling="max"), True),
    "chunk-first": (LongText("chunk", pooling="first"), True),
    "chunk-mean-unnormalised-windows": (LongText("chunk", pooling="mean"), False),
}


def build_documents(
    titles: list[str], descriptions: list[str], lengths: np.ndarray, seed: int, limit: int
) -> tuple[list[str], list[tuple[str, int, str]]]:
    """Documents, and (title, document index, group) per query: ``tail`` / ``head`` / ``across``."""
    rng = random.Random(seed)
    order = list(range(len(descriptions)))
    rng.shuffle(order)
    documents: list[str] = []
    queries: list[tuple[str, int, str]] = []
    parts: list[str] = []
    position, target = 1, rng.randint(300, 2000)  # position 0 is [CLS]
    for i in order:
        start, end = position, position + int(lengths[i])
        group = "tail" if start >= limit else "head" if end < limit else "across"
        queries.append((titles[i], len(documents), group))
        parts.append(descriptions[i])
        position = end
        if position + 1 >= target:
            documents.append(" ".join(parts))
            parts, position, target = [], 1, rng.randint(300, 2000)
    if parts:
        documents.append(" ".join(parts))
    return documents, queries


def metrics(scores: np.ndarray, relevant: np.ndarray) -> dict[str, float]:
    """recall@10 and MRR@10 with one relevant document per query."""
    ranks = (scores > scores[np.arange(len(relevant)), relevant][:, None]).sum(1)  # 0 = first
    hit = ranks < 10
    return {"recall@10": float(hit.mean()), "mrr@10": float(np.where(hit, 1.0 / (ranks + 1), 0.0).mean())}


def encoded_tokens(model: Any, documents: list[str], setting: LongText) -> int:
    """Tokens the tower runs over for ``documents`` under ``setting``, special tokens included."""
    tower = model.tower("document")
    if not setting.chunked:
        return int(np.minimum(model.token_counts(documents, "document"), tower.max_length).sum())
    prefix, suffix = tower.special_ids()
    resolved = setting.for_tower(tower.max_length, len(prefix) + len(suffix))
    rows, _ = windows(tower.content_ids(documents), prefix, suffix, resolved)
    return sum(map(len, rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--model", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-docs", type=int, default=None, help="keep the first N documents (a quick run)")
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--output", default=str(RESULTS))
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=textsiamese.TruncationWarning)  # truncating is measured here

    with open(args.data, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    titles = [r["title"] for r in rows]
    descriptions = [" ".join(r["description"].split()) for r in rows]
    model = textsiamese.load(args.model, device="cpu")
    limit = model.tower("document").max_length
    # Content tokens of each description: BERT's tokenizer splits on spaces first, so a space-joined
    # document has the sum of its parts' tokens.
    lengths = model.token_counts(descriptions, "document") - 2
    documents, queries = build_documents(titles, descriptions, lengths, args.seed, limit)
    if args.max_docs:
        documents = documents[: args.max_docs]
        queries = [q for q in queries if q[1] < len(documents)]
    doc_tokens = model.token_counts(documents, "document")
    groups = {g: [q for q in queries if q[2] == g] for g in ("tail", "head")}
    print(
        f"{len(documents)} documents, {int(doc_tokens.sum()):,} tokens (median {int(np.median(doc_tokens))}, "
        f"{int(doc_tokens.min())}-{int(doc_tokens.max())}); queries: {len(groups['tail'])} tail, "
        f"{len(groups['head'])} head (limit {limit} tokens)"
    )
    query_vectors = {g: model.encode([q[0] for q in qs], batch_size=64) for g, qs in groups.items()}
    relevant = {g: np.asarray([q[1] for q in qs]) for g, qs in groups.items()}

    results: dict[str, Any] = {}
    for name in args.settings.split(","):
        setting, normalise_windows = SETTINGS[name]
        long_text.NORMALIZE_CHUNKS = normalise_windows
        start = time.perf_counter()
        vectors = model.encode(documents, role="document", long_text=setting)
        seconds = time.perf_counter() - start
        long_text.NORMALIZE_CHUNKS = True
        tokens = encoded_tokens(model, documents, setting)
        row: dict[str, Any] = {
            g: metrics(query_vectors[g] @ vectors.T, relevant[g]) for g in ("tail", "head")
        }
        row.update(
            seconds=round(seconds, 2),
            documents_per_s=round(len(documents) / seconds, 2),
            tokens_encoded=tokens,
            tokens_per_s=round(tokens / seconds, 1),
        )
        results[name] = row
        print(
            f"{name:<33} tail R@10 {row['tail']['recall@10']:.3f} MRR {row['tail']['mrr@10']:.3f} | "
            f"head R@10 {row['head']['recall@10']:.3f} MRR {row['head']['mrr@10']:.3f} | {seconds:7.1f} s "
            f"{row['documents_per_s']:6.2f} docs/s {tokens:>8,} tokens {row['tokens_per_s']:8.1f} tokens/s",
            flush=True,
        )
    report = {
        "benchmark": "long_text_retrieval",
        "machine": machine_description(),
        "model": str(getattr(model, "source", "default")),
        "limit": limit,
        "documents": len(documents),
        "document_tokens": {"total": int(doc_tokens.sum()), "median": int(np.median(doc_tokens))},
        "queries": {g: len(qs) for g, qs in groups.items()},
        "seed": args.seed,
        "results": results,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n", "utf-8")
    print(f"→ {args.output}")


if __name__ == "__main__":
    main()
