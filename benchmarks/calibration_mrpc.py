"""Calibration on MRPC: raw cosine vs Platt / isotonic calibration, threshold chosen on dev and applied.

The shared MRPC train file is split with a fixed seed into a dev part (calibration and threshold are fitted
there) and an evaluation part (where they are applied unchanged). Prints and writes
benchmarks/results/calibration_mrpc.json: ECE of the raw cosine (clipped to [0, 1]) and of each calibration,
the dev threshold and the accuracy / F1 it gives on the evaluation part, next to the threshold the evaluation
part itself would have chosen (what a test-set-fitted evaluator reports).

Usage: python benchmarks/calibration_mrpc.py [--dev-fraction 0.5] [--seed 0] [--model DIR]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import textsiamese
from textsiamese.data import read_pairs
from textsiamese.decisions.calibration import (
    apply_threshold,
    expected_calibration_error,
    fit_calibration,
    model_scores,
    probabilities,
    raw_probabilities,
)
from textsiamese.evaluation import classification_metrics

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mrpc" / "msr_paraphrase_train.txt"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--model", default=None)
    parser.add_argument("--dev-fraction", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    pairs = read_pairs(args.data, "mrpc")
    order = np.random.default_rng(args.seed).permutation(len(pairs))
    cut = int(len(pairs) * args.dev_fraction)
    dev, test = pairs.subset(order[:cut].tolist()), pairs.subset(order[cut:].tolist())
    model = textsiamese.load(args.model, device="cpu")
    start = time.perf_counter()
    dev_scores = model_scores(model, dev.sentence1, dev.sentence2, "cosine")
    test_scores = model_scores(model, test.sentence1, test.sentence2, "cosine")
    seconds = time.perf_counter() - start
    y_dev, y_test = np.asarray(dev.labels), np.asarray(test.labels)

    raw = raw_probabilities(test_scores, "cosine")
    assert raw is not None
    result: dict[str, object] = {
        "data": str(Path(args.data).name),
        "seed": args.seed,
        "dev_pairs": len(dev),
        "eval_pairs": len(test),
        "eval_positive_rate": float(y_test.mean()),
        "ece_raw_cosine": expected_calibration_error(raw, y_test),
        "encode_seconds": round(seconds, 1),
    }
    for method in ("platt", "isotonic"):
        calibration = fit_calibration(dev_scores, y_dev, method=method)
        probs = probabilities(calibration, test_scores)
        result[f"ece_{method}"] = expected_calibration_error(probs, y_test)
        result[f"brier_{method}"] = float(((probs - y_test) ** 2).mean())
    result["brier_raw_cosine"] = float(((raw - y_test) ** 2).mean())
    calibration = fit_calibration(dev_scores, y_dev, method="platt")
    threshold = calibration["threshold"]
    applied = classification_metrics(test_scores, y_test, threshold)
    result["threshold_from_dev"] = threshold
    result["eval_at_dev_threshold"] = applied
    same = apply_threshold(test_scores, threshold)
    result["eval_predicted_same_rate"] = float(same.mean())
    refit = fit_calibration(test_scores, y_test, method="platt")["threshold"]
    result["threshold_if_refit_on_eval (not used)"] = refit
    result["eval_accuracy_if_refit (optimistic, not used)"] = classification_metrics(
        test_scores, y_test, refit
    )["accuracy"]
    print(json.dumps(result, indent=2))
    out = Path(__file__).resolve().parent / "results" / "calibration_mrpc.json"
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
