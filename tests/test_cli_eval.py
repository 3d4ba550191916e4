"""The eval tasks, calibrate, and streaming / calibrated score on the command line."""

from __future__ import annotations

import csv
import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

import textsiamese
from textsiamese.cli import main
from textsiamese.decisions.calibration import choose_threshold
from textsiamese.evaluation import evaluate_classification, evaluate_retrieval, evaluate_triplets

S1 = ["a dog runs", "a cat eats food", "the man plays guitar", "a woman sings", "the ball", "a park"]
S2 = ["a dog is running", "the market fell", "a man is playing", "cats sleep", "the ball", "dogs bark"]
LABELS = [1, 0, 1, 0, 1, 0]


def write_pairs(path: Path, s1: list[str], s2: list[str], labels: list[int]) -> Path:
    path.write_text(
        "sentence1,sentence2,label\n"
        + "".join(f"{a},{b},{y}\n" for a, b, y in zip(s1, s2, labels, strict=True))
    )
    return path


def run_json(args: list[str], capsys: pytest.CaptureFixture[str]) -> dict:
    assert main(args) == 0
    return json.loads(capsys.readouterr().out)


def test_eval_classification_with_dev(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_pairs(tmp_path / "test.csv", S1, S2, LABELS)
    dev = write_pairs(tmp_path / "dev.csv", S2, S1, [1, 1, 0, 0, 1, 0])
    model = textsiamese.load(tiny_model_dir)
    result = run_json(
        [
            "eval",
            "--task",
            "classification",
            "--data",
            str(data),
            "--dev",
            str(dev),
            "--model",
            str(tiny_model_dir),
            "--json",
        ],
        capsys,
    )
    dev_pairs = textsiamese.data.read_pairs(dev, need="label")
    expected = evaluate_classification(model, textsiamese.data.read_pairs(data, need="label"), dev=dev_pairs)
    assert result == pytest.approx(expected)
    dev_scores = model.similarity(S2, S1)
    assert result["threshold"] == pytest.approx(choose_threshold(dev_scores, [1, 1, 0, 0, 1, 0]))
    assert result["threshold_from"] == "dev"


def test_eval_retrieval_and_triplet(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = textsiamese.load(tiny_model_dir)
    data = write_pairs(
        tmp_path / "qa.csv", ["q one", "q one", "q two", "q two"], ["d1", "d2", "d1", "d3"], [1, 0, 0, 1]
    )
    result = run_json(
        ["eval", "--task", "retrieval", "--data", str(data), "--model", str(tiny_model_dir), "--json"], capsys
    )
    assert result == pytest.approx(evaluate_retrieval(model, textsiamese.data.read_pairs(data, need="label")))
    assert set(result) >= {"recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10", "map", "n"}
    triplets = tmp_path / "t.tsv"
    triplets.write_text(
        "anchor\tpositive\tnegative\na dog\ta dog runs\tthe market\na cat\ta cat eats\tguitar\n"
    )
    result = run_json(
        [
            "eval",
            "--task",
            "triplet",
            "--data",
            str(triplets),
            "--model",
            str(tiny_model_dir),
            "--json",
            "--report",
            str(tmp_path / "rep"),
        ],
        capsys,
    )
    assert result == pytest.approx(evaluate_triplets(model, textsiamese.data.read_triplets(triplets)))
    assert (tmp_path / "rep" / "scores.png").is_file()


def test_eval_reranking_matches_per_question_average_precision(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """MAP and MRR over each question's own candidates, recomputed with scikit-learn from the model's cosines;
    "q three" has no relevant candidate and is left out, as WikiQA's evaluation does."""
    from sklearn.metrics import average_precision_score

    questions = ["q one", "q one", "q one", "q two", "q two", "q three", "q three"]
    answers = ["a dog runs", "the market fell", "a man sings", "cats sleep", "the ball", "a park", "rain"]
    labels = [0, 1, 1, 1, 0, 0, 0]
    data = write_pairs(tmp_path / "wikiqa.csv", questions, answers, labels)
    result = run_json(
        ["eval", "--task", "reranking", "--data", str(data), "--model", str(tiny_model_dir), "--json"], capsys
    )
    model = textsiamese.load(tiny_model_dir)
    q = model.encode(questions, role="query")
    d = model.encode(answers, role="document")
    cosine = (q * d).sum(1) / np.linalg.norm(q, axis=1) / np.linalg.norm(d, axis=1)
    aps, reciprocal_ranks = [], []
    for rows in ([0, 1, 2], [3, 4]):
        y, s = np.asarray(labels)[rows], cosine[rows]
        aps.append(average_precision_score(y, s))
        order = np.argsort(-s)
        reciprocal_ranks.append(1 / (1 + int(np.flatnonzero(y[order])[0])))
    assert result["task"] == "reranking" and result["n"] == 2
    assert result["map"] == pytest.approx(np.mean(aps), abs=1e-6)
    assert result["mrr"] == pytest.approx(np.mean(reciprocal_ranks), abs=1e-6)


def test_calibrate_then_score_writes_probability_and_same(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    dev = write_pairs(tmp_path / "dev.csv", S1, S2, LABELS)
    summary = run_json(["calibrate", "--data", str(dev), "--model", str(model_dir), "--json"], capsys)
    assert summary["method"] == "platt" and summary["n"] == 6
    calibrated = textsiamese.load(model_dir)
    assert calibrated.calibration is not None and calibrated.calibration["threshold"] == summary["threshold"]
    assert main(["score", "--pairs", str(dev), "--model", str(model_dir)]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert list(rows[0]) == ["sentence1", "sentence2", "label", "score", "probability", "same", "decision"]
    from textsiamese.decisions.calibration import calibrated_scores

    expected = calibrated_scores(calibrated, S1, S2)
    np.testing.assert_allclose([float(r["probability"]) for r in rows], expected["probability"], atol=1e-5)
    assert [int(r["same"]) for r in rows] == expected["same"].astype(int).tolist()
    # the embedded default cannot be rewritten in place
    assert main(["calibrate", "--data", str(dev)]) == 2
    assert "pass --output DIR" in capsys.readouterr().err


def test_score_streams_in_chunks_with_the_same_output(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "pairs.jsonl"
    data.write_text(
        "".join(
            json.dumps({"id": i, "sentence1": a, "sentence2": b}) + "\n"
            for i, (a, b) in enumerate(zip(S1, S2, strict=True))
        )
    )
    model = ["--model", str(tiny_model_dir)]
    assert main(["score", "--pairs", str(data), *model]) == 0
    whole = capsys.readouterr().out
    assert main(["score", "--pairs", str(data), "--chunk-size", "4", *model]) == 0
    assert capsys.readouterr().out == whole and len(whole.splitlines()) == 6
    csv_data = tmp_path / "pairs.csv"
    csv_data.write_text(
        "sentence1,sentence2\n" + "".join(f'"{a}","{b}"\r\n' for a, b in zip(S1, S2, strict=True))
    )
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(csv_data.read_bytes())))
    assert main(["score", "--chunk-size", "1", *model]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "sentence1,sentence2,score" and len(lines) == 7
    scores = textsiamese.load(tiny_model_dir).similarity(S1, S2)
    np.testing.assert_allclose([float(line.rsplit(",", 1)[1]) for line in lines[1:]], scores, atol=1e-5)


def test_an_error_in_a_later_chunk_leaves_no_output_file(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "pairs.tsv"
    data.write_text("sentence1\tsentence2\n" + "a\tb\n" * 5 + "c\t \n")
    out = tmp_path / "out.csv"
    status = main(
        [
            "score",
            "--pairs",
            str(data),
            "--chunk-size",
            "2",
            "--output",
            str(out),
            "--model",
            str(tiny_model_dir),
        ]
    )
    assert status == 2
    assert "line 7, column 'sentence2': text is empty" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs.tsv"]
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"sentence1,sentence2\na,b\nc,\xff\n")
    assert main(["score", "--pairs", str(bad), "--model", str(tiny_model_dir)]) == 2
    assert "line 3" in capsys.readouterr().err
