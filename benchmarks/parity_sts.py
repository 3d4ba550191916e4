"""Zero-shot STS parity: textsiamese and sentence-transformers on the same model and file, same process.

Usage: python benchmarks/parity_sts.py [--data FILE] [--model DIR]
Prints both Spearman figures and the max abs embedding difference; writes benchmarks/results/parity_sts.json.
Needs the bench extra (sentence-transformers).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

import textsiamese
from textsiamese.data import read_pairs

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "stsb" / "sts-dev.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--format", default="stsb")
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    from sentence_transformers import SentenceTransformer

    pairs = read_pairs(args.data, args.format, need="score")
    path = str(args.model or textsiamese.default_model_path())
    ours = textsiamese.load(args.model, device="cpu")
    theirs = SentenceTransformer(path, device="cpu", local_files_only=True)
    texts = pairs.sentence1 + pairs.sentence2
    start = time.perf_counter()
    a = ours.encode(texts, batch_size=64, precision="fp32")  # exact path, not the auto default
    ours_s = time.perf_counter() - start
    start = time.perf_counter()
    b = theirs.encode(texts, batch_size=64, convert_to_numpy=True)
    theirs_s = time.perf_counter() - start
    n = len(pairs)

    def spearman(e: np.ndarray) -> float:
        u, v = e[:n], e[n:]
        cos = (u * v).sum(1) / (np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1))
        return float(spearmanr(cos, pairs.scores).statistic)

    result = {
        "data": str(args.data),
        "pairs": n,
        "textsiamese_spearman": round(spearman(a), 6),
        "sentence_transformers_spearman": round(spearman(b), 6),
        "max_abs_embedding_diff": float(np.abs(a - b).max()),
        "textsiamese_seconds": round(ours_s, 2),
        "sentence_transformers_seconds": round(theirs_s, 2),
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
        "torch": torch.__version__,
    }
    print(json.dumps(result, indent=2))
    out = Path(__file__).resolve().parent / "results" / "parity_sts.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
