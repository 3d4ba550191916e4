"""Serving throughput and latency on loopback: `textsiamese serve` against a plain FastAPI app that calls
sentence-transformers' ``encode`` per request, same model directory, same texts, same run.

    python benchmarks/bench_serve.py                      # writes benchmarks/results/serve.json
    python benchmarks/bench_serve.py --requests 400 --time-limit 60 --threads 1
    python benchmarks/bench_serve.py --openai-only --rounds 4   # /embed vs /v1/embeddings: serve-openai.json

Both servers run as subprocesses at once (an idle server costs no CPU) and the cells are interleaved
(concurrency x endpoint x server), so a load change on a shared machine hits both alike. The load generator
is bounded: a fixed number of requests per cell and a time limit, from C client threads with keep-alive
connections; every request is one AG News title (/embed) or one title as a query, k=10 (/search, a flat
index over AG News descriptions). It prints requests/s and p50/p99 latency and writes them as JSON.

``/v1/embeddings`` (the OpenAI-compatible route, one title as ``input``, float encoding like /embed's) is
measured at 32 clients on textsiamese serve only, beside /embed: both go through the same queue, so their
figures should agree. ``--openai-only`` runs just that pair, alternating which goes first, ``--rounds`` times,
and prints the ratio of the summed throughputs.
"""

from __future__ import annotations

import argparse
import csv
import http.client
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / ".." / "shared" / "data" / "agnews" / "agnews-title-description-train.csv"
CONCURRENCY = (1, 8, 32)
OPENAI_PATH, OPENAI_CONCURRENCY, MODEL_NAME = "/v1/embeddings", 32, "bench-minilm"


# ---------------------------------------------------------------------------------------------- baseline app


def baseline_app(corpus: list[str]) -> Any:
    """FastAPI + sentence-transformers, the way a user writes it: encode per request, FAISS flat search."""
    import faiss
    import numpy as np
    from fastapi import Body, FastAPI
    from sentence_transformers import SentenceTransformer

    import textsiamese

    model = SentenceTransformer(str(textsiamese.default_model_path()), device="cpu")
    vectors = model.encode(corpus, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, dtype="float32"))
    app = FastAPI()

    @app.post("/embed")
    def embed(body: dict[str, Any] = Body(...)) -> dict[str, Any]:  # noqa: B008 (FastAPI's idiom)
        return {"vectors": model.encode(body["texts"], normalize_embeddings=True).tolist()}

    @app.post("/search")
    def search(body: dict[str, Any] = Body(...)) -> dict[str, Any]:  # noqa: B008
        query = model.encode([body["query"]], normalize_embeddings=True)
        scores, labels = index.search(np.asarray(query, dtype="float32"), int(body.get("k", 10)))
        hits = [
            {"id": str(i), "score": float(s), "text": corpus[i]}
            for s, i in zip(scores[0], labels[0], strict=True)
        ]
        return {"results": [{"query": body["query"], "hits": hits}]}

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def run_baseline(port: int, corpus_file: Path, threads: int) -> None:
    import torch
    import uvicorn

    torch.set_num_threads(threads)
    corpus = [row["description"] for row in read_rows(corpus_file)]
    uvicorn.run(baseline_app(corpus), host="127.0.0.1", port=port, log_level="warning", access_log=False)


# ---------------------------------------------------------------------------------------------- load generator


def read_rows(path: Path, limit: int | None = None) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return rows[:limit] if limit else rows


