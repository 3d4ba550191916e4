"""Encode throughput: textsiamese against sentence-transformers, same model, texts, device, one process.

Usage: python benchmarks/bench_encode.py [--texts 3000] [--repeats 3] [--quality] [--scale 10000,100000]

Runs are interleaved (sentence-transformers, then each textsiamese path, then again, ...) so both see the
same machine load; each figure is the median over repeats and each ratio the median of the per-round
ratios to sentence-transformers at its default batch of 32. Peak host RSS is sampled during every run.
``--quality`` adds STS-B dev Spearman per path; ``--scale`` times the encode pipeline at the given corpus
sizes (AG News texts repeated) to check that time per sentence stays flat. Writes
benchmarks/results/encode.json. Needs the bench extra (sentence-transformers, psutil).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # time the checkout this script belongs to, not another installed copy

import textsiamese  # noqa: E402
from textsiamese.data import read_pairs  # noqa: E402

DATA = ROOT / ".." / "shared" / "data"
AGNEWS = DATA / "agnews" / "agnews-title-description-train.csv"
STSB_DEV = DATA / "stsb" / "sts-dev.csv"

warnings.filterwarnings("ignore", category=UserWarning)


class PeakRSS:
    """Peak resident memory of this process while the block runs (sampled every 5 ms)."""

    def __init__(self) -> None:
        self.process = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self) -> PeakRSS:
        self.peak = self.process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


def timed(run: Callable[[], Any]) -> tuple[float, int, Any]:
    """Seconds, peak RSS (bytes) and result of ``run()``."""
    with PeakRSS() as memory:
        start = time.perf_counter()
        result = run()
        seconds = time.perf_counter() - start
    return seconds, memory.peak, result


def agnews_texts(n: int) -> list[str]:
    """Titles and descriptions interleaved (title 1, description 1, title 2, ...), repeated up to ``n``."""
    pairs = read_pairs(AGNEWS, "agnews")
    pool = [text for pair in zip(pairs.sentence1, pairs.sentence2, strict=True) for text in pair]
    return [pool[i % len(pool)] for i in range(n)]


def machine() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    try:
        for line in subprocess.run(
            ["lscpu"], capture_output=True, text=True, check=False
        ).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    import sentence_transformers
    import transformers

    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average_start": os.getloadavg(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "sentence_transformers": sentence_transformers.__version__,
        "textsiamese": textsiamese.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "date_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--texts", type=int, default=3000, help="AG News texts to encode per run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--best-batch", type=int, default=128, help="textsiamese's larger batch size")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quality", action="store_true", help="also measure STS-B dev Spearman per path")
    parser.add_argument(
        "--scale", default="", help="corpus sizes for the cost-growth check, e.g. 10000,100000"
    )
    parser.add_argument(
        "--scale-model",
        choices=["default", "tiny"],
        default="default",
        help="model for --scale: the real one, or a 2-layer 32-wide random BERT with the real tokenizer "
        "(host-side pipeline only)",
    )
    parser.add_argument("--scale-precision", default="int8")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "encode.json"))
    args = parser.parse_args()

    from sentence_transformers import SentenceTransformer

    device = torch.device(args.device)
    path = str(textsiamese.default_model_path())
    ours = textsiamese.load(device=device)
    theirs = SentenceTransformer(path, device=str(device), local_files_only=True)
    texts = agnews_texts(args.texts)
    best = args.best_batch
    cpu = device.type == "cpu"
    paths: dict[str, Callable[[list[str]], np.ndarray]] = {
        "sentence-transformers fp32, batch 32 (default)": lambda t: theirs.encode(t, batch_size=32),
        "textsiamese fp32, batch 32": lambda t: ours.encode(t, batch_size=32, precision="fp32"),
        f"textsiamese fp32, batch {best}": lambda t: ours.encode(t, batch_size=best, precision="fp32"),
        f"textsiamese bf16 autocast, batch {best}": lambda t: ours.encode(
            t, batch_size=best, precision="bf16"
        ),
    }
    if cpu:
        paths[f"textsiamese int8 dynamic, batch {best}"] = lambda t: ours.encode(
            t, batch_size=best, precision="int8"
        )
    baseline = next(iter(paths))
    # Warm-up (untimed): build the int8 copy, create kernels for a spread of batch shapes.
    if not args.skip_throughput:
        for run in paths.values():
            run(texts[::6])

    result: dict[str, Any] = {"machine": machine(), "texts": len(texts), "repeats": args.repeats}
    if not args.skip_throughput:
        seconds: dict[str, list[float]] = {name: [] for name in paths}
        peaks: dict[str, int] = dict.fromkeys(paths, 0)
        ratios: dict[str, list[float]] = {name: [] for name in paths}
        for round_ in range(args.repeats):
            for name, run in paths.items():
                s, peak, _ = timed(lambda run=run: run(texts))  # type: ignore[misc]
                seconds[name].append(s)
                peaks[name] = max(peaks[name], peak)
                print(f"round {round_ + 1}: {name}: {len(texts) / s:.1f}/s", flush=True)
            for name in paths:
                ratios[name].append(seconds[baseline][-1] / seconds[name][-1])
        rows = []
        for name in paths:
            median = statistics.median(seconds[name])
            rows.append(
                {
                    "path": name,
                    "sentences_per_s": round(len(texts) / median, 1),
                    "ratio_vs_st_default": round(statistics.median(ratios[name]), 2),
                    "ratios_per_round": [round(r, 2) for r in ratios[name]],
                    "peak_rss_mib": round(peaks[name] / 2**20),
                }
            )
        result["throughput"] = rows
        print_table(rows)

    if args.quality:
        pairs = read_pairs(STSB_DEV, "stsb")
        both = pairs.sentence1 + pairs.sentence2
        n = len(pairs)
        from scipy.stats import spearmanr

        quality = {}
        reference = None
        for name, run in paths.items():
            vectors = np.asarray(run(both), dtype=np.float32)
            vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
            reference = vectors if reference is None else reference
            cosine = (vectors[:n] * vectors[n:]).sum(1)
            quality[name] = {
                "stsb_dev_spearman": round(float(spearmanr(cosine, pairs.scores).statistic), 4),
                "mean_cosine_to_st": round(float((vectors * reference).sum(1).mean()), 5),
            }
            print(f"{name}: {quality[name]}", flush=True)
        result["quality"] = quality

    if args.scale:
        result[f"scale_{args.scale_model}"] = scale(args, [int(s) for s in args.scale.split(",")], device)

    result["machine"]["load_average_end"] = os.getloadavg()
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(output.read_text()) if output.is_file() else {}
    if args.skip_throughput:
        # A quality / scale run keeps the throughput figures (and their machine record) of an earlier run.
        sections = [key for key in ("quality", "scale_tiny", "scale_default") if key in result]
        result = {
            **{key: result[key] for key in sections},
            f"machine_{'_'.join(sections)}": result["machine"],
        }
    previous.update(result)
    output.write_text(json.dumps(previous, indent=2) + "\n")
    print(f"wrote {output}")


def scale(args: argparse.Namespace, sizes: list[int], device: torch.device) -> list[dict[str, Any]]:
    """Time per sentence and peak RSS at each corpus size (AG News texts repeated; output in a fresh array)."""
    if args.scale_model == "tiny":
        from transformers import AutoTokenizer, BertConfig, BertModel

        from textsiamese import SiameseModel, TransformerTower

        torch.manual_seed(0)
        tokenizer = AutoTokenizer.from_pretrained(
            str(textsiamese.default_model_path()), local_files_only=True
        )
        config = BertConfig(
            vocab_size=tokenizer.vocab_size,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=256,
        )
        model = SiameseModel(TransformerTower(BertModel(config), tokenizer, max_length=256), normalize=True)
        precision = "fp32"
    else:
        model = textsiamese.load(device=device)
        precision = args.scale_precision
    model.encode(agnews_texts(256), batch_size=args.best_batch, precision=precision)
    rows = []
    for size in sizes:
        texts = agnews_texts(size)
        rss_before = psutil.Process().memory_info().rss
        s, peak, _ = timed(lambda t=texts: model.encode(t, batch_size=args.best_batch, precision=precision))
        row = {
            "model": args.scale_model,
            "precision": precision,
            "sentences": size,
            "seconds": round(s, 2),
            "ms_per_sentence": round(1000 * s / size, 4),
            "peak_rss_mib": round(peak / 2**20),
            "rss_growth_mib": round((peak - rss_before) / 2**20),
            "output_mib": round(size * model.dimension * 4 / 2**20),
        }
        print(row, flush=True)
        rows.append(row)
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    print()
    print("| path | sentences/s | × sentence-transformers default | peak RSS (MiB) |")
    print("| --- | --- | --- | --- |")
    for row in rows:
        print(
            f"| {row['path']} | {row['sentences_per_s']} | {row['ratio_vs_st_default']} "
            f"({', '.join(map(str, row['ratios_per_round']))}) | {row['peak_rss_mib']} |"
        )


if __name__ == "__main__":
    main()
