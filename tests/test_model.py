"""SiameseModel: encoding order, similarity, save/load round trips, sentence-transformers directories."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import textsiamese
from tests.conftest import make_tiny_lstm, make_tiny_transformer
from textsiamese import ModelError, SiameseModel, TruncationWarning

TEXTS = ["a man is playing guitar", "a dog", "the cat is eating food in the park", "a woman runs", "ball"]


def assert_round_trip(model: SiameseModel, path: Path) -> SiameseModel:
    model.save(path)
    loaded = textsiamese.load(path, device="cpu")
    for role in ("query", "document"):
        before = model.encode(TEXTS, role=role)
        after = loaded.encode(TEXTS, role=role)
        assert np.abs(before - after).max() < 1e-6
    assert loaded.fingerprint() == model.fingerprint()
    return loaded


def test_shared_transformer_round_trip(tmp_path: Path, tiny_transformer) -> None:  # type: ignore[no-untyped-def]
    loaded = assert_round_trip(SiameseModel(tiny_transformer, normalize=True), tmp_path / "m")
    assert loaded.is_shared and loaded.normalize
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["dimension"] == 32 and config["roles"] == {"query": "shared", "document": "shared"}
    assert config["library_version"] == textsiamese.__version__


def test_lstm_round_trip(tmp_path: Path, tiny_lstm) -> None:  # type: ignore[no-untyped-def]
    assert assert_round_trip(SiameseModel(tiny_lstm), tmp_path / "m").dimension == 32


def test_pseudo_siamese_lstm_query_transformer_document(tmp_path: Path, minilm_tokenizer) -> None:  # type: ignore[no-untyped-def]
    model = SiameseModel(
        query=make_tiny_lstm(hidden_size=16), document=make_tiny_transformer(minilm_tokenizer)
    )
    assert not model.is_shared
    loaded = assert_round_trip(model, tmp_path / "m")
    assert loaded.tower("query").kind == "lstm" and loaded.tower("document").kind == "transformer"
    # The roles really use different towers.
    assert not np.allclose(loaded.encode(TEXTS, role="query"), loaded.encode(TEXTS, role="document"))


def test_untied_copies_train_apart(tiny_transformer) -> None:  # type: ignore[no-untyped-def]
    model = SiameseModel.untied(tiny_transformer)
    np.testing.assert_allclose(
        model.encode(TEXTS, role="query"), model.encode(TEXTS, role="document"), atol=1e-6
    )
    with torch.no_grad():
        for p in model.tower("document").parameters():
            p.add_(0.1)
    assert not np.allclose(model.encode(TEXTS, role="query"), model.encode(TEXTS, role="document"))
    assert model.fingerprint() != SiameseModel.untied(tiny_transformer).fingerprint()


def test_encode_keeps_input_order_across_batches(tiny_transformer) -> None:  # type: ignore[no-untyped-def]
    model = SiameseModel(tiny_transformer)
    batched = model.encode(TEXTS, batch_size=2)
    one_by_one = np.stack([model.encode(text) for text in TEXTS])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    assert model.encode([]).shape == (0, 32)
    normalized = model.encode(TEXTS, normalize=True)
    np.testing.assert_allclose(np.linalg.norm(normalized, axis=1), 1.0, atol=1e-6)


def test_similarity_metrics_match_numpy(tiny_transformer) -> None:  # type: ignore[no-untyped-def]
    model = SiameseModel(tiny_transformer)
    a, b = TEXTS[:3], TEXTS[2:]
    u, v = model.encode(a), model.encode(b)
    cosine = (u * v).sum(1) / np.linalg.norm(u, axis=1) / np.linalg.norm(v, axis=1)
    np.testing.assert_allclose(model.similarity(a, b), cosine, atol=1e-5)
    np.testing.assert_allclose(
        model.similarity(a, b, metric="euclidean"), np.linalg.norm(u - v, axis=1), atol=1e-5
    )
    np.testing.assert_allclose(model.similarity(a, b, metric="manhattan"), np.abs(u - v).sum(1), atol=1e-4)


def test_truncation_warns_once_with_the_count(tiny_transformer) -> None:  # type: ignore[no-untyped-def]
    model = SiameseModel(tiny_transformer)
    with pytest.warns(TruncationWarning, match="2 of 3 texts were longer than 32 tokens") as record:
        model.encode(["dog " * 100, "short", "cat " * 50])
    assert len(record) == 1


def test_damaged_model_directories_are_refused(tmp_path: Path, tiny_transformer) -> None:  # type: ignore[no-untyped-def]
    path = SiameseModel(tiny_transformer).save(tmp_path / "m")
    broken = tmp_path / "truncated"
    shutil.copytree(path, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ModelError, match="corrupted"):
        textsiamese.load(broken)
    missing = tmp_path / "missing"
    shutil.copytree(path, missing)
    (missing / "model.safetensors").unlink()
    with pytest.raises(ModelError, match=r"model\.safetensors is missing"):
        textsiamese.load(missing)
    with pytest.raises(ModelError, match="no such model directory"):
        textsiamese.load(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="not a model directory"):
        textsiamese.load(tmp_path / "empty")


def test_save_over_an_existing_model_replaces_it(tmp_path: Path, tiny_transformer, tiny_lstm) -> None:  # type: ignore[no-untyped-def]
    SiameseModel(tiny_transformer).save(tmp_path / "m")
    SiameseModel(tiny_lstm).save(tmp_path / "m")
    assert textsiamese.load(tmp_path / "m").tower("query").kind == "lstm"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_default_model_reproduces_its_reference_embeddings(default_model: SiameseModel) -> None:
    """Independent reference: transformers' AutoModel, mean pooling and L2 normalisation written out here."""
    from transformers import AutoModel, AutoTokenizer

    path = str(textsiamese.default_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    encoder = AutoModel.from_pretrained(path, local_files_only=True).eval()
    batch = tokenizer(TEXTS, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        hidden = encoder(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    expected = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    assert default_model.dimension == 384 and default_model.normalize and default_model.is_shared
    # fp32 is the exact path (auto may pick bf16 autocast on a CPU with native bf16).
    assert np.abs(default_model.encode(TEXTS, precision="fp32") - expected).max() < 1e-6
    similar, unrelated = default_model.similarity(
        ["A man is playing a guitar."] * 2, ["A person plays guitar.", "The stock market fell."]
    )
    assert similar > unrelated + 0.3


def test_default_model_saved_natively_round_trips(tmp_path: Path, default_model: SiameseModel) -> None:
    loaded = assert_round_trip(default_model, tmp_path / "minilm")
    assert loaded.tower("query").config()["max_length"] == 256


def test_failed_swap_puts_the_previous_model_back(
    tmp_path: Path, tiny_transformer, tiny_lstm, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    import errno
    import os

    from textsiamese.data import writers

    SiameseModel(tiny_transformer).save(tmp_path / "m")
    real_replace = os.replace
    calls = []

    def replace_failing_on_the_second_call(src, dst):  # type: ignore[no-untyped-def]
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(writers, "_exchange", lambda a, b: False)  # the two-rename path (no atomic swap)
    monkeypatch.setattr(writers.os, "replace", replace_failing_on_the_second_call)
    with pytest.raises(OSError):
        SiameseModel(tiny_lstm).save(tmp_path / "m")
    monkeypatch.setattr(writers.os, "replace", real_replace)
    assert textsiamese.load(tmp_path / "m").tower("query").kind == "transformer"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
