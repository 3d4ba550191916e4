"""Few-shot fine-tuning: pairs drawn on the fly, seeded tuning, the head, and tuned reference sets."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

import textsiamese
from textsiamese.cli import main
from textsiamese.decisions.fewshot import TUNED_HEAD_C, FineTuneConfig, fine_tune, fit_head
from textsiamese.decisions.oneshot import OneShotClassifier
from textsiamese.decisions.pairs import ClassBatchSampler, PairSampler
from textsiamese.errors import ModelError

REFS = {
    "pets": ["a dog runs in the park", "the cat eats fish", "a dog plays with a ball", "the cat sleeps"],
    "music": ["a man plays the guitar", "the band plays a song", "she sings a song", "a woman plays piano"],
}


def _refs() -> tuple[list[str], list[str]]:
    labels = [c for c, texts in REFS.items() for _ in texts]
    return labels, [t for texts in REFS.values() for t in texts]


def test_pair_labels_say_whether_the_classes_match() -> None:
    labels = ["a"] * 5 + ["b"] * 3 + ["c"] * 2
    for k in (None, 4):
        seen = 0
        for members, left, right, y in PairSampler(labels, k, batch_size=4, seed=3).epoch(0):
            names = np.asarray(labels)[members]
            assert (y == (names[left] == names[right])).all() and (left != right).all()
            seen += len(members)
        assert seen == len(labels)  # every reference once per epoch
    # With k partners per member, same-class partners are drawn whenever the group has any.
    sampler = PairSampler(["a", "b"] * 8, pairs_per_reference=4, batch_size=8, seed=0)
    y = np.concatenate([batch[3] for batch in sampler.epoch(0)])
    assert y.mean() == pytest.approx(0.5)


def test_pair_drawing_is_seeded() -> None:
    labels = [str(i % 7) for i in range(200)]

    def pairs(seed: int, epoch: int) -> list[np.ndarray]:
        return [np.concatenate(b) for b in PairSampler(labels, 6, 16, seed=seed).epoch(epoch)]

    same = pairs(1, 0)
    assert all((a == b).all() for a, b in zip(same, pairs(1, 0), strict=True))
    assert not all((a == b).all() for a, b in zip(same, pairs(1, 1), strict=True))  # epochs differ
    assert not all((a == b).all() for a, b in zip(same, pairs(2, 0), strict=True))


def test_pair_drawing_at_10k_references_never_holds_all_pairs() -> None:
    labels = [f"class{i % 50}" for i in range(10_000)]
    sampler = PairSampler(labels, pairs_per_reference=8, batch_size=32, seed=0)
    tracemalloc.start()
    pairs = positives = 0
    for batch in sampler.epoch(0):
        pairs, positives = pairs + len(batch[1]), positives + int(batch[3].sum())
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # 8 partners per reference, half of the same class (50 classes, groups of 32: runs of two per class)
    assert pairs == 80_000 and positives == 40_000
    # All n² index pairs would take 800 MB as int64; one epoch's order and one group take well under 2 MB.
    assert peak < 2_000_000, peak


def test_class_batches_hold_one_anchor_per_class() -> None:
    labels = ["a"] * 6 + ["b"] * 4 + ["c"] * 2
    for anchors, positives in ClassBatchSampler(labels, 2, batch_size=8, seed=0).epoch(0):
        names = np.asarray(labels)
        assert len(set(names[anchors])) == len(anchors)
        assert (names[anchors] == names[positives]).all() and (anchors != positives).all()


def _tiny_model(minilm_tokenizer) -> textsiamese.SiameseModel:  # type: ignore[no-untyped-def]
    from conftest import make_tiny_transformer

    return textsiamese.SiameseModel(make_tiny_transformer(minilm_tokenizer, seed=0), normalize=True)


@pytest.mark.slow
def test_fine_tuning_is_seeded_separates_the_classes_and_leaves_the_model(minilm_tokenizer) -> None:  # type: ignore[no-untyped-def]
    model = _tiny_model(minilm_tokenizer)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    labels, texts = _refs()
    config = FineTuneConfig(epochs=15, batch_size=8, learning_rate=1e-3, precision="fp32", seed=4)
    tuned, report = fine_tune(model, labels, texts, config)
    again, _ = fine_tune(model, labels, texts, config)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in tuned.state_dict().items())
    assert report.steps == 15 and report.epoch_losses[-1] < report.epoch_losses[0]

    def margin(m: textsiamese.SiameseModel) -> float:
        v = m.encode(texts, precision="fp32")
        sims, same = v @ v.T, np.equal.outer(labels, labels)
        return float(sims[same & ~np.eye(len(texts), dtype=bool)].mean() - sims[~same].mean())

    assert margin(tuned) > margin(model) + 0.2


def test_head_matches_sklearn_and_refits_for_a_new_class() -> None:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    centers = np.eye(3)[:2] * 3
    y = np.repeat(["x", "y"], 10)
    vectors = np.concatenate([c + rng.normal(size=(10, 3)) for c in centers])
    head = fit_head(y.tolist(), vectors, cs=(1.0,))
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    reference = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000).fit(unit, y)
    np.testing.assert_allclose(head.probabilities(vectors), reference.predict_proba(unit), atol=1e-6)


def test_tuned_set_saves_its_tower_and_takes_a_class_added_later(minilm_tokenizer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model = _tiny_model(minilm_tokenizer)
    labels, texts = _refs()
    matcher = OneShotClassifier(model).enroll(labels, texts)
    config = FineTuneConfig(epochs=3, batch_size=8, learning_rate=1e-3, precision="fp32")
    matcher.fine_tune(config)  # the default selection is the head
    assert matcher.strategy == "head" and matcher.untuned_classes == []
    assert matcher.head is not None and matcher.head.c == TUNED_HEAD_C  # CV over tuned references is blind
    probe = ["a dog sleeps", "the band sings"]
    before = matcher.classify(probe)
    matcher.save(tmp_path / "set")
    assert (tmp_path / "set" / "tower" / "config.json").is_file()
    loaded = OneShotClassifier.load(tmp_path / "set", model)
    assert loaded.tuned_classes == ["pets", "music"] and loaded.tuning["epochs"] == 3
    np.testing.assert_allclose(loaded.classify(probe).similarities, before.similarities, atol=1e-5)
    loaded.enroll(["food"], ["the soup is hot"])  # no retraining: the head is refitted on stored vectors
    assert loaded.untuned_classes == ["food"] and loaded.head is not None and "food" in loaded.head.classes
    assert loaded.head.c == TUNED_HEAD_C
    assert loaded.classify(["the soup is hot"], strategy="centroid").labels == ["food"]
    from conftest import make_tiny_transformer

    other = textsiamese.SiameseModel(make_tiny_transformer(minilm_tokenizer, seed=1), normalize=True)
    with pytest.raises(ModelError, match="fine-tuned from a different model"):
        OneShotClassifier.load(tmp_path / "set", other)


def test_cli_enroll_fine_tune_then_add_a_class(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labels, texts = _refs()
    refs = tmp_path / "refs.csv"
    refs.write_text("label,text\n" + "".join(f"{y},{t}\n" for y, t in zip(labels, texts, strict=True)))
    more = tmp_path / "more.csv"
    more.write_text("label,text\nfood,the soup is hot\n")
    out, model = tmp_path / "set", ["--model", str(tiny_model_dir)]
    tune = ["--fine-tune", "--epochs", "2", "--learning-rate", "1e-3", "--select", "centroid"]
    assert main(["enroll", "--references", str(refs), "--output", str(out), *tune, *model]) == 0
    err = capsys.readouterr().err
    assert "fine-tuned (contrastive, 2 epochs" in err and "strategy centroid" in err
    assert main(["enroll", "--references", str(more), "--output", str(out), *model]) == 0
    assert "tower not tuned on: food" in capsys.readouterr().err
    texts_file = tmp_path / "texts.csv"
    texts_file.write_text("text\nthe soup is hot\n")
    assert main(["classify", "--references", str(out), "--texts", str(texts_file), "--json", *model]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["strategy"] == "centroid" and summary["classes"] == 3


def test_holdout_selection_needs_something_to_hold_out(minilm_tokenizer) -> None:  # type: ignore[no-untyped-def]
    from textsiamese.decisions.fewshot import choose_by_holdout

    model = _tiny_model(minilm_tokenizer)
    # One reference per class: nothing can be held out, so the centroid, without a training run.
    config = FineTuneConfig(epochs=1, batch_size=8, max_steps=0)
    assert choose_by_holdout(model, ["a", "b"], ["a dog", "a song"], config) == "centroid"
    labels, texts = _refs()
    matcher = OneShotClassifier(model).enroll(labels, texts)
    matcher.fine_tune(FineTuneConfig(epochs=1, batch_size=8, precision="fp32"), select="holdout")
    assert matcher.tuning["select"] == matcher.strategy and matcher.strategy in ("centroid", "head")
