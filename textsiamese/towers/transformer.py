"""A Hugging Face encoder (BERT, MiniLM, MPNet, …) loaded from a local directory, plus pooling.

Nothing is fetched from a hub: directories are opened with ``local_files_only=True`` and
``trust_remote_code`` stays off unless the caller passes it explicitly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedTokenizerBase

from textsiamese.errors import ModelError
from textsiamese.towers.base import Tokenized, Tower, pad_ids
from textsiamese.towers.pooling import get_pooling

DEFAULT_MAX_LENGTH = 256


class TransformerTower(Tower):
    """Transformer encoder → pooling (mean / cls / max) over the non-padding tokens.

    >>> tower = TransformerTower.from_pretrained("path/to/all-MiniLM-L6-v2")  # doctest: +SKIP
    >>> tower(tower.features(["a sentence"])).shape                           # doctest: +SKIP
    torch.Size([1, 384])
    """

    kind: ClassVar[str] = "transformer"

    def __init__(
        self,
        encoder: Any,
        tokenizer: PreTrainedTokenizerBase,
        pooling: str = "mean",
        max_length: int | None = None,
        lowercase: bool = False,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.pooling = pooling
        self._pool = get_pooling(pooling)
        model_limit = getattr(encoder.config, "max_position_embeddings", None) or DEFAULT_MAX_LENGTH
        self._max_length = int(min(max_length or DEFAULT_MAX_LENGTH, model_limit))
        self.lowercase = lowercase
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad) if pad is not None else 0

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        pooling: str = "mean",
        max_length: int | None = None,
        lowercase: bool = False,
        trust_remote_code: bool = False,
    ) -> TransformerTower:
        """Load encoder weights and tokenizer from a local Hugging Face model directory."""
        directory = Path(path)
        if not (directory / "config.json").is_file():
            raise ModelError(f"{directory}: not a Hugging Face model directory (no config.json)")
        try:
            with _quiet_transformers():
                tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
                encoder = AutoModel.from_pretrained(
                    str(directory),
                    local_files_only=True,
                    trust_remote_code=trust_remote_code,
                    use_safetensors=True,
                )
        except (OSError, ValueError) as error:
            raise ModelError(f"{directory}: cannot load the encoder: {_first_line(error)}") from None
        return cls(encoder, tokenizer, pooling=pooling, max_length=max_length, lowercase=lowercase)

    @property
    def dimension(self) -> int:
        return int(self.encoder.config.hidden_size)

    @property
    def max_length(self) -> int:
        return self._max_length

    def tokenize(self, texts: Sequence[str]) -> Tokenized:
        # sentence-transformers strips (and optionally lowercases) before tokenizing; do the same so a
        # converted model gives the same vectors.
        cleaned = self._clean(texts)
        ids = self.tokenizer(
            cleaned,
            add_special_tokens=True,
            truncation=True,
            max_length=self._max_length,
            return_attention_mask=False,
            return_token_type_ids=False,
        )["input_ids"]
        lengths = [len(row) for row in ids]
        at_limit = [i for i, n in enumerate(lengths) if n >= self._max_length]
        truncated = 0
        if at_limit:
            # Only sequences that reached the limit can have been cut; re-measure just those.
            full = self.tokenizer([cleaned[i] for i in at_limit], add_special_tokens=True, verbose=False)[
                "input_ids"
            ]
            truncated = sum(len(row) > self._max_length for row in full)
            for i, row in zip(at_limit, full, strict=True):
                lengths[i] = len(row)
        return Tokenized(ids=[list(row) for row in ids], truncated=truncated, lengths=lengths)

    def _clean(self, texts: Sequence[str]) -> list[str]:
        return [t.strip().lower() if self.lowercase else t.strip() for t in texts]

    def content_ids(self, texts: Sequence[str]) -> list[list[int]]:
        ids = self.tokenizer(
            self._clean(texts),
            add_special_tokens=False,
            return_attention_mask=False,
            return_token_type_ids=False,
            verbose=False,
        )["input_ids"]
        return [list(row) for row in ids]

    def special_ids(self) -> tuple[list[int], list[int]]:
        """Found by tokenizing a probe word with and without special tokens, so whatever the tokenizer's
        post-processor adds ([CLS] … [SEP], <s> … </s>) is what each chunk gets."""
        cached = self.__dict__.get("_special_ids")
        if cached is None:
            plain = list(self.tokenizer("hello", add_special_tokens=False)["input_ids"])
            wrapped = list(self.tokenizer("hello", add_special_tokens=True)["input_ids"])
            at = next(
                (k for k in range(len(wrapped) - len(plain) + 1) if wrapped[k : k + len(plain)] == plain),
                None,
            )
            if at is None or not plain:
                raise ModelError("cannot tell this tokenizer's special tokens apart from a text's own")
            cached = (wrapped[:at], wrapped[at + len(plain) :])
            self.__dict__["_special_ids"] = cached
        return list(cached[0]), list(cached[1])

    def collate(self, ids: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
        input_ids, mask = pad_ids(ids, self.pad_id)
        return {"input_ids": input_ids, "attention_mask": mask}

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        mask = features["attention_mask"]
        tokens = self.encoder(input_ids=features["input_ids"], attention_mask=mask).last_hidden_state
        return self._pool(tokens, mask)

    def config(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "pooling": self.pooling,
            "max_length": self._max_length,
            "lowercase": self.lowercase,
            "architecture": self.encoder.config.model_type,
        }

    def save_assets(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(str(directory))
        self.encoder.config.save_pretrained(str(directory))

    @classmethod
    def from_assets(cls, config: dict[str, Any], directory: Path) -> TransformerTower:
        try:
            hf_config = AutoConfig.from_pretrained(str(directory), local_files_only=True)
            tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
        except (OSError, ValueError) as error:
            raise ModelError(
                f"{directory}: cannot read tokenizer or encoder config: {_first_line(error)}"
            ) from None
        encoder = AutoModel.from_config(hf_config)
        return cls(
            encoder,
            tokenizer,
            pooling=config.get("pooling", "mean"),
            max_length=config.get("max_length"),
            lowercase=bool(config.get("lowercase", False)),
        )


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Hide transformers' weight-loading progress bar and info logs while a tower loads."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
