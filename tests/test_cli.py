"""The command line: score / eval / info / convert, and one-line errors with exit status 2."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import textsiamese
from textsiamese.cli import main


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = main(args)
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def pairs_csv(tmp_path: Path) -> Path:
    path = tmp_path / "pairs.csv"
    path.write_text(
        "id,sentence1,sentence2,label\n1,a dog runs,a dog is running,1\n2,a cat,the market fell,0\n"
    )
    return path


def test_score_writes_input_columns_and_a_score(
    pairs_csv: Path, tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "scored.csv"
    status, _, _ = run_cli(
        ["score", "--pairs", str(pairs_csv), "--model", str(tiny_model_dir), "--output", str(out)], capsys
    )
    assert status == 0
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["id", "sentence1", "sentence2", "label", "score"]
    expected = textsiamese.load(tiny_model_dir).similarity(
        ["a dog runs", "a cat"], ["a dog is running", "the market fell"]
    )
    np.testing.assert_allclose([float(r["score"]) for r in rows], expected, atol=1e-5)
    assert [r["id"] for r in rows] == ["1", "2"]


def test_score_jsonl_output_and_stdin(
    pairs_csv: Path,
    tiny_model_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "scored.jsonl"
    assert (
        main(["score", "--pairs", str(pairs_csv), "--model", str(tiny_model_dir), "--output", str(out)]) == 0
    )
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert records[0]["sentence1"] == "a dog runs" and isinstance(records[0]["score"], float)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(pairs_csv.read_bytes())))
    status, stdout, _ = run_cli(["score", "--model", str(tiny_model_dir)], capsys)
    assert status == 0
    assert stdout.splitlines()[0] == "id,sentence1,sentence2,label,score"
    assert len(stdout.splitlines()) == 3


def test_score_renames_its_column_when_input_has_a_score(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "gold.tsv"
    f.write_text("sentence1\tsentence2\tscore\nx y\tx z\t3.5\n")
    status, stdout, err = run_cli(["score", "--pairs", str(f), "--model", str(tiny_model_dir)], capsys)
    assert status == 0 and "predicted_score" in err
    assert stdout.splitlines()[0] == "sentence1\tsentence2\tscore\tpredicted_score"


def test_eval_sts_json_matches_scipy(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from scipy.stats import pearsonr, spearmanr

    s1 = ["a man plays", "a dog runs", "the cat eats", "a woman sings", "ball games", "the sun"]
    s2 = ["a man is playing", "a cat sleeps", "the cat is eating", "music", "football", "rain falls"]
    gold = [4.8, 1.0, 4.5, 2.0, 3.0, 0.5]
    f = tmp_path / "sts.csv"
    f.write_text(
        "sentence1,sentence2,score\n"
        + "".join(f"{a},{b},{g}\n" for a, b, g in zip(s1, s2, gold, strict=True))
    )
    status, stdout, _ = run_cli(
        ["eval", "--task", "sts", "--data", str(f), "--model", str(tiny_model_dir), "--json"], capsys
    )
    assert status == 0
    result = json.loads(stdout)
    cosine = textsiamese.load(tiny_model_dir).similarity(s1, s2)
    assert result["spearman"] == pytest.approx(spearmanr(cosine, gold).statistic, abs=1e-9)
    assert result["pearson"] == pytest.approx(pearsonr(cosine, gold).statistic, abs=1e-6)
    assert result["n"] == 6 and result["task"] == "sts"


def test_info_describes_the_model(tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, stdout, _ = run_cli(["info", "--model", str(tiny_model_dir), "--json"], capsys)
    info = json.loads(stdout)
    assert status == 0
    assert info["dimension"] == 32 and info["kind"].startswith("siamese")
    assert info["towers"]["shared"]["kind"] == "transformer"
    assert info["parameters"] == textsiamese.load(tiny_model_dir).num_parameters()


def test_convert_stsb_to_generic(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "dev.csv"
    assert (
        main(
            [
                "convert",
                "--format",
                "stsb",
                "--input",
                str(shared_data / "stsb/sts-dev.csv"),
                "--output",
                str(out),
            ]
        )
        == 0
    )
    pairs = textsiamese.data.read_pairs(out, need="score")
    assert len(pairs) == 1500 and pairs.scores is not None and pairs.scores[1] == 4.75


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "no such file"),
        ("", "file is empty"),
        ("sentence1,other\na,b\n", "header lacks column(s) 'sentence2'"),
        ("sentence1,sentence2,score\na,b,1\nc,d,high\n", "line 3, column 'score': cannot parse 'high'"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    tmp_path: Path,
    tiny_model_dir: Path,
    capsys: pytest.CaptureFixture[str],
    content: str | None,
    expected: str,
) -> None:
    data = tmp_path / "in.csv"
    if content is not None:
        data.write_text(content)
    out = tmp_path / "out.csv"
    for command in (
        ["score", "--pairs", str(data), "--output", str(out)],
        ["eval", "--task", "sts", "--data", str(data)],
    ):
        status, stdout, err = run_cli([*command, "--model", str(tiny_model_dir)], capsys)
        assert status == 2
        assert expected in err and str(data) in err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
        assert stdout == ""
    assert list(tmp_path.iterdir()) == ([data] if content is not None else [])


def test_entry_point_runs_as_a_process(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "textsiamese.cli", "score", "--pairs", str(tmp_path / "absent.csv")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().endswith("absent.csv: no such file")
    assert "Traceback" not in result.stderr


def test_zero_shot_sts_on_real_default_model(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Integration: the embedded model on the first 200 STS-B dev pairs, against an independent scipy figure."""
    from scipy.stats import spearmanr

    pairs = textsiamese.data.read_pairs(shared_data / "stsb/sts-dev.csv", "stsb").subset(range(200))
    f = tmp_path / "dev200.csv"
    f.write_text(
        "sentence1\tsentence2\tscore\n"
        + "".join(
            f"{a}\t{b}\t{s}\n"
            for a, b, s in zip(pairs.sentence1, pairs.sentence2, pairs.scores or [], strict=True)
        )
    )
    f = f.rename(tmp_path / "dev200.tsv")
    status, stdout, _ = run_cli(
        ["eval", "--task", "sts", "--data", str(f), "--json", "--device", "cpu"], capsys
    )
    assert status == 0
    model = textsiamese.load(device="cpu")
    a, b = model.encode(pairs.sentence1), model.encode(pairs.sentence2)
    expected = spearmanr((a * b).sum(1), pairs.scores).statistic
    assert json.loads(stdout)["spearman"] == pytest.approx(expected, abs=1e-6)
    assert json.loads(stdout)["spearman"] > 0.7
