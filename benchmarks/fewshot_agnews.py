"""Few-shot AG News: nearest reference, nearest centroid, fine-tuned textsiamese and SetFit, side by side.

A fixed test part (``--test-per-class`` texts per class, drawn once with seed 12345) is held out of the shared
AG News train file; for each seed, k references per class are drawn from the rest (the pool) and every test
text is classified by:

* ``reference`` / ``centroid``: the untouched default model (``OneShotClassifier``, no training);
* ``tuned_centroid`` / ``tuned_head``: ``textsiamese.decisions.fewshot.fine_tune`` on the references, then the
  class centroid, or a logistic head fitted on the reference embeddings (C fixed at ``TUNED_HEAD_C``, chosen on the dev split);
* ``setfit``: PyPI ``setfit`` with the same base model (all-MiniLM-L6-v2), references and seed, its default
  ``TrainingArguments`` (only ``report_to="none"`` and ``output_dir`` in a temporary folder, so nothing is
  written into the checkout).

``--split dev`` replaces the test part by 400 other pool texts and draws references with seeds 100+: the
selection data on which fine-tuning settings are chosen (never the test part). ``--tune '{"epochs": 5}'``
overrides ``FineTuneConfig`` fields. ``--memory`` instead measures peak RSS of fine-tuning (a few steps, in a
fresh process per size) at 8 → 64 → 512 references per class.

Texts are title and description joined by a space. Results (accuracy per seed, training seconds per method)
are written, one seed at a time, to benchmarks/results/fewshot-agnews-k{K}[-dev].json.

Usage: python benchmarks/fewshot_agnews.py --ks 8,64 --seeds 5 [--methods base,tuned,setfit]
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import textsiamese
from textsiamese.decisions.fewshot import HEAD_CS, TUNED_HEAD_C, FineTuneConfig, fine_tune, fit_head

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data" / "agnews" / "agnews-title-description-train.csv"
RESULTS = ROOT / "benchmarks" / "results"


def read(path: Path) -> tuple[list[str], np.ndarray]:
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [f"{r['title']} {r['description']}" for r in rows], np.asarray([r["label"] for r in rows])


def stratified(rng: np.random.Generator, labels: np.ndarray, among: np.ndarray, k: int) -> np.ndarray:
    classes = sorted(set(labels.tolist()))
    return np.concatenate([rng.choice(among[labels[among] == c], size=k, replace=False) for c in classes])


def split(labels: np.ndarray, test_per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """The fixed test part and the pool the references are drawn from."""
    everything = np.arange(len(labels))
    test = np.sort(stratified(np.random.default_rng(12345), labels, everything, test_per_class))
    return test, np.setdiff1d(everything, test)


def centroid_accuracy(
    ref_vectors: np.ndarray, ref_labels: np.ndarray, vectors: np.ndarray, gold: np.ndarray
) -> float:
    unit = ref_vectors / np.linalg.norm(ref_vectors, axis=1, keepdims=True)
    classes = sorted(set(ref_labels.tolist()))
    centroids = np.stack([unit[ref_labels == c].mean(axis=0) for c in classes])
    predicted = np.asarray(classes)[(vectors @ centroids.T).argmax(axis=1)]
    return float(np.mean(predicted == gold))


def reference_accuracy(
    ref_vectors: np.ndarray, ref_labels: np.ndarray, vectors: np.ndarray, gold: np.ndarray
) -> float:
    unit = ref_vectors / np.linalg.norm(ref_vectors, axis=1, keepdims=True)
    return float(np.mean(ref_labels[(vectors @ unit.T).argmax(axis=1)] == gold))


def encode(model: Any, texts: list[str]) -> np.ndarray:
    vectors = model.encode(texts, batch_size=64)
    return np.asarray(vectors / np.linalg.norm(vectors, axis=1, keepdims=True))


def run_setfit(
    texts: list[str], labels: np.ndarray, test_texts: list[str], seed: int
) -> tuple[np.ndarray, float]:
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    model = SetFitModel.from_pretrained(str(textsiamese.default_model_path()))
    scratch = tempfile.mkdtemp(prefix="setfit-")  # its checkpoints, never in the checkout
    trainer = Trainer(
        model=model,
        args=TrainingArguments(seed=seed, report_to="none", output_dir=scratch),
        train_dataset=Dataset.from_dict({"text": texts, "label": labels.tolist()}),
    )
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    shutil.rmtree(scratch, ignore_errors=True)
    return np.asarray(model.predict(test_texts, batch_size=64)), seconds


def memory(sizes: list[int], args: argparse.Namespace) -> None:
    """Peak RSS of enrol + a few fine-tuning steps at each size, each in a fresh process."""
    rows = {}
    for k in sizes:
        child = subprocess.run(
            [sys.executable, __file__, "--memory-child", str(k), "--tune", args.tune],
            capture_output=True,
            text=True,
            check=True,
        )
        rows[str(k)] = json.loads(child.stdout.strip().splitlines()[-1])
        print(k, rows[str(k)], flush=True)
    (RESULTS / "fewshot-agnews-memory.json").write_text(json.dumps(rows, indent=2) + "\n")


def memory_child(k: int, tune: dict[str, Any]) -> None:
    texts, labels = read(DATA)
    _, pool = split(labels, 300)
    chosen = stratified(np.random.default_rng(0), labels, pool, k)
    model = textsiamese.load(device="cpu")
    config = FineTuneConfig(**{**tune, "epochs": 1, "max_steps": 3})
    start = time.perf_counter()
    _, report = fine_tune(model, labels[chosen].tolist(), [texts[i] for i in chosen], config)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "references": len(chosen),
                "steps": report.steps,
                "seconds": round(time.perf_counter() - start, 1),
                "peak_rss_mb": round(peak),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ks", default="8,64")
    parser.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated seeds")
    parser.add_argument("--methods", default="base,tuned,setfit")
    parser.add_argument("--split", default="test", choices=["test", "dev"])
    parser.add_argument("--test-per-class", type=int, default=300)
    parser.add_argument("--tune", default="{}", help="JSON FineTuneConfig overrides")
    parser.add_argument("--tag", default="", help="suffix of the result file")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memory", default=None, help="e.g. 8,64,512: measure memory instead")
    parser.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tune = json.loads(args.tune)
    if args.memory_child is not None:
        memory_child(args.memory_child, tune)
        return
    if args.memory:
        memory([int(k) for k in args.memory.split(",")], args)
        return

    texts, labels = read(DATA)
    test, pool = split(labels, args.test_per_class)
    methods = args.methods.split(",")
    model = textsiamese.load(device="cpu")
    base_cache: dict[int, np.ndarray] = {}
    for k in (int(v) for v in args.ks.split(",")):
        suffix = f"-k{k}{'-dev' if args.split == 'dev' else ''}{args.tag}"
        out = RESULTS / f"fewshot-agnews{suffix}.json"
        result: dict[str, Any] = (
            json.loads(out.read_text()) if out.is_file() else {"k": k, "split": args.split, "runs": {}}
        )
        result.update(tune=tune, methods=methods, test_size=None)
        for seed in (int(v) for v in args.seeds.split(",")):
            draw = seed + 100 if args.split == "dev" else seed
            rng = np.random.default_rng(draw)
            chosen = stratified(rng, labels, pool, k)
            if args.split == "dev":
                rest = np.setdiff1d(pool, chosen)
                evaluate = np.sort(rng.choice(rest, size=400, replace=False))
            else:
                evaluate = test
            result["test_size"] = len(evaluate)
            ref_texts, ref_labels = [texts[i] for i in chosen], labels[chosen]
            eval_texts, gold = [texts[i] for i in evaluate], labels[evaluate]
            run: dict[str, Any] = result["runs"].get(str(seed), {})
            if "base" in methods:
                for i in set(chosen.tolist()) | set(evaluate.tolist()):
                    if i not in base_cache:
                        base_cache[i] = np.zeros(0)
                missing = [i for i, v in base_cache.items() if v.size == 0]
                if missing:
                    for i, v in zip(missing, encode(model, [texts[j] for j in missing]), strict=True):
                        base_cache[i] = v
                refs = np.stack([base_cache[i] for i in chosen])
                vectors = np.stack([base_cache[i] for i in evaluate])
                run["reference"] = reference_accuracy(refs, ref_labels, vectors, gold)
                run["centroid"] = centroid_accuracy(refs, ref_labels, vectors, gold)
            if "tuned" in methods:
                config = FineTuneConfig(**{**tune, "seed": seed})
                tuned, report = fine_tune(model, ref_labels.tolist(), ref_texts, config)
                refs, vectors = encode(tuned, ref_texts), encode(tuned, eval_texts)
                run["tuned_centroid"] = centroid_accuracy(refs, ref_labels, vectors, gold)
                start = time.perf_counter()
                head = fit_head(ref_labels.tolist(), refs, cs=(TUNED_HEAD_C,), seed=seed)
                run["tuned_head"] = float(
                    np.mean(np.asarray(head.classes)[head.probabilities(vectors).argmax(axis=1)] == gold)
                )
                run["tuned_seconds"] = round(report.seconds + time.perf_counter() - start, 1)
                run["tuned_head_c"] = head.c
                run["tuned_head_by_c"] = {  # each C of the grid fixed, fitted on all the references
                    str(c): float(
                        np.mean(
                            np.asarray(fixed.classes)[fixed.probabilities(vectors).argmax(axis=1)] == gold
                        )
                    )
                    for c in HEAD_CS
                    for fixed in [fit_head(ref_labels.tolist(), refs, cs=(c,), seed=seed)]
                }
                run["tuned_losses"] = [round(v, 4) for v in report.epoch_losses]
            if "setfit" in methods:
                predicted, seconds = run_setfit(ref_texts, ref_labels, eval_texts, seed)
                run["setfit"] = float(np.mean(predicted.astype(str) == gold))
                run["setfit_seconds"] = round(seconds, 1)
            result["runs"][str(seed)] = run
            print(f"k={k} seed={seed}", json.dumps(run), flush=True)
            out.write_text(json.dumps(result, indent=2) + "\n")
        summary = {}
        for name in ("reference", "centroid", "tuned_centroid", "tuned_head", "setfit"):
            values = [r[name] for r in result["runs"].values() if name in r]
            if values:
                summary[name] = {
                    "mean": float(np.mean(values)),
                    "std": float(np.std(values)),
                    "n": len(values),
                }
        result["summary"] = summary
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"k={k}", json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
