"""One-shot matching: nearest reference / centroid, unknown threshold, adding classes, persistence."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from eval_stubs import VectorModel, angle_vectors

import textsiamese
from textsiamese.cli import main
from textsiamese.decisions.oneshot import OneShotClassifier, accuracy
from textsiamese.errors import ConfigError, InputError, ModelError

# Class "a": references at 0.0 and 1.2 rad (centroid ≈ 0.6); class "b": one reference at 0.9 rad.
VECTORS = angle_vectors(
    {"a1": 0.0, "a2": 1.2, "b1": 0.9, "x": 0.95, "y": 0.1, "far": 3.0, "c1": 2.9, "dev_far": 2.8}
)


def test_nearest_reference_and_nearest_centroid_can_differ() -> None:
    matcher = OneShotClassifier(VectorModel(VECTORS), strategy="reference")  # type: ignore[arg-type]
    matcher.enroll(["a", "a", "b"], ["a1", "a2", "b1"])
    assert matcher.classes == ["a", "b"]
    # x (0.95) is nearest to reference b1 (0.9), but its angle to a's centroid (0.6) is 0.35 against b's 0.05
    by_reference = matcher.classify(["x", "y"])
    assert by_reference.labels == ["b", "a"]
    assert by_reference.similarities[0] == pytest.approx(np.cos(0.05), abs=1e-6)
    x_near_a2 = angle_vectors({"x": 1.1})["x"]
    matcher.model.vectors["x"] = np.asarray(x_near_a2, dtype=np.float32)
    assert matcher.classify(["x"]).labels == ["a"]  # nearest reference a2 (0.1 away)
    assert matcher.classify(["x"], strategy="centroid").labels == ["b"]  # centroid of a is 0.5 away


def test_threshold_gives_unknown_and_is_chosen_on_dev() -> None:
    matcher = OneShotClassifier(VectorModel(VECTORS)).enroll(["a", "b"], ["a1", "b1"])  # type: ignore[arg-type]
    predictions = matcher.classify(["y", "far"], threshold=0.5)
    assert predictions.labels == ["a", "unknown"] and predictions.nearest == ["a", "b"]
    # dev: 'y' is class a, 'dev_far' belongs to no enrolled class and should come out unknown
    t = matcher.choose_threshold(["y", "dev_far"], ["a", "zzz"])
    assert np.cos(1.9) < t < np.cos(0.1)
    assert matcher.classify(["far", "y"]).labels == ["unknown", "a"]


def test_new_classes_are_added_by_enrolling_more() -> None:
    matcher = OneShotClassifier(VectorModel(VECTORS)).enroll(["a", "b"], ["a1", "b1"])  # type: ignore[arg-type]
    assert matcher.classify(["far"]).labels == ["b"]
    matcher.enroll(["c"], ["c1"])
    assert matcher.classes == ["a", "b", "c"] and matcher.classify(["far"]).labels == ["c"]
    with pytest.raises(ConfigError, match="reserved"):
        matcher.enroll(["unknown"], ["x"])


def test_save_load_round_trip_and_refuses_another_model(minilm_tokenizer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from conftest import make_tiny_lstm

    model = textsiamese.SiameseModel(make_tiny_lstm(seed=0), normalize=True)
    matcher = OneShotClassifier(model, strategy="centroid", threshold=0.1)
    matcher.enroll(["pets", "pets", "music"], ["a dog", "a cat", "the guitar"])
    texts = ["the dog is eating", "a man playing guitar"]
    before = matcher.classify(texts)
    matcher.save(tmp_path / "refs")
    assert sorted(p.name for p in (tmp_path / "refs").iterdir()) == ["embeddings.npy", "enrolled.json"]
    again = OneShotClassifier.load(tmp_path / "refs", model)
    assert again.strategy == "centroid" and again.threshold == 0.1 and again.labels == matcher.labels
    after = again.classify(texts)
    assert after.labels == before.labels
    np.testing.assert_allclose(after.similarities, before.similarities, atol=1e-6)
    other = textsiamese.SiameseModel(make_tiny_lstm(seed=1), normalize=True)
    with pytest.raises(ModelError, match="different model"):
        OneShotClassifier.load(tmp_path / "refs", other)
    with pytest.raises(InputError, match="not an enrolled reference set"):
        OneShotClassifier.load(tmp_path, model)
    matcher.enroll(["food"], ["food"]).save(tmp_path / "refs")  # replaced atomically
    assert OneShotClassifier.load(tmp_path / "refs", model).classes == ["pets", "music", "food"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_cli_enroll_add_and_classify(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    refs = tmp_path / "refs.csv"
    refs.write_text("label,text\npets,a dog runs\npets,a cat eats\nmusic,a man plays guitar\n")
    more = tmp_path / "more.csv"
    more.write_text("label,text\nfood,the food is good\n")
    texts = tmp_path / "texts.csv"
    texts.write_text("text,label\nthe dog is running,pets\nguitar music,music\nfood,food\n")
    out = tmp_path / "set"
    model = ["--model", str(tiny_model_dir)]
    assert main(["enroll", "--references", str(refs), "--output", str(out), *model]) == 0
    assert main(["enroll", "--references", str(more), "--output", str(out), *model]) == 0
    assert "1 reference added; 4 in 3 classes" in capsys.readouterr().err
    assert main(["classify", "--references", str(out), "--texts", str(texts), *model]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0] == "id,text,label,predicted,similarity" and len(lines) == 4
    predicted = [line.split(",")[3] for line in lines[1:]]
    matcher = OneShotClassifier.load(out, textsiamese.load(tiny_model_dir))
    expected = matcher.classify(["the dog is running", "guitar music", "food"]).labels
    assert predicted == expected and "accuracy" in captured.err
    assert main(["classify", "--references", str(out), "--texts", str(texts), "--json", *model]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["classes"] == 3 and summary["n"] == 3
    assert summary["accuracy"] == pytest.approx(accuracy(expected, ["pets", "music", "food"]))
    dev = tmp_path / "dev.csv"
    dev.write_text("label,text\npets,the dog is running\nweather,rain falls on the park\n")
    with_dev = tmp_path / "with_dev"
    assert (
        main(["enroll", "--references", str(refs), "--output", str(with_dev), "--dev", str(dev), *model]) == 0
    )
    stored = OneShotClassifier.load(with_dev, textsiamese.load(tiny_model_dir))
    fresh = OneShotClassifier(textsiamese.load(tiny_model_dir)).enroll(
        ["pets", "pets", "music"], ["a dog runs", "a cat eats", "a man plays guitar"]
    )
    expected_threshold = fresh.choose_threshold(
        ["the dog is running", "rain falls on the park"], ["pets", "weather"]
    )
    assert stored.threshold == pytest.approx(expected_threshold)
    bad = tmp_path / "bad.csv"
    bad.write_text("text\nno label here\n")
    assert main(["enroll", "--references", str(bad), "--output", str(out), *model]) == 2
    assert "header lacks column 'label'" in capsys.readouterr().err


@pytest.mark.slow
def test_agnews_few_shot_beats_chance_on_the_default_model(default_model, shared_data: Path) -> None:  # type: ignore[no-untyped-def]
    """Integration (slow): 5 references per class, 200 other AG News texts, nearest centroid."""
    import csv

    with open(shared_data / "agnews" / "agnews-title-description-train.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))[:400]
    labels = [r["label"] for r in rows]
    texts = [f"{r['title']} {r['description']}" for r in rows]
    references = [i for c in sorted(set(labels)) for i in [j for j, y in enumerate(labels) if y == c][:5]]
    rest = [i for i in range(len(rows)) if i not in set(references)][:200]
    matcher = OneShotClassifier(default_model, strategy="centroid")
    matcher.enroll([labels[i] for i in references], [texts[i] for i in references])
    predicted = matcher.classify([texts[i] for i in rest]).labels
    assert accuracy(predicted, [labels[i] for i in rest]) > 0.5  # chance is 0.25


def _agnews_file(shared_data: Path, path: Path, rows: slice) -> Path:
    """label,text rows of the shared AG News sample (label = its class name, text = the title)."""
    import csv

    with (shared_data / "agnews" / "agnews-title-description-train.csv").open(encoding="utf-8") as handle:
        table = list(csv.DictReader(handle))[rows]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["label", "text"])
        writer.writerows([[row["label"], row["title"]] for row in table])
    return path


def test_cli_enrolling_the_same_file_twice_adds_nothing(
    tiny_model_dir: Path, shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    refs = _agnews_file(shared_data, tmp_path / "refs.csv", slice(0, 12))
    out, model = tmp_path / "refs", ["--model", str(tiny_model_dir)]
    assert main(["enroll", "--references", str(refs), "--output", str(out), *model]) == 0
    first = json.loads((out / "enrolled.json").read_text())
    capsys.readouterr()
    assert main(["enroll", "--references", str(refs), "--output", str(out), *model]) == 0
    assert "0 references added (12 already enrolled, skipped); 12 in" in capsys.readouterr().err
    again = json.loads((out / "enrolled.json").read_text())
    assert again["labels"] == first["labels"] and again["texts"] == first["texts"]
    assert np.load(out / "embeddings.npy").shape[0] == 12


def test_cli_classify_strategy_uses_that_strategys_threshold(
    tiny_model_dir: Path, shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    refs = _agnews_file(shared_data, tmp_path / "refs.csv", slice(0, 16))
    dev = _agnews_file(shared_data, tmp_path / "dev.csv", slice(16, 40))
    texts = _agnews_file(shared_data, tmp_path / "texts.csv", slice(40, 60))
    out, model = tmp_path / "refs", ["--model", str(tiny_model_dir)]
    assert main(["enroll", "--references", str(refs), "--output", str(out), "--dev", str(dev), *model]) == 0
    # The same choice made by hand, one fresh classifier per strategy.
    loaded = textsiamese.load(tiny_model_dir)
    import csv

    def column(path: Path, name: str) -> list[str]:
        with path.open(encoding="utf-8") as handle:
            return [row[name] for row in csv.DictReader(handle)]

    expected = {}
    for strategy in ("centroid", "reference"):
        fresh = OneShotClassifier(loaded, strategy=strategy).enroll(
            column(refs, "label"), column(refs, "text")
        )
        expected[strategy] = fresh.choose_threshold(column(dev, "text"), column(dev, "label"))
    stored = json.loads((out / "enrolled.json").read_text())
    assert stored["thresholds"] == pytest.approx(expected)
    assert expected["centroid"] != pytest.approx(
        expected["reference"]
    )  # else the test could not tell them apart
    capsys.readouterr()
    assert (
        main(["classify", "--references", str(out), "--texts", str(texts), "--strategy", "reference", *model])
        == 0
    )
    lines = capsys.readouterr().out.splitlines()[1:]
    fresh = OneShotClassifier(loaded, strategy="reference").enroll(
        column(refs, "label"), column(refs, "text")
    )
    want = fresh.classify(column(texts, "text"), threshold=expected["reference"]).labels
    assert [line.split(",")[-2] for line in lines] == want
    # A set saved before per-strategy thresholds: classify says the stored one belongs to another strategy.
    del stored["thresholds"]
    (out / "enrolled.json").write_text(json.dumps(stored))
    assert (
        main(["classify", "--references", str(out), "--texts", str(texts), "--strategy", "reference", *model])
        == 0
    )
    assert "holds a threshold for centroid" in capsys.readouterr().err
