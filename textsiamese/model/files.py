"""Checks on the files of a model directory that every layout shares: weights present and never pickled, a
tokenizer vocabulary present, JSON that reads. Used by ``model.loading`` and ``model.st_layout``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from textsiamese.errors import ModelError

# Files that hold pickled tensors (torch.save and friends): never opened.
PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle"}

# Any one of these carries a Hugging Face tokenizer's vocabulary.
TOKENIZER_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "vocab.json",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
)


def check_weights(directory: Path, expected: str = "model.safetensors") -> None:
    """Refuse a directory whose weights are only pickled (``pytorch_model.bin`` …) or absent.

    Unpickling a file can run any code in it, so pickled weights are never opened, not even to convert them.
    """
    if (directory / expected).is_file() or (directory / f"{expected}.index.json").is_file():
        return
    pickled = sorted(
        path.name
        for path in directory.iterdir()
        if path.is_file() and (path.suffix in PICKLE_SUFFIXES or path.name.endswith(".bin.index.json"))
    )
    if pickled:
        raise ModelError(
            f"{directory}: holds only pickled weights ({', '.join(pickled)}), which are refused because loading "
            f"them can run code; convert them to {expected} with safetensors where you trust the file"
        )
    raise ModelError(f"{directory}: {expected} is missing (no weights)")


def check_tokenizer(directory: Path) -> None:
    """A Hugging Face tokenizer needs its vocabulary; without it transformers quietly builds an empty one."""
    if not any((directory / name).is_file() for name in TOKENIZER_FILES):
        raise ModelError(
            f"{directory}: no tokenizer vocabulary (expected one of {', '.join(TOKENIZER_FILES)})"
        )


def read_json(path: Path) -> Any:
    """The JSON in ``path``, or a ``ModelError`` naming the file."""
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as error:
        raise ModelError(f"{path}: cannot read ({error})") from None
