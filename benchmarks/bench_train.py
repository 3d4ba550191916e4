"""Training throughput: textsiamese's Trainer against sentence-transformers' Trainer, one process.

Usage:
    python benchmarks/bench_train.py [--device cpu|cuda] [--batch-sizes 16,64] [--steps 30] [--skip 5]
                                     [--repeats 2] [--threads N] [--bf16] [--full [--full-epochs 4]]

Both sides fine-tune the packaged all-MiniLM-L6-v2 on STS-B train (5,749 pairs) with CoSENT (scale 20, on
cosine; sentence-transformers gets the gold scores divided by 5, as its docs do), AdamW at lr 2e-5 with
weight decay 0.01, the same linear warmup (10% of the steps) and decay, gradient clipping at 1.0, seed 42,
on the same device with the same torch thread count; ``--bf16`` turns on bf16 autocast on CUDA for both.
Each run takes ``skip + steps`` optimizer steps; pairs/s is ``steps * batch`` over the wall time from the
end of step ``skip`` to the end of the last step (the first ``skip`` steps are the warm-up; on CUDA the
device is synchronised at those two points only). Model loading, tokenization of textsiamese's training
set, and the final checkpoint and model writing fall outside that window. Each repeat runs every batch
size on both sides, sentence-transformers first in even repeats and textsiamese first in odd ones, so load
changes hit both; the ratio is the median of the per-repeat ratios. Peak host RSS (whole process, sampled
every 5 ms) and peak GPU memory (``torch.cuda.max_memory_allocated``) are taken per run.

``--full`` instead trains each batch size once per side for ``--full-epochs`` epochs (the stsb recipe's
4 by default; a GPU job) and reports STS-B dev Spearman of both saved models, each loaded with
``textsiamese.load`` and scored by ``textsiamese.evaluation.evaluate_sts``.

Writes benchmarks/results/train.json (``--output``) and prints a markdown table. Needs the bench extra
(sentence-transformers with its training dependencies ``datasets`` and ``accelerate``, psutil).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before any Hugging Face import: never reach a hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse
import gc
import json
import math
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import transformers
from bench_encode import DATA, ROOT, STSB_DEV, PeakRSS, machine  # also puts ROOT on sys.path

import textsiamese
from textsiamese.data import PairData, read_pairs
from textsiamese.evaluation import evaluate_sts
from textsiamese.losses import get_loss
from textsiamese.training import TrainConfig, Trainer

STSB_TRAIN = DATA / "stsb" / "sts-train.csv"
LR = 2e-5
WARMUP_RATIO = 0.1
WEIGHT_DECAY = 0.01  # textsiamese's default; sentence-transformers' Trainer defaults to 0
SEED = 42
ST = "sentence-transformers"


class StepClock:
    """Wall time at the end of optimizer step ``skip`` and of the last step (CUDA synchronised there)."""

    def __init__(self, skip: int, device: torch.device) -> None:
        self.skip = skip
        self.device = device
        self.start: float | None = None
        self.end: float | None = None

    def tick(self, step: int, total: int) -> None:
        if step not in (self.skip, total):
            return
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        if step == self.skip:
            self.start = time.perf_counter()
        if step == total:
            self.end = time.perf_counter()

    def seconds(self) -> float:
        if self.start is None or self.end is None:
            raise RuntimeError("the run ended before its timed window closed")
        return self.end - self.start


class ClockedTrainer(Trainer):
    """textsiamese's Trainer, unchanged but for a clock tick after each optimizer step."""

    clock: StepClock

    def _optimizer_step(self, step_loss: torch.Tensor) -> torch.Tensor:
        norm = super()._optimizer_step(step_loss)
        self.clock.tick(self.step + 1, self.total_steps)  # self.step counts this step after we return
        return norm


@dataclass
class Run:
    library: str
    batch_size: int
    repeat: int
    steps: int
    seconds: float
    pairs_per_s: float
    peak_rss_mib: int
    rss_growth_mib: int
    peak_gpu_mib: int | None
    spearman: float | None = None


