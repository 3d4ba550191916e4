"""Towers and pooling: hand-computed pooling, packed LSTM independent of padding, truncation counting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import make_tiny_lstm
from textsiamese.towers import LSTMTower, WordTokenizer
from textsiamese.towers.pooling import cls_pool, max_pool, mean_pool


def test_pooling_ignores_padding_by_hand() -> None:
    tokens = torch.tensor([[[1.0, 2.0], [3.0, -4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert mean_pool(tokens, mask).tolist() == [[2.0, -1.0]]
    assert max_pool(tokens, mask).tolist() == [[3.0, 2.0]]
    assert cls_pool(tokens, mask).tolist() == [[1.0, 2.0]]


@pytest.mark.parametrize("pooling", ["max", "mean"])
def test_lstm_output_does_not_depend_on_batch_padding(pooling: str) -> None:
    tower = make_tiny_lstm(pooling=pooling).eval()
    alone = tower(tower.features(["a cat"]))
    padded = tower(tower.features(["a cat", "the man is playing guitar on the ball"]))[:1]
    torch.testing.assert_close(alone, padded, rtol=0, atol=1e-6)
    assert alone.shape == (1, 32)


def test_word_tokenizer_vocabulary_and_unknowns() -> None:
    tokenizer = WordTokenizer.build(["The cat sat.", "the dog sat"], min_count=2)
    assert tokenizer.words == ["<pad>", "<unk>", "the", "sat"]
    assert tokenizer.encode("The zebra sat!") == [2, 1, 3, 1]
    assert tokenizer.encode("…") == [1]


def test_lstm_truncation_is_counted() -> None:
    tower = make_tiny_lstm()
    tokens = tower.tokenize(["a " * 20, "a cat"])
    assert tokens.truncated == 1
    assert [len(row) for row in tokens.ids] == [12, 2]


def test_transformer_truncation_counts_only_cut_texts(tiny_transformer) -> None:  # type: ignore[no-untyped-def]
    limit = tiny_transformer.max_length
    exact = " ".join(["dog"] * (limit - 2))  # [CLS] + limit-2 words + [SEP] = exactly the limit
    tokens = tiny_transformer.tokenize([exact, exact + " dog", "short"])
    assert [len(row) for row in tokens.ids] == [limit, limit, 3]
    assert tokens.truncated == 1


def test_lstm_assets_round_trip(tmp_path: Path, tiny_lstm: LSTMTower) -> None:
    tiny_lstm.save_assets(tmp_path)
    assert json.loads((tmp_path / "vocab.json").read_text())[:2] == ["<pad>", "<unk>"]
    rebuilt = LSTMTower.from_assets(tiny_lstm.config(), tmp_path)
    assert rebuilt.config() == tiny_lstm.config()
    assert rebuilt.tokenizer.words == tiny_lstm.tokenizer.words


def test_glove_initialised_lstm_uses_the_packaged_vectors() -> None:
    import numpy as np

    from textsiamese.towers import load_glove

    vectors, words = load_glove(max_words=1000)
    tower = LSTMTower.from_glove(max_words=1000, hidden_size=4)
    the = tower.tokenizer.index["the"]
    np.testing.assert_array_equal(tower.embeddings.weight[the].detach().numpy(), vectors[words.index("the")])
    assert tower.embeddings.weight.shape == (len(words) + 2, 50)
