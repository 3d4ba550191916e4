"""Encode throughput: textsiamese against sentence-transformers, same model, texts, device, one process.

Usage: python benchmarks/bench_encode.py [--texts 3000] [--repeats 3] [--quality] [--scale 10000,100000]

Runs are interleaved (sentence-transformers, then each textsiamese path, then again, ...) so both see the
same machine load; each figure is the median over repeats and each ratio the median of the per-round
ratios to sentence-transformers at its default batch of 32. Peak host RSS is sampled during every run.
``--quality`` adds STS-B dev Spearman per path; ``--scale`` times the encode pipeline at the given corpus
sizes (AG News texts repeated) to check that time per sentence stays flat. Writes
benchmarks/results/encode.json. Needs the bench extra (sentence-transformers, psutil) and, on CPU, the onnx
extra for the ONNX Runtime paths (or ``--no-onnx``).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import itertools
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
from textsiamese.inference.precision import (  # noqa: E402
    cpu_has_native_bf16,
    cpu_has_vnni,
    default_batch_size,
    resolve_precision,
)

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
        self.start = self.peak = self.process.memory_info().rss
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


def timed(run: Callable[[], Any]) -> tuple[float, int, int, Any]:
    """Seconds, peak RSS, peak RSS above the RSS at the start (bytes), and result of ``run()``."""
    with PeakRSS() as memory:
        start = time.perf_counter()
        result = run()
        seconds = time.perf_counter() - start
    return seconds, memory.peak, memory.peak - memory.start, result


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
    import importlib.metadata

    import sentence_transformers
    import transformers

    try:
        onnxruntime_version: str | None = importlib.metadata.version("onnxruntime")
    except importlib.metadata.PackageNotFoundError:
        onnxruntime_version = None
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "native_bf16": cpu_has_native_bf16(),  # what precision="auto" decides by on a CPU
        "vnni": cpu_has_vnni(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average_start": os.getloadavg(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "sentence_transformers": sentence_transformers.__version__,
        "onnxruntime": onnxruntime_version,
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
    parser.add_argument("--slices", type=int, default=10, help="interleaving grain (see throughput())")
    parser.add_argument(
        "--best-batch",
        type=int,
        default=16,
        help="textsiamese's own batch size (16: fastest on the 2-core EPYC at 1 thread, see docs)",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads for every path (default: torch's)"
    )
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
    parser.add_argument("--scale-repeats", type=int, default=2)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument(
        "--no-onnx",
        dest="onnx",
        action="store_false",
        help="leave out the ONNX Runtime backend (timed on CPU by default; needs the onnx extra)",
    )
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "encode.json"))
    args = parser.parse_args()

    from sentence_transformers import SentenceTransformer

    if args.threads:
        torch.set_num_threads(args.threads)
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
    }
    if not cpu or cpu_has_native_bf16():  # emulated bf16 is several times slower than fp32: not timed
        paths[f"textsiamese bf16 autocast, batch {best}"] = lambda t: ours.encode(
            t, batch_size=best, precision="bf16"
        )
    if cpu:
        paths[f"textsiamese int8 dynamic, batch {best}"] = lambda t: ours.encode(
            t, batch_size=best, precision="int8"
        )
    if cpu and args.onnx and importlib.util.find_spec("onnxruntime") is None:
        print("onnxruntime not installed (the onnx extra): ONNX Runtime paths left out", flush=True)
    elif cpu and args.onnx:
        for precision in ("fp32", "int8"):
            paths[f"textsiamese ONNX Runtime {precision}, batch {best}"] = lambda t, p=precision: ours.encode(
                t, batch_size=best, precision=p, backend="onnx"
            )
    # What a plain ``model.encode(texts)`` does: precision "auto" (resolved per CPU), the device's default batch.
    auto = resolve_precision("auto", device)
    paths[f"textsiamese default: auto ({auto}), batch {default_batch_size(device)}"] = lambda t: ours.encode(
        t
    )
    # Warm-up (untimed): build the int8 copy and the ONNX Runtime sessions, create kernels for a spread of
    # batch shapes.
    if not args.skip_throughput:
        for run in paths.values():
            run(texts[::12])

    result: dict[str, Any] = {
        "machine": machine(),
        "texts": len(texts),
        "repeats": args.repeats,
        "slices": args.slices,
    }
    if not args.skip_throughput:
        result["throughput"] = throughput(paths, texts, args.repeats, args.slices)
        print_table(result["throughput"])

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


def throughput(
    paths: dict[str, Callable[[list[str]], np.ndarray]], texts: list[str], repeats: int, slices: int
) -> list[dict[str, Any]]:
    """Interleave at a fine grain: the texts are cut into ``slices`` and every path encodes each slice in
    turn (the order rotating), so a change in machine load hits all paths alike. Each path's time is the
    sum over slices; the ratio to the first path is the median of the per-slice ratios."""
    names = list(paths)
    # Ordered by length once, then cut into consecutive slices: each slice batches as it would inside the
    # whole set (every path sorts by length itself), so a large batch is not penalised by short slices.
    texts = sorted(texts, key=len, reverse=True)
    bounds = np.linspace(0, len(texts), slices + 1).astype(int)
    totals: dict[str, list[float]] = {name: [] for name in names}
    ratios: dict[str, list[float]] = {name: [] for name in names}
    peaks: dict[str, int] = dict.fromkeys(names, 0)
    growth: dict[str, int] = dict.fromkeys(names, 0)
    step = 0
    for repeat in range(repeats):
        spent = dict.fromkeys(names, 0.0)
        for a, b in itertools.pairwise(bounds):
            part = texts[a:b]
            order = names[step % len(names) :] + names[: step % len(names)]
            step += 1
            slice_seconds = {}
            for name in order:
                seconds, peak, grown, _ = timed(lambda name=name, part=part: paths[name](part))
                slice_seconds[name] = seconds
                spent[name] += seconds
                peaks[name] = max(peaks[name], peak)
                growth[name] = max(growth[name], grown)
            for name in names:
                ratios[name].append(slice_seconds[names[0]] / slice_seconds[name])
        for name in names:
            totals[name].append(spent[name])
            print(f"repeat {repeat + 1}: {name}: {len(texts) / spent[name]:.1f}/s", flush=True)
    return [
        {
            "path": name,
            "sentences_per_s": round(len(texts) / statistics.median(totals[name]), 1),
            "sentences_per_s_per_repeat": [round(len(texts) / t, 1) for t in totals[name]],
            "ratio_vs_st_default": round(statistics.median(ratios[name]), 2),
            "ratio_of_total_time": round(
                statistics.median(t0 / t for t0, t in zip(totals[names[0]], totals[name], strict=True)), 2
            ),
            "peak_rss_mib": round(peaks[name] / 2**20),
            "peak_rss_growth_mib": round(growth[name] / 2**20),
        }
        for name in names
    ]


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
    measured: dict[int, list[tuple[float, int, int]]] = {size: [] for size in sizes}
    for repeat in range(
        args.scale_repeats
    ):  # sizes alternate (small, large, large, small, ...) against drift
        for size in sizes if repeat % 2 == 0 else sizes[::-1]:
            texts = agnews_texts(size)
            rss_before = psutil.Process().memory_info().rss
            s, peak, _, _ = timed(
                lambda t=texts: model.encode(t, batch_size=args.best_batch, precision=precision)
            )
            measured[size].append((s, peak, peak - rss_before))
            print(f"scale {size}: {1000 * s / size:.3f} ms/sentence", flush=True)
            del texts
    rows = []
    for size in sizes:
        seconds = statistics.median(m[0] for m in measured[size])
        row = {
            "model": args.scale_model,
            "precision": precision,
            "batch_size": args.best_batch,
            "sentences": size,
            "seconds_median": round(seconds, 2),
            "ms_per_sentence": round(1000 * seconds / size, 4),
            "ms_per_sentence_each": [round(1000 * m[0] / size, 4) for m in measured[size]],
            "peak_rss_mib": round(max(m[1] for m in measured[size]) / 2**20),
            "rss_growth_mib": round(max(m[2] for m in measured[size]) / 2**20),
            "output_mib": round(size * model.dimension * 4 / 2**20),
        }
        print(row, flush=True)
        rows.append(row)
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    print()
    print(
        "| path | sentences/s | × ST default (median per slice) | × ST default (total time) "
        "| peak RSS (MiB) | RSS growth in a run (MiB) |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(
            f"| {row['path']} | {row['sentences_per_s']} | {row['ratio_vs_st_default']} "
            f"| {row['ratio_of_total_time']} | {row['peak_rss_mib']} | {row['peak_rss_growth_mib']} |"
        )


if __name__ == "__main__":
    main()
