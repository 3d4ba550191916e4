"""One-shot / few-shot AG News with the default model and no training.

k reference texts per class (k = 1, 5, 20) are drawn at random from the shared AG News file (classes from its
``label`` column); every other text is classified by ``OneShotClassifier`` to the nearest single reference and
to the nearest class centroid. Texts are title and description joined by a space (``--text title`` for
titles only). Accuracy is averaged over ``--seeds`` draws. Each text is encoded once and reused across draws.
Prints a Markdown table and writes benchmarks/results/oneshot_agnews.json.

Usage: python benchmarks/oneshot_agnews.py [--seeds 5] [--text title+description|title]
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import textsiamese
from textsiamese.decisions.oneshot import OneShotClassifier, accuracy

DATA = (
    Path(__file__).resolve().parents[1]
    / ".."
    / "shared"
    / "data"
    / "agnews"
    / "agnews-title-description-train.csv"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--model", default=None)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--ks", default="1,5,20")
    parser.add_argument("--text", default="title+description", choices=["title+description", "title"])
    args = parser.parse_args()

    with open(args.data, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    texts = [r["title"] if args.text == "title" else f"{r['title']} {r['description']}" for r in rows]
    labels = np.asarray([r["label"] for r in rows])
    model = textsiamese.load(args.model, device="cpu")
    start = time.perf_counter()
    vectors = model.encode(texts, batch_size=64)
    seconds = time.perf_counter() - start
    cache = dict(zip(texts, vectors, strict=True))

    def cached_encode(batch: Sequence[str], role: str = "query", **_: Any) -> np.ndarray:
        return np.stack([cache[t] for t in batch])

    model.encode = cached_encode  # type: ignore[method-assign]  # every text is already encoded once
    classes = sorted(set(labels.tolist()))
    ks = [int(k) for k in args.ks.split(",")]
    table: dict[str, dict[str, list[float]]] = {}
    for k in ks:
        for strategy in ("reference", "centroid"):
            scores = []
            for seed in range(args.seeds):
                rng = np.random.default_rng(seed)
                chosen = np.concatenate(
                    [rng.choice(np.flatnonzero(labels == c), size=k, replace=False) for c in classes]
                )
                rest = np.setdiff1d(np.arange(len(texts)), chosen)
                matcher = OneShotClassifier(model, strategy=strategy)
                matcher.enroll([labels[i] for i in chosen], [texts[i] for i in chosen])
                predicted = matcher.classify([texts[i] for i in rest]).labels
                scores.append(accuracy(predicted, labels[rest].tolist()))
            table.setdefault(str(k), {})[strategy] = scores
    result = {
        "data": Path(args.data).name,
        "texts": args.text,
        "n": len(texts),
        "classes": len(classes),
        "seeds": args.seeds,
        "encode_seconds": round(seconds, 1),
        "accuracy": {
            k: {s: {"mean": float(np.mean(v)), "std": float(np.std(v)), "runs": v} for s, v in row.items()}
            for k, row in table.items()
        },
    }
    print(f"AG News ({args.text}), {len(texts)} texts, {len(classes)} classes, mean over {args.seeds} draws")
    print("| references per class | nearest reference | nearest centroid |")
    print("| --- | --- | --- |")
    for k, row in result["accuracy"].items():  # type: ignore[attr-defined]
        cells = [
            f"{100 * row[s]['mean']:.1f} % ± {100 * row[s]['std']:.1f}" for s in ("reference", "centroid")
        ]
        print(f"| {k} | {cells[0]} | {cells[1]} |")
    suffix = "" if args.text == "title+description" else "_titles"
    out = Path(__file__).resolve().parent / "results" / f"oneshot_agnews{suffix}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
