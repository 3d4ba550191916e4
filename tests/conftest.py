"""Shared fixtures: tiny random-initialised towers for speed, the real packaged model for integration."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertModel

import textsiamese
from textsiamese.towers import LSTMTower, TransformerTower, WordTokenizer

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"

WORDS = [
    "a",
    "man",
    "woman",
    "dog",
    "cat",
    "is",
    "eating",
    "playing",
    "guitar",
    "the",
    "on",
    "runs",
    "park",
    "ball",
    "food",
]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared real-data folder (../shared/data beside the checkout)."""
    assert SHARED_DATA.is_dir(), f"shared data folder missing: {SHARED_DATA}"
    return SHARED_DATA.resolve()


@pytest.fixture(scope="session")
def minilm_tokenizer():  # type: ignore[no-untyped-def]
    return AutoTokenizer.from_pretrained(str(textsiamese.default_model_path()), local_files_only=True)


def make_tiny_transformer(
    tokenizer, seed: int = 0, pooling: str = "mean", max_length: int = 32
) -> TransformerTower:  # type: ignore[no-untyped-def]
    """A 2-layer, 32-wide BERT with random weights and the real MiniLM tokenizer."""
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    return TransformerTower(BertModel(config), tokenizer, pooling=pooling, max_length=max_length)


def make_tiny_lstm(seed: int = 0, hidden_size: int = 16, pooling: str = "max") -> LSTMTower:
    torch.manual_seed(seed)
    return LSTMTower(
        WordTokenizer(WORDS), embedding_dim=8, hidden_size=hidden_size, pooling=pooling, max_length=12
    )


@pytest.fixture
def tiny_transformer(minilm_tokenizer) -> TransformerTower:  # type: ignore[no-untyped-def]
    return make_tiny_transformer(minilm_tokenizer)


@pytest.fixture
def tiny_lstm() -> LSTMTower:
    return make_tiny_lstm()


@pytest.fixture(scope="session")
def default_model() -> textsiamese.SiameseModel:
    """The real embedded all-MiniLM-L6-v2 (loaded once per test session)."""
    return textsiamese.load(device="cpu")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, minilm_tokenizer) -> Path:  # type: ignore[no-untyped-def]
    """A saved tiny shared-transformer model directory, for fast CLI tests."""
    path = tmp_path_factory.mktemp("models") / "tiny"
    textsiamese.SiameseModel(make_tiny_transformer(minilm_tokenizer), normalize=True).save(path)
    return path
