"""``SiameseModel``: towers by role, batched encoding, pair similarity, and safetensors save / load.

Siamese is one tower used for both roles; pseudo-siamese is one tower per role (``query`` and ``document``),
of the same or different kinds. The model holds towers by name in a ``ModuleDict`` and maps roles to names,
so a shared tower is one module (its weights saved once) and an untied pair is two.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from textsiamese.errors import ConfigError
from textsiamese.inference.long_text import LongText, pair_truncation_message, truncation_message
from textsiamese.inference.onnx import check_backend
from textsiamese.inference.pipeline import ENCODE_CHUNK, encode_into, output_array, progress_bar
from textsiamese.inference.precision import (
    autocast_for,
    check_precision,
    default_batch_size,
)
from textsiamese.inference.runners import RunnerCache
from textsiamese.model import persistence
from textsiamese.model.config import ROLES, ModelConfig
from textsiamese.model.distances import get_distance
from textsiamese.towers import Tower

WEIGHTS_FILE = persistence.WEIGHTS_FILE
CONFIG_FILE = persistence.CONFIG_FILE


class TruncationWarning(UserWarning):
    """Some texts were longer than the tower's maximum length and were cut."""


warnings.simplefilter("always", TruncationWarning)


class SiameseModel(nn.Module):
    """A siamese (shared tower) or pseudo-siamese (tower per role) text encoder.

    >>> model = SiameseModel(tower)                              # doctest: +SKIP
    >>> model = SiameseModel(query=lstm_tower, document=bert)    # doctest: +SKIP
    >>> model.encode(["a cat", "a dog"]).shape                   # doctest: +SKIP
    (2, 384)
    >>> model.similarity(["a cat"], ["a kitten"])                # doctest: +SKIP
    array([0.78], dtype=float32)
    """

    def __init__(
        self,
        tower: Tower | None = None,
        *,
        query: Tower | None = None,
        document: Tower | None = None,
        normalize: bool = False,
        similarity: str = "cosine",
        calibration: dict[str, Any] | None = None,
        prompts: dict[str, str] | None = None,
        long_text: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if tower is not None:
            if query is not None or document is not None:
                raise ConfigError("give either one shared tower or query= and document= towers, not both")
            query = document = tower
        if query is None or document is None:
            raise ConfigError("a model needs a shared tower, or both a query and a document tower")
        if query.dimension != document.dimension:
            raise ConfigError(
                f"query tower gives {query.dimension}-d vectors but document tower {document.dimension}-d; "
                "their vectors must be comparable"
            )
        if query is document:
            self.towers = nn.ModuleDict({"shared": query})
            self.roles = {"query": "shared", "document": "shared"}
        else:
            self.towers = nn.ModuleDict({"query": query, "document": document})
            self.roles = {"query": "query", "document": "document"}
        self.normalize = normalize
        # Runtime choice, never saved: the backend encode uses when not told ("torch" or "onnx").
        self.backend = "torch"
        self.similarity_metric = get_distance(similarity).name
        self.calibration = calibration
        self.prompts = check_prompts(prompts or {})
        self.source = "<memory>"
        # Per role: how texts past the tower's maximum are encoded (saved; see ``set_long_text``).
        self.long_text: dict[str, LongText] = {}
        for role, setting in (long_text or {}).items():
            self.set_long_text(setting, role=role)

    @classmethod
    def untied(cls, tower: Tower, **options: Any) -> SiameseModel:
        """A pseudo-siamese model whose two towers start as copies of ``tower`` and train apart."""
        return cls(query=tower, document=copy.deepcopy(tower), **options)

    @property
    def is_shared(self) -> bool:
        """True for a siamese model (one tower for both roles)."""
        return self.roles["query"] == self.roles["document"]

    @property
    def dimension(self) -> int:
        return self.tower("query").dimension

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def tower(self, role: str) -> Tower:
        """The tower that encodes ``role`` (``query`` or ``document``)."""
        if role not in self.roles:
            raise ConfigError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
        tower = self.towers[self.roles[role]]
        assert isinstance(tower, Tower)
        return tower

    def set_long_text(
        self, setting: str | Mapping[str, Any] | LongText | None, role: str | None = None
    ) -> None:
        """How ``role`` (both roles when ``None``) encodes texts longer than its tower reads, saved with the
        model: ``"truncate"`` (the default), ``"chunk"`` or a ``LongText`` / dict with chunk length, overlap
        and pooling (see ``textsiamese.inference.long_text``)."""
        value = LongText.of(setting)
        for name in ROLES if role is None else (role,):
            tower = self.tower(name)
            if value.chunked:
                value.for_tower(
                    tower.max_length, sum(map(len, tower.special_ids()))
                )  # refuses what cannot fit
            self.long_text[name] = value

    def token_counts(
        self, texts: Sequence[str], role: str = "query", prompt: str | None = None
    ) -> np.ndarray:
        """Each text's whole token count for ``role``'s tower (its prompt and special tokens included, before
        truncation), as an int64 array: more than ``tower(role).max_length`` means truncated unless chunked."""
        tower = self.tower(role)
        items = self.prompted(texts, role, prompt)
        counts = np.zeros(len(items), dtype=np.int64)
        for start in range(0, len(items), ENCODE_CHUNK):
            tokens = tower.tokenize(items[start : start + ENCODE_CHUNK])
            counts[start : start + len(tokens.ids)] = tokens.lengths or [len(row) for row in tokens.ids]
        return counts

    def num_parameters(self) -> int:
        """Number of distinct trainable values (a shared tower counts once)."""
        return sum(p.numel() for p in self.parameters())

    def encode(
        self,
        texts: str | Sequence[str],
        role: str = "query",
        batch_size: int | None = None,
        normalize: bool | None = None,
        device: str | torch.device | None = None,
        show_progress: bool = False,
        *,
        precision: str = "auto",
        backend: str | None = None,
        out: np.ndarray | None = None,
        prompt: str | None = None,
        long_text: str | Mapping[str, Any] | LongText | None = None,
        return_tokens: bool = False,
    ) -> Any:
        """Embeddings of ``texts`` as a float32 array (N, dimension), in input order.

        The loop lives in ``textsiamese.inference.pipeline``: texts are tokenized in chunks of
        ``ENCODE_CHUNK`` (the next chunk on a worker thread while the current one computes), each chunk
        sorted by token length so every batch pads only to its own longest member, padded without per-row
        Python, and run under inference mode (bf16 autocast, pinned memory and non-blocking copies on CUDA). Memory beyond the (N, dimension) result is bounded by the chunk size.
        ``batch_size`` defaults to 16 texts per forward pass on CPU and 64 on CUDA
        (``inference.precision.default_batch_size``). ``normalize`` defaults to the model's own setting.
        A single string gives a 1-D vector. Texts longer than the tower's maximum are truncated, with one
        ``TruncationWarning`` per call giving the count and the first few indexes (0-based input positions).

        ``long_text``: ``"truncate"``, ``"chunk"`` or a ``LongText`` (chunk length, overlap, pooling) for this
        call; default the role's saved setting (``set_long_text``; truncate). With ``"chunk"`` a long text is
        encoded as overlapping windows of the tower's maximum, batched with the short texts, and their
        vectors pooled into one (``textsiamese.inference.long_text``). ``return_tokens``: also return each
        text's whole token count (int64 array, or an int for a single string), as ``(vectors, tokens)``.

        ``precision``: ``"auto"`` (bf16 autocast on CUDA and on CPUs with native bf16, ``avx512_bf16`` or
        ``amx_bf16``; fp32 on other CPUs), ``"fp32"`` (exact: matches sentence-transformers to 1e-6),
        ``"bf16"`` (autocast, CPU or CUDA) or ``"int8"`` (CPU only: a dynamically quantised copy of the tower,
        built once and cached); see ``textsiamese.inference.precision``. ``backend``: ``"torch"`` or
        ``"onnx"`` (default: ``model.backend``, which ``load(..., backend=)`` sets and is ``"torch"``
        otherwise; CPU, transformer towers: the tower exported once and run by ONNX Runtime, fp32 for
        ``auto`` / ``fp32``, int8 weights per channel for ``int8``; needs the ``onnx`` extra; see
        ``textsiamese.inference.onnx``). ``out``: a float32 (N, dimension) array to
        fill instead of a new one, e.g. ``numpy.lib.format.open_memmap`` so a large corpus streams to disk; it
        is returned. ``prompt``: the prefix put before every text (``""`` for none); default the model's
        own prompt for ``role`` (``model.prompts``, saved in the model config), so ``encode(texts,
        role="query")`` of a model with ``prompts={"query": "query: "}`` equals ``encode(["query: " + t for t
        in texts], prompt="")``. The prompt's tokens count towards the tower's maximum length.

        (Long for its docstring and argument checks, each with its own message; the batching itself is
        :func:`textsiamese.inference.pipeline.encode_into`.)
        """
        single = isinstance(texts, str)
        items = self.prompted([texts] if isinstance(texts, str) else list(texts), role, prompt)
        if batch_size is not None and batch_size < 1:
            raise ConfigError("batch_size must be at least 1")
        tower = self.tower(role)
        backend = backend or self.backend
        check_backend(backend, precision, torch.device(device) if device is not None else self.device)
        if device is not None:
            self.to(device)
        target = self.device
        batch_size = batch_size or default_batch_size(target)
        check_precision(precision, target)
        normalize = self.normalize if normalize is None else normalize
        output = output_array(out, (len(items), tower.dimension))
        setting = self._long_text_for(role, long_text)
        tokens = np.zeros(len(items), dtype=np.int64)
        if not items:
            return (output, tokens) if return_tokens else output
        was_training = self.training
        self.eval()
        runner, precision = self._runner(role, backend, precision)
        progress = progress_bar(len(items), show_progress, f"encode ({role})")
        try:
            with autocast_for(precision, target):
                truncated = encode_into(
                    runner, items, output, batch_size, normalize, target, progress, setting, tokens
                )
        finally:
            progress.close()
            self.train(was_training)
        if truncated:
            rows = np.flatnonzero(tokens > tower.max_length).tolist()
            warnings.warn(
                truncation_message(truncated, len(items), tower.max_length, rows, "indexes"),
                TruncationWarning,
                stacklevel=2,
            )
        vectors = output[0] if single else output
        if return_tokens:
            return vectors, int(tokens[0]) if single else tokens
        return vectors

    def _long_text_for(
        self, role: str, override: str | Mapping[str, Any] | LongText | None
    ) -> LongText | None:
        """The long-text setting of this encode with its chunk length resolved, or None to truncate."""
        setting = LongText.of(override) if override is not None else self.long_text.get(role)
        if setting is None or not setting.chunked:
            return None
        tower = self.tower(role)
        return setting.for_tower(tower.max_length, sum(map(len, tower.special_ids())))

    def prompted(self, texts: Sequence[str], role: str, prompt: str | None = None) -> list[str]:
        """``texts`` with ``role``'s prompt in front: ``prompt`` when given (``""``: none), else the model's
        own for ``role``. Everything that tokenizes for a role (encode, training batches, the service's
        batcher) goes through here, so a prompt is applied the same way everywhere."""
        if role not in self.roles:
            raise ConfigError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
        prefix = self.prompts.get(role, "") if prompt is None else prompt
        if not isinstance(prefix, str):
            raise ConfigError(f"prompt must be a string, not {type(prefix).__name__}")
        return [prefix + text for text in texts] if prefix else list(texts)

    def _runner(self, role: str, backend: str, precision: str) -> tuple[Any, str]:
        """What runs ``role``'s batches under which autocast precision (``inference.runners``)."""
        cache = self.__dict__.get("_runners")
        if not isinstance(cache, RunnerCache):
            # Set through __dict__: nn.Module's __setattr__ would pass it by; a copy or unpickle has none.
            cache = self.__dict__["_runners"] = RunnerCache()
        return cache.runner(self.roles[role], self.tower(role), backend, precision)

    def similarity(
        self,
        texts_a: Sequence[str],
        texts_b: Sequence[str],
        metric: str | None = None,
        batch_size: int | None = None,
        show_progress: bool = False,
    ) -> np.ndarray:
        """The similarity (or distance, for distance metrics) of each aligned pair ``(a[i], b[i])``.

        ``texts_a`` are encoded as queries and ``texts_b`` as documents; for a shared tower both sides go
        through one encoding pass. ``metric`` defaults to the model's own (cosine unless configured).
        """
        if len(texts_a) != len(texts_b):
            raise ConfigError(f"got {len(texts_a)} first texts but {len(texts_b)} second texts")
        a, b = self.encode_pairs(texts_a, texts_b, batch_size=batch_size, show_progress=show_progress)
        distance = get_distance(metric or self.similarity_metric)
        return distance.pairwise(torch.from_numpy(a), torch.from_numpy(b)).numpy()

    def encode_pairs(
        self,
        texts_a: Sequence[str],
        texts_b: Sequence[str],
        batch_size: int | None = None,
        show_progress: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings of both sides of aligned pairs (a as queries, b as documents), each side with its role's
        prompt; a truncation warning names the pairs' indexes."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TruncationWarning)
            if self.is_shared and self.long_text.get("query") == self.long_text.get("document"):
                # One pass over both sides: the same tower and long-text handling, each side's own prompt.
                both, tokens = self.encode(
                    [*self.prompted(texts_a, "query"), *self.prompted(texts_b, "document")],
                    batch_size=batch_size,
                    show_progress=show_progress,
                    return_tokens=True,
                    prompt="",
                )
                a, b = both[: len(texts_a)], both[len(texts_a) :]
                tokens_a, tokens_b = tokens[: len(texts_a)], tokens[len(texts_a) :]
            else:
                options: dict[str, Any] = {"batch_size": batch_size, "show_progress": show_progress}
                a, tokens_a = self.encode(texts_a, role="query", return_tokens=True, **options)
                b, tokens_b = self.encode(texts_b, role="document", return_tokens=True, **options)
        cut_a, cut_b = self.truncated(tokens_a, "query"), self.truncated(tokens_b, "document")
        if cut_a.any() or cut_b.any():
            limits = sorted({self.tower("query").max_length, self.tower("document").max_length})
            message = pair_truncation_message(cut_a, cut_b, " or ".join(map(str, limits)))
            warnings.warn(message, TruncationWarning, stacklevel=2)
        return a, b

    def truncated(self, tokens: np.ndarray, role: str = "query") -> np.ndarray:
        """Which texts, by their whole token counts (``encode(..., return_tokens=True)``), lost tokens in
        ``role``'s encode: longer than the tower reads, unless the role chunks long texts."""
        setting = self.long_text.get(role)
        if setting is not None and setting.chunked:
            return np.zeros(len(tokens), dtype=bool)
        return np.asarray(tokens) > self.tower(role).max_length

    def config(self) -> ModelConfig:
        """The configuration ``save`` writes (and ``load`` reads)."""
        from textsiamese import __version__

        return ModelConfig(
            towers={name: tower.config() for name, tower in self.towers.items()},  # type: ignore[operator]
            roles=dict(self.roles),
            normalize=self.normalize,
            dimension=self.dimension,
            similarity=self.similarity_metric,
            calibration=self.calibration,
            prompts=dict(self.prompts),
            library_version=__version__,
            long_text={role: s.to_dict() for role, s in sorted(self.long_text.items()) if s != LongText()},
        )

    def fingerprint(self) -> str:
        """A stable SHA-256 over configuration and weights: indexes record it to refuse a different model."""
        return persistence.fingerprint(self)

    def save(self, path: str | Path) -> Path:
        """Write the model directory (``config.json``, ``model.safetensors``, ``towers/<name>/``) atomically:
        an interrupted save never leaves a half-written model under ``path``."""
        return persistence.save_directory(self, path)

    @classmethod
    def from_directory(cls, path: str | Path) -> SiameseModel:
        """Load a directory written by ``save`` (see ``textsiamese.load`` for all supported layouts)."""
        return persistence.load_directory(cls, path)


def check_prompts(prompts: dict[str, str]) -> dict[str, str]:
    """``prompts`` checked: keys are roles, values strings; empty prompts are dropped."""
    if not isinstance(prompts, dict):
        raise ConfigError(f"prompts must map roles to strings, not {type(prompts).__name__}")
    for role, text in prompts.items():
        if role not in ROLES:
            raise ConfigError(f"prompts: unknown role {role!r}; choose from {', '.join(ROLES)}")
        if not isinstance(text, str):
            raise ConfigError(f"prompts.{role} must be a string, not {type(text).__name__}")
    return {role: text for role, text in prompts.items() if text}
