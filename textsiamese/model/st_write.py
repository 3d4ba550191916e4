"""Writing one tower as a sentence-transformers directory, the reverse of ``model.st_layout``.

The layout is the classic one every sentence-transformers release reads (2.x to 6.x): the Transformer at the
top level (Hugging Face ``config.json``, ``model.safetensors``, tokenizer files, ``sentence_bert_config.json``
with the length limit and lower-casing), ``1_Pooling``, then a ``N_Dense`` (config and safetensors weights)
or ``N_Normalize`` folder per head layer, a final ``Normalize`` for a normalising model, ``modules.json`` with
the ``sentence_transformers.models.*`` type names, and ``config_sentence_transformers.json`` with the role's
prompt (also its ``default_prompt_name``, so plain ``encode`` applies it) and the similarity.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import save_file
from torch import nn

from textsiamese.errors import ConfigError
from textsiamese.model.st_layout import ST_SIMILARITIES
from textsiamese.towers import ProjectedTower, Tower, TransformerTower
from textsiamese.towers.projected import DenseLayer, activation_path

_ST_SIMILARITY = {ours: theirs for theirs, ours in ST_SIMILARITIES.items()}
_POOLING_KEYS = {
    "cls": "pooling_mode_cls_token",
    "mean": "pooling_mode_mean_tokens",
    "max": "pooling_mode_max_tokens",
}


def split_tower(tower: Tower, what: str) -> tuple[TransformerTower, list[nn.Module]]:
    """The transformer under ``tower`` and its head layers (none for a plain transformer tower)."""
    base, layers = (tower.base, list(tower.layers)) if isinstance(tower, ProjectedTower) else (tower, [])
    if not isinstance(base, TransformerTower):
        raise ConfigError(
            f"{what} is of kind {base.kind!r}; the sentence-transformers and ONNX formats need a transformer "
            "tower (export it with --format textsiamese)"
        )
    return base, layers


def write_sentence_transformers(
    tower: Tower, directory: Path, *, normalize: bool, prompt: str, role: str, similarity: str
) -> None:
    """Write ``tower`` (plus a final Normalize when ``normalize``) into the existing, empty ``directory``."""
    base, layers = split_tower(tower, f"the {role} tower")
    base.encoder.save_pretrained(str(directory), safe_serialization=True)
    base.tokenizer.save_pretrained(str(directory))
    _write(
        directory / "sentence_bert_config.json",
        {"max_seq_length": base.max_length, "do_lower_case": base.lowercase},
    )
    modules = [_entry(0, "", "Transformer")]
    pooling = {"word_embedding_dimension": base.dimension, "include_prompt": True}
    pooling.update({key: base.pooling == mode for mode, key in _POOLING_KEYS.items()})
    _write(_folder(directory, modules, "Pooling") / "config.json", pooling)
    for layer in [*layers, *([None] if normalize else [])]:
        if isinstance(layer, DenseLayer):
            folder = _folder(directory, modules, "Dense")
            _write(folder / "config.json", _dense_config(layer))
            save_file(
                {k: v.detach().cpu().contiguous() for k, v in layer.state_dict().items()},
                str(folder / "model.safetensors"),
            )
        else:  # an L2Normalize of the head, or the model's own normalisation
            folder = _folder(directory, modules, "Normalize")
            _write(
                folder / "config.json",
                {"module_input_name": "sentence_embedding", "module_output_name": "sentence_embedding"},
            )
    _write(directory / "modules.json", modules)
    settings: dict[str, Any] = {
        "model_type": "SentenceTransformer",
        "prompts": {role: prompt} if prompt else {},
        "default_prompt_name": role if prompt else None,
        "similarity_fn_name": _ST_SIMILARITY.get(similarity),
    }
    _write(directory / "config_sentence_transformers.json", settings)


def _dense_config(layer: DenseLayer) -> dict[str, Any]:
    config: dict[str, Any] = {
        "in_features": layer.in_features,
        "out_features": layer.out_features,
        "bias": layer.bias,
        "activation_function": activation_path(layer.activation_name),
    }
    if layer.use_residual:  # the key only sentence-transformers 5.7+ knows, written only when needed
        config["use_residual"] = True
    return config


def _entry(index: int, path: str, kind: str) -> dict[str, Any]:
    return {"idx": index, "name": str(index), "path": path, "type": f"sentence_transformers.models.{kind}"}


def _folder(directory: Path, modules: list[dict[str, Any]], kind: str) -> Path:
    """A new module folder ``N_Kind`` in ``directory``, recorded in ``modules``."""
    index = len(modules)
    modules.append(_entry(index, f"{index}_{kind}", kind))
    folder = directory / f"{index}_{kind}"
    folder.mkdir()
    return folder


def _write(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", "utf-8")
