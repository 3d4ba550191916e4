"""Export one tower of a model as a standalone directory: textsiamese, sentence-transformers or ONNX.

A pseudo-siamese model's users often ship one side alone (the query tower to the search front end, the
document tower to the indexer). ``export_tower_directory`` writes only ``role``'s tower, with that role's
prompt, normalisation and similarity, so the result encodes as ``model.encode(texts, role=role)`` does:

- ``textsiamese``: a siamese model of that tower (both roles use it and its prompt; calibration, which
  compares the two roles, is left out), loadable with ``textsiamese.load``;
- ``st``: a sentence-transformers directory (``model.st_write``), loadable with ``SentenceTransformer(DIR)``;
- ``onnx``: ``model.onnx`` (encoder, pooling and head; the graph of ``inference.onnx.export_tower``, int8
  optional), the tokenizer files and ``onnx_config.json``, which says what a bare ONNX Runtime caller must do
  around the graph: the prompt, stripping and lower-casing, the token limit, the input names, the padding id,
  and whether to L2-normalise the output.

The directory is written under a temporary name beside ``output`` and renamed into place, so a failed export
leaves nothing half-written; an existing non-empty ``output`` is refused unless ``force``.
"""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

from textsiamese.data.writers import replace_directory
from textsiamese.errors import ConfigError
from textsiamese.model.config import ROLES
from textsiamese.model.siamese import SiameseModel
from textsiamese.model.st_write import split_tower, write_sentence_transformers

FORMATS = ("textsiamese", "st", "onnx")
ONNX_CONFIG = "onnx_config.json"
ONNX_FORMAT = "textsiamese-onnx"


def export_tower_directory(
    model: SiameseModel,
    role: str,
    output: str | Path,
    format: str = "textsiamese",
    *,
    int8: bool = False,
    force: bool = False,
) -> Path:
    """Write ``role``'s tower of ``model`` as a standalone ``format`` directory at ``output``; returns it."""
    if role not in ROLES:
        raise ConfigError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    if format not in FORMATS:
        raise ConfigError(f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}")
    if int8 and format != "onnx":
        raise ConfigError("int8 is offered for the onnx format only")
    target = Path(output)
    check_output(target, force)
    tower = copy.deepcopy(model.tower(role)).cpu().eval()
    prompt = model.prompts.get(role, "")
    setting = model.long_text.get(role)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        if format == "textsiamese":
            single = SiameseModel(
                tower,
                normalize=model.normalize,
                similarity=model.similarity_metric,
                prompts={name: prompt for name in ROLES},
                long_text={name: setting for name in ROLES} if setting is not None else None,
            )
            single.save(staging)
        elif format == "st":
            if setting is not None and setting.chunked:
                warnings.warn(
                    f"the {role} role chunks long texts; sentence-transformers truncates them", stacklevel=2
                )
            write_sentence_transformers(
                tower,
                staging,
                normalize=model.normalize,
                prompt=prompt,
                role=role,
                similarity=model.similarity_metric,
            )
        else:
            write_onnx(tower, staging, model=model, role=role, int8=int8)
        replace_directory(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def check_output(target: Path, force: bool) -> None:
    """Refuse a file, or a non-empty directory unless ``force`` (which replaces it once the export is done)."""
    if target.is_file() or target.is_symlink():
        raise ConfigError(f"{target} is a file; give a directory to export into")
    if target.is_dir() and any(target.iterdir()) and not force:
        raise ConfigError(f"{target} already exists and is not empty; pass --force to replace it")


def write_onnx(tower: Any, directory: Path, *, model: SiameseModel, role: str, int8: bool) -> None:
    """``model.onnx``, the tokenizer and ``onnx_config.json`` for ``tower`` (``role``'s, of ``model``)."""
    from textsiamese import __version__
    from textsiamese.inference.onnx import export_tower

    base, layers = split_tower(tower, f"the {role} tower")
    export_tower(tower, directory / "model.onnx", int8=int8)
    base.tokenizer.save_pretrained(str(directory))
    setting = model.long_text.get(role)
    config = {
        "format": ONNX_FORMAT,
        "format_version": 1,
        "role": role,
        "model": "model.onnx",
        "tokenizer": "tokenizer.json",
        "inputs": ["input_ids", "attention_mask"],
        "input_dtype": "int64",
        "output": "embedding",
        "dimension": tower.dimension,
        "prompt": model.prompts.get(role, ""),
        "strip": True,
        "lowercase": base.lowercase,
        "max_length": base.max_length,
        "pad_id": base.pad_id,
        "pooling": base.pooling,
        "pooling_in_graph": True,
        "head": [layer.config() for layer in layers],  # type: ignore[operator]
        "normalize": model.normalize,
        "similarity": model.similarity_metric,
        "int8": int8,
        "long_text": setting.to_dict() if setting is not None else {"mode": "truncate"},
        "library_version": __version__,
    }
    (directory / ONNX_CONFIG).write_text(json.dumps(config, indent=2) + "\n", "utf-8")