def train_textsiamese(
    pairs: PairData, batch: int, total: int, clock: StepClock, bf16: bool, out: Path
) -> Path:
    """Train as ``textsiamese train`` would (no evaluator, no progress bar); returns the final model dir."""
    config = TrainConfig(
        max_steps=total,
        batch_size=batch,
        lr=LR,
        weight_decay=WEIGHT_DECAY,
        warmup_steps=int(WARMUP_RATIO * total),
        schedule="linear",
        seed=SEED,
        device=str(clock.device),
        bf16=bf16,
        progress=False,
    )
    trainer = ClockedTrainer(
        textsiamese.load(None, "cpu"), get_loss("cosent", scale=20.0), pairs, config, out
    )
    trainer.clock = clock
    try:
        trainer.train()
    finally:
        trainer.close()
    return out / "final"


def train_sentence_transformers(
    pairs: PairData, batch: int, total: int, clock: StepClock, bf16: bool, out: Path
) -> Path:
    """sentence-transformers' v3+ training API with its defaults (data collator, batch sampler, loader)."""
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from transformers import TrainerCallback

    try:  # sentence-transformers 6 moved the losses (the old path warns)
        from sentence_transformers.sentence_transformer.losses import CoSENTLoss
    except ImportError:
        from sentence_transformers.losses import CoSENTLoss

    class Tick(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            clock.tick(state.global_step, state.max_steps)

    assert pairs.scores is not None
    model = SentenceTransformer(
        str(textsiamese.default_model_path()), device=str(clock.device), local_files_only=True
    )
    dataset = Dataset.from_dict(
        {
            "sentence1": pairs.sentence1,
            "sentence2": pairs.sentence2,
            "score": [float(s) / 5.0 for s in pairs.scores],
        }
    )
    args = SentenceTransformerTrainingArguments(
        output_dir=str(out / "trainer"),
        max_steps=total,
        per_device_train_batch_size=batch,
        learning_rate=LR,
        weight_decay=WEIGHT_DECAY,
        warmup_steps=int(WARMUP_RATIO * total),
        lr_scheduler_type="linear",
        seed=SEED,
        bf16=bf16,
        use_cpu=clock.device.type == "cpu",
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
    )
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        loss=CoSENTLoss(model, scale=20.0),
        callbacks=[Tick()],
    )
    trainer.train()
    model.save(str(out / "final"))
    return out / "final"


TRAINERS: dict[str, Callable[[PairData, int, int, StepClock, bool, Path], Path]] = {
    ST: train_sentence_transformers,
    "textsiamese": train_textsiamese,
}


def measure(
    library: str,
    pairs: PairData,
    batch: int,
    steps: int,
    skip: int,
    device: torch.device,
    bf16: bool,
    repeat: int,
    dev: PairData | None = None,
) -> Run:
    """One training run of ``skip + steps`` steps in a temporary directory; with ``dev``, also score the
    saved model on it."""
    clock = StepClock(skip, device)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        with PeakRSS() as memory:
            final = TRAINERS[library](pairs, batch, skip + steps, clock, bf16, Path(tmp))
        peak_gpu = round(torch.cuda.max_memory_allocated(device) / 2**20) if device.type == "cuda" else None
        spearman = None
        if dev is not None:
            spearman = round(float(evaluate_sts(textsiamese.load(final, device), dev)["spearman"]), 4)
    seconds = clock.seconds()
    run = Run(
        library=library,
        batch_size=batch,
        repeat=repeat,
        steps=steps,
        seconds=round(seconds, 3),
        pairs_per_s=round(steps * batch / seconds, 1),
        peak_rss_mib=round(memory.peak / 2**20),
        rss_growth_mib=round((memory.peak - memory.start) / 2**20),
        peak_gpu_mib=peak_gpu,
        spearman=spearman,
    )
    print(f"repeat {repeat + 1}, batch {batch}: {library}: {run.pairs_per_s} pairs/s", flush=True)
    return run


