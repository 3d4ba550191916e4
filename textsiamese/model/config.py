"""The model configuration saved as ``config.json`` in a model directory, and read back by ``load``.

A model directory is self-describing: this file names each tower's kind and settings, which tower serves
which role, whether embeddings are L2-normalised, their dimension, any calibration, the prompt (a prefix)
each role's texts get before tokenizing, how each role encodes long texts, and the library version that wrote
it. Weights live beside it in ``model.safetensors``; tower assets under ``towers/<name>/``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from textsiamese.errors import ModelError

FORMAT_NAME = "textsiamese-model"
FORMAT_VERSION = 1
ROLES = ("query", "document")


@dataclass
class ModelConfig:
    """Everything but the weights needed to rebuild a ``SiameseModel``."""

    towers: dict[str, dict[str, Any]]
    roles: dict[str, str]
    normalize: bool = False
    dimension: int = 0
    similarity: str = "cosine"
    calibration: dict[str, Any] | None = None
    prompts: dict[str, str] = field(default_factory=dict)
    library_version: str = ""
    # Per role, how texts past the tower's maximum are encoded (``inference.long_text.LongText.to_dict``);
    # a role not named truncates. Older configs have none.
    long_text: dict[str, dict[str, Any]] = field(default_factory=dict)
    format: str = FORMAT_NAME
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_file(cls, path: Path) -> ModelConfig:
        """Parse and check a saved ``config.json``."""
        try:
            data = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError) as error:
            raise ModelError(f"{path}: cannot read the model config ({error})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
            raise ModelError(f"{path}: not a textsiamese model config")
        if int(data.get("format_version", 0)) > FORMAT_VERSION:
            raise ModelError(
                f"{path}: written by a newer textsiamese (format {data['format_version']}); upgrade to load it"
            )
        known = set(cls.__dataclass_fields__)
        try:
            config = cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as error:
            raise ModelError(f"{path}: incomplete model config ({error})") from None
        if not isinstance(config.prompts, dict) or any(
            role not in ROLES or not isinstance(text, str) for role, text in config.prompts.items()
        ):
            raise ModelError(f"{path}: prompts must map query / document to a string, not {config.prompts!r}")
        missing = [role for role in ROLES if role not in config.roles]
        undefined = [name for name in config.roles.values() if name not in config.towers]
        if missing or undefined:
            raise ModelError(f"{path}: roles {missing or undefined} have no tower")
        strange = [role for role in config.long_text if role not in ROLES]
        if strange:
            raise ModelError(f"{path}: long_text names unknown roles {strange}")
        return config

    @staticmethod
    def is_native(directory: Path) -> bool:
        """Whether ``directory`` holds a textsiamese model (rather than a Hugging Face or ST one)."""
        try:
            data = json.loads((directory / "config.json").read_text("utf-8"))
        except (OSError, ValueError):
            return False
        return isinstance(data, dict) and data.get("format") == FORMAT_NAME
