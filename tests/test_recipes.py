"""Every recipe runs end to end on CPU (tiny model, 2 steps, small data), and its output directory is a model
that ``textsiamese eval`` and ``textsiamese score`` load. Recipe parsing and ``--set`` overrides."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import make_tiny_lstm

import textsiamese
from textsiamese.cli import main
from textsiamese.errors import ConfigError
from textsiamese.evaluation import evaluate_classification
from textsiamese.training import load_recipe
from textsiamese.training.recipes import read_stage_data

RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes"
RECIPES = sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))
SNLI_ROWS = [
    ("A man is playing a guitar on stage.", "A man plays music.", "entailment"),
    ("A man is playing a guitar on stage.", "A woman is sleeping.", "contradiction"),
    ("Two dogs run in a park.", "Animals are outside.", "entailment"),
    ("Two dogs run in a park.", "The dogs are asleep indoors.", "contradiction"),
    ("A child eats food.", "Someone is eating.", "entailment"),
    ("A child eats food.", "Nobody is eating.", "contradiction"),
    ("A woman rides a bike.", "A person is cycling.", "entailment"),
    ("A woman rides a bike.", "A woman is swimming.", "contradiction"),
    ("A cat sits on a mat.", "An animal is sitting.", "entailment"),
    ("A cat sits on a mat.", "A cat runs away.", "contradiction"),
    ("A cat sits on a mat.", "The cat is grey.", "neutral"),
]


def test_every_recipe_is_listed() -> None:
    assert set(RECIPES) >= {
        "stsb",
        "sick",
        "mrpc",
        "mrpc-energy",
        "nli",
        "agnews-title-body",
        "wikiqa",
        "lstm-glove",
    }


@pytest.fixture(scope="module")
def snli_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("snli") / "snli.jsonl"
    with path.open("w") as handle:
        for premise, hypothesis, label in SNLI_ROWS:
            handle.write(
                json.dumps({"sentence1": premise, "sentence2": hypothesis, "gold_label": label}) + "\n"
            )
    return path


@pytest.fixture(scope="module")
def tiny_lstm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("models") / "tiny-lstm"
    textsiamese.SiameseModel(make_tiny_lstm(), normalize=True).save(path)
    return path


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_runs_end_to_end(
    name: str,
    tmp_path: Path,
    tiny_model_dir: Path,
    tiny_lstm_dir: Path,
    snli_file: Path,
    shared_data: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(RECIPES_DIR.parent)  # recipes find ../shared/data from the repository root
    base = tiny_lstm_dir if name.startswith("lstm") else tiny_model_dir
    output = tmp_path / "run"
    argv = [
        "train",
        str(RECIPES_DIR / f"{name}.yaml"),
        "--output",
        str(output),
        "--set",
        f"model.base={base}",
        "--set",
        "max_steps=2",
        "--set",
        "batch_size=4",
        "--set",
        "data.limit=40",
        "--set",
        "data.dev_limit=24",
        "--set",
        "eval_every=1",
        "--no-progress",
        "--json",
    ]
    if name in ("nli", "lstm-glove"):
        argv += ["--set", f"data.train={snli_file}"]
    if name == "nli":
        argv += ["--set", "cache_batch_size=3"]
    if name == "lstm-glove":
        argv += ["--set", "stages.2.train.batch_size=4"]
    assert main(argv) == 0, capsys.readouterr().err
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["steps"] == 2 and result["stopped"] == "completed"
    assert result["final"] and result["best"] and result["baseline"]
    summary = json.loads((output / "results.json").read_text())
    assert summary["recipe"] == name and summary["machine"]
    for model_dir in ("final", "best"):
        model = textsiamese.load(output / model_dir, device="cpu")
        assert model.encode(["a man is eating"]).shape == (1, model.dimension)
    # The trained model works with the other commands.
    assert (
        main(
            [
                "eval",
                "--task",
                "sts",
                "--format",
                "stsb",
                "--data",
                str(shared_data / "stsb" / "sts-dev.csv"),
                "--model",
                str(output / "final"),
                "--json",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["n"] == 1500
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("sentence1,sentence2\nA man eats.,Someone is eating.\n")
    assert main(["score", "--pairs", str(pairs), "--model", str(output / "final")]) == 0
    assert "score" in capsys.readouterr().out.splitlines()[0]
    if name == "lstm-glove":
        assert (output / "stage-1-snli" / "final" / "config.json").is_file()


def test_pair_classification_dev_figures_are_those_of_eval_on_the_final_model(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The MRPC recipe's logged dev accuracy is ``textsiamese eval``'s for the saved model on the same split:
    cross-validated on the split (no threshold fitted on the pairs it decides), the same numbers."""
    from sklearn.metrics import accuracy_score
    from sklearn.model_selection import StratifiedKFold

    from textsiamese.decisions.calibration import apply_threshold, choose_threshold

    monkeypatch.chdir(RECIPES_DIR.parent)
    overrides = [f"model.base={tiny_model_dir}", "max_steps=3", "batch_size=4", "eval_every=2"]
    overrides += ["data.limit=40", "data.dev_limit=40"]
    output = tmp_path / "run"
    argv = ["train", "mrpc", "--output", str(output), "--no-progress", "--json"]
    assert main([*argv, *(arg for o in overrides for arg in ("--set", o))]) == 0
    capsys.readouterr()
    records = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    logged = [r["eval"] for r in records if "eval" in r]
    assert [r["step"] for r in records if "eval" in r] == [2, 3]
    final = logged[-1]
    assert json.loads((output / "results.json").read_text())["final"] == final
    assert final["threshold_from"] == "cross-validation (5 folds on the evaluation file)"
    assert final["n"] == 40

    # The same dev split, as the recipe draws it; the saved final model through the evaluation package.
    stage = load_recipe("mrpc", overrides).stages()[0]
    _, dev = read_stage_data(stage["data"], RECIPES_DIR / "mrpc.yaml", int(stage["seed"]))
    assert dev is not None and len(dev) == 40
    model = textsiamese.load(output / "final", device="cpu")
    assert evaluate_classification(model, dev) == final

    # ... and through the command line, from a file holding that split.
    dev_file = tmp_path / "dev.jsonl"
    dev_file.write_text(
        "".join(
            json.dumps({"sentence1": a, "sentence2": b, "label": y}) + "\n"
            for a, b, y in zip(dev.sentence1, dev.sentence2, dev.labels or [], strict=True)
        )
    )
    command = ["eval", "--task", "classification", "--data", str(dev_file), "--model", str(output / "final")]
    assert main([*command, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == final

    # Out of fold: each fold decided by the threshold chosen on the other four (scikit-learn's folds).
    a, b = model.encode_pairs(dev.sentence1, dev.sentence2)
    scores = (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    labels = np.asarray(dev.labels)
    predicted = np.zeros(len(labels), dtype=bool)
    for fit, held in StratifiedKFold(5, shuffle=True, random_state=0).split(scores.reshape(-1, 1), labels):
        predicted[held] = apply_threshold(scores[held], choose_threshold(scores[fit], labels[fit]))
    assert final["accuracy"] == pytest.approx(accuracy_score(labels, predicted))


def test_overrides_and_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(RECIPES_DIR.parent)
    recipe = load_recipe("stsb", ["max_steps=3", "train.lr=1e-4", "model.towers=pseudo", "eval.batch_size=8"])
    (stage,) = recipe.stages()
    assert stage["train"]["max_steps"] == 3 and stage["train"]["lr"] == 1e-4
    assert stage["model"]["towers"] == "pseudo" and stage["eval"]["batch_size"] == 8
    with pytest.raises(ConfigError, match="unknown train option"):
        load_recipe("stsb", ["train.learning_rate=1"])
    with pytest.raises(ConfigError, match="unknown data key"):
        load_recipe("stsb", ["data.trian=x"])
    with pytest.raises(ConfigError, match="no recipe"):
        load_recipe("no-such-recipe")
    with pytest.raises(ConfigError, match="2 stage"):
        load_recipe("lstm-glove", ["stages.3.train.lr=1"])


def test_missing_snli_path_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(RECIPES_DIR.parent)
    assert main(["train", "nli", "--output", "/nonexistent/out"]) == 2
    assert "data.train" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_sigterm_saves_a_checkpoint_and_resume_finishes(tmp_path: Path, tiny_model_dir: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    output = tmp_path / "run"
    argv = [
        sys.executable,
        "-m",
        "textsiamese.cli",
        "train",
        "stsb",
        "--output",
        str(output),
        "--no-progress",
    ]
    argv += ["--set", f"model.base={tiny_model_dir}", "--set", "max_steps=300", "--set", "data.dev_limit=20"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(argv, cwd=RECIPES_DIR.parent, env=env, stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        lines = (
            (output / "metrics.jsonl").read_text().splitlines() if (output / "metrics.jsonl").exists() else []
        )
        if any('"loss"' in line for line in lines):
            break
        time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, out
    assert "checkpoint saved" in out and (output / "checkpoint" / "state.pt").is_file()
    assert not (output / "final").exists()
    resumed = subprocess.run(
        [*argv, "--resume", "--json"],
        cwd=RECIPES_DIR.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout.splitlines()[-1])["steps"] == 300
