"""A model's own directory: write it atomically, read it back, and the fingerprint that names its contents.

Layout: ``config.json`` (``ModelConfig``), ``model.safetensors`` (every tower's weights) and
``towers/<name>/`` (each tower's own assets: tokenizer, vocabulary). Other layouts (sentence-transformers,
plain Hugging Face, the embedded default) are read by ``textsiamese.model.loading``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model

from textsiamese.data.writers import replace_directory
from textsiamese.errors import ModelError
from textsiamese.model.config import ModelConfig
from textsiamese.towers import Tower, tower_class

if TYPE_CHECKING:
    from textsiamese.model.siamese import SiameseModel

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"

ModelT = TypeVar("ModelT", bound="SiameseModel")


def fingerprint(model: SiameseModel) -> str:
    """A stable SHA-256 over configuration and weights: indexes record it to refuse a different model."""
    digest = hashlib.sha256()
    config = model.config()
    config.library_version = ""
    config.calibration = None
    # How long texts are cut is an encode setting (as precision is), not the model: left out, so
    # fingerprints of models saved before the setting existed are unchanged.
    described = asdict(config)
    del described["long_text"]
    digest.update(json.dumps(described, indent=2, sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:32]


def save_directory(model: SiameseModel, path: str | Path) -> Path:
    """Write ``model``'s directory under a temporary name and move it into place, so an interrupted save
    never leaves a half-written model under ``path``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        for name, tower in model.towers.items():
            tower.save_assets(staging / "towers" / name)  # type: ignore[operator]
        save_model(model.towers, str(staging / WEIGHTS_FILE))
        (staging / CONFIG_FILE).write_text(model.config().to_json(), "utf-8")
        replace_directory(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def load_directory(cls: type[ModelT], path: str | Path) -> ModelT:
    """A ``cls`` model read from a directory ``save_directory`` wrote; corrupt or mismatched weights are a
    ``ModelError`` naming the file."""
    directory = Path(path)
    config = ModelConfig.from_file(directory / CONFIG_FILE)
    towers: dict[str, Tower] = {}
    for name, tower_config in config.towers.items():
        kind = tower_config.get("kind", "")
        towers[name] = tower_class(kind).from_assets(tower_config, directory / "towers" / name)
    model = cls(
        query=towers[config.roles["query"]],
        document=towers[config.roles["document"]],
        normalize=config.normalize,
        similarity=config.similarity,
        calibration=config.calibration,
        prompts=config.prompts,
        long_text=config.long_text,
    )
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelError(f"{directory}: {WEIGHTS_FILE} is missing")
    try:
        load_model(model.towers, str(weights), strict=True)
    except (SafetensorError, RuntimeError, OSError) as error:
        raise ModelError(
            f"{weights}: weights are corrupted or do not fit the config ({_short(error)})"
        ) from None
    model.source = str(directory)
    return model


def _short(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__
