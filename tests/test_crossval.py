"""Grouped k-fold cross-validation of a recipe (``textsiamese train R --folds K``) on a tiny model, and hard
negatives drawn from a query's own candidates (``data.hard_negatives: group``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import textsiamese
from textsiamese.cli import main
from textsiamese.data import PairData, TripletData, read_pairs
from textsiamese.data.group_negatives import group_negatives
from textsiamese.errors import ConfigError, InputError
from textsiamese.evaluation import evaluate_reranking
from textsiamese.training import load_recipe
from textsiamese.training.crossval import assign_folds, summarize
from textsiamese.training.recipes import read_stage_data

RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes"
WORDS = ["glacier", "cave", "ice", "river", "city", "king", "song", "war", "moon", "bird", "tree", "ship"]


def wikiqa_rows() -> list[tuple[str, str, int]]:
    """Thirteen questions with 1-4 candidates each: most with an answer and wrong candidates, some with
    wrong candidates only (the re-ranking metric skips those) and one with an answer only."""
    rows = []
    for q, word in enumerate(WORDS):
        question = f"what is the {word} number {q} ?"
        for c in range(1 + q % 4):
            rows.append((question, f"the {word} of candidate {c} is here .", int(c == 0 and q % 6 != 5)))
    rows.append(("who sang the moon song alone ?", "the moon song was sung by a bird .", 1))
    return rows


@pytest.fixture
def wikiqa_file(tmp_path: Path) -> Path:
    path = tmp_path / "wikiqa.txt"
    path.write_text("".join(f"{q}\t{a}\t{y}\n" for q, a, y in wikiqa_rows()))
    return path


def test_assign_folds_keeps_groups_whole_and_balances_rows() -> None:
    keys = ["a"] * 5 + ["b"] * 1 + ["c"] * 3 + ["d"] * 2 + ["e"] * 1 + ["f"] * 4
    folds = assign_folds(keys, 3, seed=7)
    assert sorted(i for fold in folds for i in fold) == list(range(len(keys)))
    for key in set(keys):
        holding = [f for f, fold in enumerate(folds) if any(keys[i] == key for i in fold)]
        assert len(holding) == 1, key
    sizes = sorted(len(f) for f in folds)
    assert sizes[-1] - sizes[0] <= 5  # at most the largest group apart
    assert assign_folds(keys, 3, seed=7) == folds  # seeded
    with pytest.raises(ConfigError, match="6 groups cannot make 7 folds"):
        assign_folds(keys, 7, seed=7)


def test_summarize_is_mean_and_sample_sd() -> None:
    # mean of 0.1, 0.2, 0.6 is 0.3; squared deviations 0.04 + 0.01 + 0.09 = 0.14, / 2 = 0.07.
    result = summarize([0.1, 0.2, 0.6])
    assert result["mean"] == pytest.approx(0.3)
    assert result["sd"] == pytest.approx(0.07**0.5)


def test_group_negatives_come_from_the_same_question_only() -> None:
    pairs = PairData(
        sentence1=["q1", "q1", "q1", "q2", "q3", "q3", "q3"],
        sentence2=["a", "b", "c", "d", "e", "f", "g"],
        labels=[1, 0, 0, 1, 1, 1, 0],
    )
    triplets, dropped = group_negatives(pairs, count=2, seed=0)
    assert dropped == 1  # q2 has no wrong candidate
    assert triplets.anchor == ["q1", "q3", "q3"]
    assert triplets.positive == ["a", "e", "f"]
    assert sorted([triplets.negative[0], *triplets.more_negatives[0]]) == ["b", "c"]
    # q3 has one wrong candidate: both of its negatives are g (never the other answer f or e).
    assert [triplets.negative[1], *triplets.more_negatives[1]] == ["g", "g"]
    assert [triplets.negative[2], *triplets.more_negatives[2]] == ["g", "g"]
    with pytest.raises(InputError, match="no positive pair has a negative"):
        group_negatives(PairData(["q"], ["a"], labels=[1]))


def run_cv(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", *argv, "--no-progress"]) == 0, capsys.readouterr().err
    capsys.readouterr()


def test_wikiqa_crossval_holds_each_question_out_once(
    wikiqa_file: Path,
    tiny_model_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(RECIPES_DIR.parent)
    output = tmp_path / "cv"
    argv = ["wikiqa", "--folds", "3", "--output", str(output), "--set", f"model.base={tiny_model_dir}"]
    argv += ["--set", f"data.train={wikiqa_file}", "--set", "data.hard_negatives=group"]
    argv += ["--set", "model.towers=shared", "--set", "max_steps=1", "--set", "batch_size=2"]
    run_cv(argv, capsys)
    report = json.loads((output / "crossval.json").read_text())
    rows = wikiqa_rows()
    assert report["rows"] == len(rows) and report["grouped_by"] == "sentence1"
    folds = [f["held_out_rows"] for f in report["fold_results"]]
    assert sorted(i for fold in folds for i in fold) == list(range(len(rows)))  # each row held out once
    for question in {q for q, _, _ in rows}:
        holding = [k for k, fold in enumerate(folds) if any(rows[i][0] == question for i in fold)]
        assert len(holding) == 1, f"{question!r} is split across folds {holding}"
    both = {q for q, _, _ in rows if {y for p, _, y in rows if p == q} == {0, 1}}
    assert sum(f["trained"]["n"] for f in report["fold_results"]) == len(both)
    assert sum(f["zero_shot"]["n"] for f in report["fold_results"]) == len(both)
    for result in report["fold_results"]:
        assert result["train_rows"] == len(rows) - len(result["held_out_rows"])
        assert result["steps"] == 1
        assert not (output / f"fold-{result['fold']}" / "final").exists()  # models are not kept
    # The zero-shot figure of a fold is evaluate_reranking of the starting model on that fold's rows.
    first = report["fold_results"][0]
    held = read_pairs(wikiqa_file, "wikiqa").subset(first["held_out_rows"])
    direct = evaluate_reranking(textsiamese.load(tiny_model_dir, "cpu"), held)
    assert first["zero_shot"]["map"] == pytest.approx(direct["map"], abs=1e-6)
    gains = [f["trained"]["map"] - f["zero_shot"]["map"] for f in report["fold_results"]]
    assert report["summary"]["map"]["gain"] == pytest.approx(summarize(gains))
    assert "n" not in report["summary"]
    # The same output is refused without --overwrite.
    assert main(["train", *argv, "--no-progress"]) == 2
    assert "already holds crossval.json" in capsys.readouterr().err


def test_agnews_crossval_by_row_evaluates_every_row_once(
    tiny_model_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / "agnews.csv"
    lines = [f'{1 + i % 4},{w} title {i},"the {w} body text number {i}."' for i, w in enumerate(WORDS)]
    path.write_text("label,title,description\n" + "\n".join(lines) + "\n")
    monkeypatch.chdir(RECIPES_DIR.parent)
    output = tmp_path / "cv"
    argv = ["agnews-title-body", "--folds", "4", "--fold", "2", "--fold", "4", "--output", str(output)]
    argv += ["--set", f"model.base={tiny_model_dir}", "--set", f"data.train={path}", "--set", "max_steps=1"]
    argv += ["--set", "batch_size=3", "--no-zero-shot", "--keep-models"]
    run_cv(argv, capsys)
    report = json.loads((output / "crossval.json").read_text())
    assert report["folds_run"] == [2, 4] and report["grouped_by"] == "row"
    assert [len(f["held_out_rows"]) for f in report["fold_results"]] == [3, 3]
    assert not set(report["fold_results"][0]["held_out_rows"]) & set(
        report["fold_results"][1]["held_out_rows"]
    )
    for result in report["fold_results"]:
        assert result["trained"]["n"] == 3 and result["zero_shot"] is None  # every held-out title is a query
        assert (output / f"fold-{result['fold']}" / "final").is_dir()
    assert "gain" not in report["summary"]["mrr@10"]


def test_wikiqa_recipe_trains_on_its_own_wrong_candidates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(RECIPES_DIR.parent)
    recipe = load_recipe("wikiqa")
    stage = recipe.stages()[0]
    train, dev = read_stage_data(stage["data"], recipe.path, int(stage["seed"]))
    assert isinstance(train, TripletData) and dev is not None
    whole = read_pairs(stage["data"]["train"], "wikiqa")
    label = {(q, a): y for q, a, y in zip(whole.sentence1, whole.sentence2, whole.labels or [], strict=True)}
    assert all(label[(q, p)] == 1 for q, p in zip(train.anchor, train.positive, strict=True))
    assert all(label[(q, n)] == 0 for q, n in zip(train.anchor, train.negative, strict=True))
    assert not set(train.anchor) & set(dev.sentence1)  # the dev questions stay out of training
    assert len(train) > 800