def load(port: int, path: str, bodies: list[bytes], concurrency: int, time_limit: float) -> dict[str, Any]:
    """Send ``bodies`` (each once) from ``concurrency`` threads; latency per request, errors counted."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    position = 0
    deadline = time.monotonic() + time_limit

    def client() -> None:
        nonlocal position, errors
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while time.monotonic() < deadline:
            with lock:
                if position >= len(bodies):
                    break
                body = bodies[position]
                position += 1
            started = time.perf_counter()
            try:
                connection.request("POST", path, body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                response.read()
                ok = response.status == 200
            except OSError:
                ok = False
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            elapsed = time.perf_counter() - started
            with lock:
                if ok:
                    latencies.append(elapsed)
                else:
                    errors += 1
        connection.close()

    started = time.perf_counter()
    workers = [threading.Thread(target=client) for _ in range(concurrency)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    wall = time.perf_counter() - started
    latencies.sort()
    quantile = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    return {
        "requests": len(latencies),
        "errors": errors,
        "seconds": round(wall, 2),
        "requests_per_s": round(len(latencies) / wall, 1),
        "p50_ms": round(quantile(0.50), 1) if latencies else None,
        "p99_ms": round(quantile(0.99), 1) if latencies else None,
        "mean_ms": round(statistics.fmean(latencies) * 1000, 1) if latencies else None,
        "time_limited": len(latencies) + errors < len(bodies),
    }


def wait_up(port: int, process: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server on {port} exited with {process.returncode}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"server on {port} not up after {timeout} s")


def build_index(corpus_file: Path, output: Path, threads: int) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "textsiamese.cli", "index", "build", "--corpus", str(corpus_file)]
    command += ["--text-column", "description", "--kind", "flat", "--output", str(output), "--no-progress"]
    subprocess.run(command, check=True, env={**env, "OMP_NUM_THREADS": str(threads)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=320, help="requests per cell (default 320)")
    parser.add_argument("--time-limit", type=float, default=45.0, help="seconds per cell at most")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in each server (default 1)")
    parser.add_argument("--corpus-rows", type=int, default=500, help="AG News rows in the index")
    parser.add_argument("--output", default=None, help="JSON report (default benchmarks/results/serve.json)")
    parser.add_argument(
        "--openai-only",
        action="store_true",
        help="only /embed vs /v1/embeddings at 32 clients on textsiamese serve (serve-openai.json)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="--openai-only: alternating rounds")
    parser.add_argument("--work", default=str(REPO / "out" / "bench-serve"), help="scratch folder")
    parser.add_argument("--baseline-server", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--corpus-file", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_server is not None:
        run_baseline(args.baseline_server, Path(args.corpus_file), args.threads)
        return

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = read_rows(DATA)
    corpus_file = work / "corpus.csv"
    with open(corpus_file, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "label", "title", "description"])
        writer.writeheader()
        for i, row in enumerate(rows[: args.corpus_rows]):
            writer.writerow({"id": f"r{i}", **row})
    index_dir = work / "corpus.index"
    if not (index_dir / "manifest.json").exists():
        build_index(corpus_file, index_dir, args.threads)
    titles = [row["title"] for row in rows[args.corpus_rows :]]
    need = args.requests
    titles = (titles * (need // max(1, len(titles)) + 1))[:need]
    bodies = {
        "/embed": [json.dumps({"texts": [t]}).encode() for t in titles],
        "/search": [json.dumps({"query": t, "k": 10}).encode() for t in titles],
        OPENAI_PATH: [json.dumps({"model": MODEL_NAME, "input": t}).encode() for t in titles],
    }
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    ports = {"textsiamese serve": 18431, "fastapi + sentence-transformers": 18432}
    ours = [sys.executable, "-m", "textsiamese.cli", "serve", "--index", f"news={index_dir}"]
    ours += [
        "--port",
        str(ports["textsiamese serve"]),
        "--threads",
        str(args.threads),
        "--log-level",
        "warning",
        "--model-name",
        MODEL_NAME,
    ]
    theirs = [sys.executable, __file__, "--baseline-server", str(ports["fastapi + sentence-transformers"])]
    theirs += ["--corpus-file", str(corpus_file), "--threads", str(args.threads)]
    if args.openai_only:
        del ports["fastapi + sentence-transformers"]
    commands = {"textsiamese serve": ours, "fastapi + sentence-transformers": theirs}
    processes = {name: subprocess.Popen(commands[name], env=env, stderr=subprocess.DEVNULL) for name in ports}
    cells: list[dict[str, Any]] = []

    def measure(name: str, path: str, concurrency: int, count: int, **extra: Any) -> None:
        figures = load(ports[name], path, bodies[path][:count], concurrency, args.time_limit)
        cell = {"server": name, "endpoint": path, "concurrency": concurrency, **extra, **figures}
        cells.append(cell)
        print(json.dumps(cell), flush=True)

    try:
        for name, process in processes.items():
            wait_up(ports[name], process)
        for name in ports:  # warm-up: first requests pay for lazy initialisation
            for path in ("/embed", "/search") + ((OPENAI_PATH,) if name == "textsiamese serve" else ()):
                load(ports[name], path, bodies[path][:16], 4, 60)
        if args.openai_only:
            for round_ in range(args.rounds):  # alternate which goes first: a load change hits both alike
                pair = ("/embed", OPENAI_PATH) if round_ % 2 == 0 else (OPENAI_PATH, "/embed")
                for path in pair:
                    measure("textsiamese serve", path, OPENAI_CONCURRENCY, need, round=round_)
        else:
            for concurrency in CONCURRENCY:
                for path in ("/embed", OPENAI_PATH, "/search"):
                    for name in ports:
                        if path == OPENAI_PATH and (name != "textsiamese serve" or concurrency != 32):
                            continue
                        measure(name, path, concurrency, need if concurrency > 1 else max(40, need // 4))
    finally:
        for process in processes.values():
            process.terminate()
            process.wait(60)
    report = {
        "benchmark": "bench_serve",
        "machine": f"{os.cpu_count()}-core CPU, {platform.processor() or platform.machine()}",
        "load_average_at_end": list(os.getloadavg()),
        "python": platform.python_version(),
        "torch_threads_per_server": args.threads,
        "corpus_rows": args.corpus_rows,
        "requests_per_cell": need,
        "time_limit_s": args.time_limit,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cells": cells,
    }
    report["openai_vs_embed"] = openai_ratio(cells)
    default = "serve-openai.json" if args.openai_only else "serve.json"
    output = Path(args.output or REPO / "benchmarks" / "results" / default)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print_table(cells)
    print(f"/v1/embeddings vs /embed at {OPENAI_CONCURRENCY} clients: {report['openai_vs_embed']}")


def openai_ratio(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """Requests/s of /v1/embeddings over /embed at 32 clients on textsiamese serve (all their cells summed:
    total requests over total seconds), with each endpoint's median p50."""
    ours = [c for c in cells if c["server"] == "textsiamese serve" and c["concurrency"] == OPENAI_CONCURRENCY]
    out: dict[str, Any] = {}
    for path in ("/embed", OPENAI_PATH):
        mine = [c for c in ours if c["endpoint"] == path]
        seconds = sum(c["seconds"] for c in mine)
        out[path] = {
            "requests_per_s": round(sum(c["requests"] for c in mine) / seconds, 1) if seconds else None,
            "median_p50_ms": statistics.median(c["p50_ms"] for c in mine) if mine else None,
        }
    embed, openai = out["/embed"]["requests_per_s"], out[OPENAI_PATH]["requests_per_s"]
    out["ratio"] = round(openai / embed, 3) if embed and openai else None
    return out


def print_table(cells: list[dict[str, Any]]) -> None:
    print("| endpoint | concurrency | server | requests/s | p50 ms | p99 ms |")
    print("| --- | ---: | --- | ---: | ---: | ---: |")
    for cell in cells:
        print(
            f"| {cell['endpoint']} | {cell['concurrency']} | {cell['server']} | {cell['requests_per_s']} "
            f"| {cell['p50_ms']} | {cell['p99_ms']} |"
        )


if __name__ == "__main__":
    main()