def summarise(runs: list[Run]) -> list[dict[str, Any]]:
    """One row per (batch size, library): median pairs/s, median per-repeat ratio to sentence-transformers."""
    rows = []
    for batch in sorted({r.batch_size for r in runs}):
        base = {r.repeat: r.pairs_per_s for r in runs if r.batch_size == batch and r.library == ST}
        for library in TRAINERS:
            mine = [r for r in runs if r.batch_size == batch and r.library == library]
            rows.append(
                {
                    "batch_size": batch,
                    "library": library,
                    "pairs_per_s": round(statistics.median(r.pairs_per_s for r in mine), 1),
                    "pairs_per_s_per_repeat": [r.pairs_per_s for r in mine],
                    "ratio_vs_st": round(statistics.median(r.pairs_per_s / base[r.repeat] for r in mine), 2),
                    "peak_rss_mib": max(r.peak_rss_mib for r in mine),
                    "rss_growth_mib": max(r.rss_growth_mib for r in mine),
                    "peak_gpu_mib": None
                    if mine[0].peak_gpu_mib is None
                    else max(r.peak_gpu_mib or 0 for r in mine),
                    "stsb_dev_spearman": mine[0].spearman,
                }
            )
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    print()
    print(
        "| batch | library | pairs/s (per repeat) | × sentence-transformers | peak RSS MiB | RSS growth MiB "
        "| peak GPU MiB | STS-B dev Spearman |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        each = ", ".join(str(x) for x in row["pairs_per_s_per_repeat"])
        print(
            f"| {row['batch_size']} | {row['library']} | {row['pairs_per_s']} ({each}) | {row['ratio_vs_st']} "
            f"| {row['peak_rss_mib']} | {row['rss_growth_mib']} | {row['peak_gpu_mib'] or '-'} "
            f"| {row['stsb_dev_spearman'] or '-'} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu"
    )
    parser.add_argument("--batch-sizes", default="16,64")
    parser.add_argument("--steps", type=int, default=30, help="timed optimizer steps per run")
    parser.add_argument("--skip", type=int, default=5, help="warm-up steps before the timed ones")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast on CUDA for both sides")
    parser.add_argument("--full", action="store_true", help="train full epochs once per side, then score dev")
    parser.add_argument("--full-epochs", type=float, default=4.0, help="epochs for --full (the recipe's 4)")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "train.json"))
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    transformers.utils.logging.disable_progress_bar()  # weight loading and saving bars
    device = torch.device(args.device)
    bf16 = args.bf16 and device.type == "cuda"
    pairs = read_pairs(STSB_TRAIN, format="stsb")
    batches = [int(b) for b in args.batch_sizes.split(",")]
    info = machine()
    runs: list[Run] = []
    if args.full:
        dev = read_pairs(STSB_DEV, format="stsb")
        for batch in batches:
            total = math.ceil(args.full_epochs * math.ceil(len(pairs) / batch))
            if total <= args.skip:
                parser.error(f"--full-epochs {args.full_epochs} gives {total} steps, not more than --skip")
            for library in TRAINERS:
                runs.append(
                    measure(library, pairs, batch, total - args.skip, args.skip, device, bf16, 0, dev)
                )
    else:
        for repeat in range(args.repeats):
            order = list(TRAINERS) if repeat % 2 == 0 else list(TRAINERS)[::-1]
            for batch in batches:
                for library in order:
                    runs.append(measure(library, pairs, batch, args.steps, args.skip, device, bf16, repeat))
    rows = summarise(runs)
    info["load_average_end"] = os.getloadavg()
    result = {
        "machine": info,
        "settings": {
            "device": str(device),
            "bf16": bf16,
            "steps": None if args.full else args.steps,
            "skip": args.skip,
            "repeats": 1 if args.full else args.repeats,
            "full_epochs": args.full_epochs if args.full else None,
            "train_pairs": len(pairs),
            "lr": LR,
            "warmup_ratio": WARMUP_RATIO,
            "weight_decay": WEIGHT_DECAY,
            "loss": "CoSENT, scale 20",
        },
        "rows": rows,
        "runs": [asdict(r) for r in runs],
    }
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    print_table(rows)
    print(f"\nload average {info['load_average_start']} at the start, {info['load_average_end']} at the end")
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
