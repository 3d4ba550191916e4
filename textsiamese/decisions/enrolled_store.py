"""Saved reference sets: how an ``OneShotClassifier`` is written to and read from a directory.

A set is ``enrolled.json`` (labels, texts, strategy, thresholds, unsure bands, the logistic head, metric and
the model fingerprint), ``embeddings.npy`` and, when the tower was fine-tuned on the references, ``tower/``
(a model directory, with the fingerprint of the base it was tuned from). It is written to a staging folder
and renamed into place, so a failed save leaves the previous set whole. Reading checks every fingerprint:
vectors from another model are not comparable, so such a set is refused with what to do instead.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from textsiamese.data.writers import replace_directory
from textsiamese.decisions.fewshot import Head
from textsiamese.errors import InputError, ModelError
from textsiamese.model.distances import get_distance

if TYPE_CHECKING:
    from textsiamese.decisions.oneshot import OneShotClassifier
    from textsiamese.model import SiameseModel

FORMAT_NAME = "textsiamese-enrolled"
FORMAT_VERSION = 2
TOWER_DIR = "tower"
META_FILE = "enrolled.json"
VECTORS_FILE = "embeddings.npy"


def save_enrolled(matcher: OneShotClassifier, path: str | Path) -> Path:
    """Write ``enrolled.json`` and ``embeddings.npy`` to ``path`` (staged, then renamed into place)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "model_fingerprint": matcher.model.fingerprint(),
        "model_source": matcher.model.source,
        "metric": matcher.metric,
        "strategy": matcher.strategy,
        "threshold": matcher.threshold,
        "thresholds": matcher.thresholds,
        "unknown_label": matcher.unknown_label,
        "dimension": int(matcher.embeddings.shape[1]),
        "labels": matcher.labels,
        "texts": matcher.texts,
    }
    if matcher.head is not None:
        meta["head"] = matcher.head.to_dict()
    if matcher.bands:
        meta["unsure"] = {k: list(v) for k, v in matcher.bands.items()}
    if matcher.base_model is not None:
        meta.update(
            tower=TOWER_DIR,
            base_fingerprint=matcher.base_model.fingerprint(),
            base_source=matcher.base_model.source,
            tuned_classes=matcher.tuned_classes,
            fine_tune=matcher.tuning,
        )
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        if matcher.base_model is not None:
            matcher.model.save(staging / TOWER_DIR)
        np.save(staging / VECTORS_FILE, matcher.embeddings, allow_pickle=False)
        (staging / META_FILE).write_text(json.dumps(meta, ensure_ascii=False, indent=1), "utf-8")
        replace_directory(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def load_enrolled(
    cls: type[OneShotClassifier], path: str | Path, model: SiameseModel, batch_size: int | None = None
) -> OneShotClassifier:
    """Read a saved set as a ``cls``; refuses it when ``model`` is not the model that encoded it (for a
    fine-tuned set: when ``model`` is not the base its tower was tuned from)."""
    from textsiamese.decisions.oneshot import STRATEGIES as strategies

    directory = Path(path)
    meta_path = directory / META_FILE
    if not meta_path.is_file():
        raise InputError(str(directory), f"not an enrolled reference set ({META_FILE} is missing)")
    try:
        meta = json.loads(meta_path.read_text("utf-8"))
    except ValueError as error:
        raise InputError(str(meta_path), f"cannot parse ({error})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise InputError(str(meta_path), "not an enrolled reference set")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise InputError(str(meta_path), "written by a newer textsiamese; upgrade to read it")
    base = None
    if meta.get("tower"):  # fine-tuned: the tuned tower lives in the set; ``model`` must be its base
        base, model = model, _tuned_tower(directory / str(meta["tower"]), meta, model)
    elif meta.get("model_fingerprint") != model.fingerprint():
        raise ModelError(
            f"{directory}: references were encoded by a different model ({meta.get('model_source')}); "
            "load that model, or enroll the references again with this one"
        )
    try:
        vectors = np.load(directory / VECTORS_FILE, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise InputError(str(directory / VECTORS_FILE), f"cannot read ({error})") from None
    labels, texts = list(meta.get("labels", [])), list(meta.get("texts", []))
    if vectors.ndim != 2 or vectors.shape[0] != len(labels) or len(texts) != len(labels):
        raise InputError(
            str(directory), f"{VECTORS_FILE} has shape {vectors.shape} for {len(labels)} references"
        )
    matcher = cls(
        model,
        strategy=meta.get("strategy", "reference"),
        threshold=meta.get("threshold"),
        unknown_label=meta.get("unknown_label", "unknown"),
        batch_size=batch_size,
    )
    stored = meta.get("thresholds")
    if isinstance(stored, dict):  # sets saved before per-strategy thresholds have only "threshold"
        matcher.thresholds = {str(k): float(v) for k, v in stored.items() if k in strategies}
    matcher.metric = get_distance(meta.get("metric", model.similarity_metric)).name
    matcher.labels, matcher.texts = labels, texts
    matcher.embeddings = vectors.astype(np.float32)
    if isinstance(meta.get("unsure"), dict):
        matcher.bands = {str(k): (float(v[0]), float(v[1])) for k, v in meta["unsure"].items()}
    if isinstance(meta.get("head"), dict):
        matcher.head = Head.from_dict(meta["head"])
    if base is not None:
        matcher.base_model = base
        matcher.tuned_classes = [str(c) for c in meta.get("tuned_classes", [])]
        matcher.tuning = dict(meta.get("fine_tune", {}))
    return matcher


def _tuned_tower(path: Path, meta: dict[str, Any], base: SiameseModel) -> SiameseModel:
    """The fine-tuned model saved in a reference set, checked against the fingerprints the set recorded."""
    from textsiamese.model import SiameseModel

    if base.fingerprint() != meta.get("base_fingerprint"):
        raise ModelError(
            f"{path.parent}: the tower was fine-tuned from a different model ({meta.get('base_source')}); "
            "load that model"
        )
    tuned = SiameseModel.from_directory(path)
    if tuned.fingerprint() != meta.get("model_fingerprint"):
        raise ModelError(f"{path}: the fine-tuned tower does not match the references (changed or corrupted)")
    return tuned
