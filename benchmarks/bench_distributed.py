"""Encode throughput past one process: ``textsiamese encode`` against ``encode --engine ray`` (1 and 2 workers).

Usage: python benchmarks/bench_distributed.py [--sizes 10000,30000] [--configs single,single-1t,ray-1,ray-2]
       [--layers N] [--out benchmarks/results/distributed.json]

The corpus is synthetic from the shared data: the sentences of STS-B train, SICK and MRPC and the AG News
titles (short texts, 10-20 tokens), cycled to each size and written as one ``.txt`` file (outside the
repository). Every (size, configuration) runs as a fresh ``python -m textsiamese encode`` process, sizes
in turn and configurations interleaved within a size so that machine load hits them alike:

- ``single``: ``encode --input corpus.txt --output v.npy`` (one process, torch's default threads);
- ``single-1t``: the same with ``--threads 1`` (on an oversubscribed machine 1 thread can beat 2);
- ``ray-1``: ``encode --engine ray --workers 1`` (a local Ray, one actor with all the CPUs);
- ``ray-2``: ``encode --engine ray --workers 2`` (two actors sharing the CPUs out, 1 thread each on 2 cores).

``--layers N`` encodes with a copy of the default model cut to its first N transformer layers (built in the
temporary folder, same tokenizer and pooling). It is for the largest sizes: the full six-layer model would
need most of an hour per configuration at 1M texts on 2 cores, and what a size shows is how the engine
scales (time per text flat, memory bounded), which a cheaper encoder shows sooner. The figures say which
model ran.

Each run's wall time includes start-up (imports, model load, Ray and its actors), as a user waits for it;
texts/s is size / wall and time per text its inverse, so that flat time per text across sizes shows the
job scales linearly once started. Peak RSS is sampled every 200 ms for the encoding processes: the
``encode`` process itself, or each Ray actor (``MapBatches(ShardEncoder)``) and the driver. Needs the
``ray`` and ``bench`` extras (psutil).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from textsiamese.data import read_pairs  # noqa: E402

DATA = ROOT / ".." / "shared" / "data"
CONFIGS = ("single-1t", "ray-2", "ray-1", "single")  # the slowest last: a run cut short keeps the rest


def sentence_pool() -> list[str]:
    """Unique short sentences from the shared corpora (about 40k)."""
    texts: dict[str, None] = {}
    for path, fmt in (
        (DATA / "stsb" / "sts-train.csv", "stsb"),
        (DATA / "sick" / "SICK-train-trial.txt", "sick"),
        (DATA / "mrpc" / "msr_paraphrase_train.txt", "mrpc"),
    ):
        pairs = read_pairs(path, fmt)
        texts.update(dict.fromkeys(t.strip() for t in (*pairs.sentence1, *pairs.sentence2)))
    agnews = read_pairs(DATA / "agnews" / "agnews-title-description-train.csv", "agnews")
    texts.update(dict.fromkeys(t.strip() for t in agnews.sentence1))
    return [t.replace("\n", " ") for t in texts if t]


def write_corpus(path: Path, size: int, pool: list[str]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(size):
            handle.write(pool[i % len(pool)] + "\n")


class PeakRSS:
    """Peak RSS per process of the encoding job: the root process and every descendant whose command
    line names one of ``names`` (sampled every 200 ms). Only descendants: a local Ray's raylet is the
    driver's child and the actors are its children, and other jobs' Ray actors must not count."""

    def __init__(self, root: int, names: tuple[str, ...]) -> None:
        self.root, self.names = root, names
        self.peaks: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _label(self, process: psutil.Process) -> str | None:
        if process.pid == self.root:
            return "driver"
        try:
            cmdline = " ".join(process.cmdline())
        except psutil.Error:
            return None
        for name in self.names:
            if name in cmdline:
                return f"{name}#{process.pid}"
        return None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                root = psutil.Process(self.root)
                candidates = [root, *root.children(recursive=True)]
            except psutil.Error:
                candidates = []
            for process in candidates:
                label = self._label(process)
                if label is None:
                    continue
                try:
                    rss = process.memory_info().rss
                except psutil.Error:
                    continue
                self.peaks[label] = max(self.peaks.get(label, 0), rss)
            self._stop.wait(0.2)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def cut_model(layers: int, directory: Path) -> Path:
    """A copy of the default model with only its first ``layers`` transformer layers, saved to ``directory``
    as a plain transformers directory (mean pooling, as the default)."""
    from transformers import AutoModel, AutoTokenizer

    from textsiamese.model.loading import default_model_path

    source = default_model_path()
    encoder = AutoModel.from_pretrained(str(source), num_hidden_layers=layers)
    encoder.save_pretrained(str(directory))
    AutoTokenizer.from_pretrained(str(source)).save_pretrained(str(directory))
    return directory


def run_one(config: str, corpus: Path, work: Path, size: int, model: Path | None = None) -> dict[str, Any]:
    command = [sys.executable, "-m", "textsiamese", "encode", "--input", str(corpus), "--no-progress"]
    if model is not None:
        command += ["--model", str(model)]
    if config.startswith("single"):
        command += ["--output", str(work / f"{config}-{size}.npy")]
        if config == "single-1t":
            command += ["--threads", "1"]
    else:
        workers = config.split("-")[1]
        command += ["--engine", "ray", "--workers", workers, "--output", str(work / f"{config}-{size}")]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    with PeakRSS(process.pid, ("MapBatches(ShardEncoder)",)) as rss:
        _, err = process.communicate()
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"{config} at {size}: exit {process.returncode}\n{err[-2000:]}")
    # every actor process seen (Ray may start one more than --workers and leave it idle, or restart one)
    workers_rss = [v for k, v in rss.peaks.items() if k != "driver"]
    return {
        "config": config,
        "size": size,
        "wall_s": round(wall, 2),
        "texts_per_s": round(size / wall, 1),
        "ms_per_text": round(1000 * wall / size, 3),
        "peak_rss_mib_driver": round(rss.peaks.get("driver", 0) / 2**20),
        "peak_rss_mib_per_worker": [round(v / 2**20) for v in workers_rss],
        "load_average_1min_before": round(load_before, 2),
    }


def machine() -> dict[str, Any]:
    import ray
    import torch

    cpu = platform.processor() or platform.machine()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    flags = Path("/proc/cpuinfo").read_text()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "avx512_bf16": "avx512_bf16" in flags,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "torch": torch.__version__,
        "ray": ray.__version__,
        "python": platform.python_version(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,30000")
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--layers", type=int, default=None, help="encode with the first N layers only")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "distributed.json"))
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    configs = args.configs.split(",")
    pool = sentence_pool()
    results: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "pool_sentences": len(pool),
        "model": "all-MiniLM-L6-v2"
        + (f", cut to its first {args.layers} of 6 layers" if args.layers else " (the default, 6 layers)"),
        "runs": [],
    }
    out = Path(args.out)
    with tempfile.TemporaryDirectory(prefix="bench-distributed-") as tmp:
        work = Path(tmp)
        model = cut_model(args.layers, work / "model") if args.layers else None
        for size in sizes:
            corpus = work / f"corpus-{size}.txt"
            write_corpus(corpus, size, pool)
            for config in configs:
                run = run_one(config, corpus, work, size, model)
                print(json.dumps(run), flush=True)
                results["runs"].append(run)
                out.write_text(
                    json.dumps(results, indent=2) + "\n"
                )  # after every run: a long job keeps its figures
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
