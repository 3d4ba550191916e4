"""``SiameseModel``: towers by role, batched encoding, pair similarity, and safetensors save / load.

Siamese is one tower used for both roles; pseudo-siamese is one tower per role (``query`` and ``document``),
of the same or different kinds. The model holds towers by name in a ``ModuleDict`` and maps roles to names,
so a shared tower is one module (its weights saved once) and an untied pair is two.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import itertools
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model
from torch import nn

from textsiamese.data.writers import replace_directory
from textsiamese.errors import ConfigError, ModelError
from textsiamese.inference.onnx import OnnxTower, check_backend, onnx_tower
from textsiamese.inference.precision import (
    autocast_for,
    check_precision,
    default_batch_size,
    quantize_dynamic_int8,
    weights_version,
)
from textsiamese.model.config import ROLES, ModelConfig
from textsiamese.model.distances import get_distance
from textsiamese.towers import LSTMTower, Tower, TransformerTower, tower_class
from textsiamese.towers.base import pad_flat

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


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
        self.source = "<memory>"

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
    ) -> np.ndarray:
        """Embeddings of ``texts`` as a float32 array (N, dimension), in input order.

        Texts are tokenized in chunks of ``ENCODE_CHUNK`` (the next chunk on a worker thread while the current
        one computes), each chunk sorted by token length so every batch pads only to its own longest member,
        padded without per-row Python, and run under inference mode (bf16 autocast, pinned memory and
        non-blocking copies on CUDA). Memory beyond the (N, dimension) result is bounded by the chunk size.
        ``batch_size`` defaults to 16 texts per forward pass on CPU and 64 on CUDA
        (``inference.precision.default_batch_size``). ``normalize`` defaults to the model's own setting.
        A single string gives a 1-D vector. Texts longer than the tower's maximum are truncated, with one
        ``TruncationWarning`` per call giving the count.

        ``precision``: ``"auto"`` (bf16 autocast on CUDA and on CPUs with native bf16, ``avx512_bf16`` or
        ``amx_bf16``; fp32 on other CPUs), ``"fp32"`` (exact: matches sentence-transformers to 1e-6),
        ``"bf16"`` (autocast, CPU or CUDA) or ``"int8"`` (CPU only: a dynamically quantised copy of the tower,
        built once and cached); see ``textsiamese.inference.precision``. ``backend``: ``"torch"`` or
        ``"onnx"`` (default: ``model.backend``, which ``load(..., backend=)`` sets and is ``"torch"``
        otherwise; CPU, transformer towers: the tower exported once and run by ONNX Runtime, fp32 for
        ``auto`` / ``fp32``, int8 weights per channel for ``int8``; needs the ``onnx`` extra; see
        ``textsiamese.inference.onnx``). ``out``: a float32 (N, dimension) array to
        fill instead of a new one, e.g. ``numpy.lib.format.open_memmap`` so a large corpus streams to disk; it
        is returned.
        """
        single = isinstance(texts, str)
        items = [texts] if isinstance(texts, str) else list(texts)
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
        shape = (len(items), tower.dimension)
        if out is None:
            output = np.empty(shape, dtype=np.float32)
        elif out.shape != shape or out.dtype != np.float32:
            raise ConfigError(f"out must be a float32 array of shape {shape}, not {out.dtype} {out.shape}")
        else:
            output = out
        if not items:
            return output
        was_training = self.training
        self.eval()
        runner: Any = tower
        if backend == "onnx":
            runner = self._onnx_tower(role, precision)
            precision = "fp32"  # torch autocast has no say over ONNX Runtime
        elif precision == "int8":
            runner = self._int8_tower(role)
        progress = _progress(len(items), show_progress, f"encode ({role})")
        try:
            with autocast_for(precision, target):
                truncated = _encode_into(runner, items, output, batch_size, normalize, target, progress)
        finally:
            progress.close()
            self.train(was_training)
        if truncated:
            warnings.warn(
                f"{truncated} of {len(items)} texts were longer than {tower.max_length} tokens "
                "and were truncated",
                TruncationWarning,
                stacklevel=2,
            )
        return output[0] if single else output

    def _int8_tower(self, role: str) -> Tower:
        """The cached int8 dynamically-quantised copy of ``role``'s tower, rebuilt if its weights changed."""
        name = self.roles[role]
        tower = self.towers[name]
        cache: dict[str, tuple[Any, Tower]] = self.__dict__.setdefault("_int8_cache", {})
        version = weights_version(tower)
        if name not in cache or cache[name][0] != version:
            cache[name] = (version, quantize_dynamic_int8(tower))  # type: ignore[assignment]
        return cache[name][1]

    def __getstate__(self) -> dict[str, Any]:
        """Pickled and deep-copied without the int8 / ONNX Runtime caches (a session cannot be copied); they
        are rebuilt on first use."""
        state = self.__dict__.copy()
        state.pop("_int8_cache", None)
        state.pop("_onnx_cache", None)
        return state

    def _onnx_tower(self, role: str, precision: str) -> OnnxTower:
        """The cached ONNX Runtime stand-in for ``role``'s tower at ``precision`` and torch's current thread
        count, rebuilt if its weights, buffers or settings changed."""
        name = self.roles[role]
        tower = self.tower(role)
        threads = torch.get_num_threads()
        key = f"{name}:{'int8' if precision == 'int8' else 'fp32'}:{threads}"
        cache: dict[str, tuple[Any, OnnxTower]] = self.__dict__.setdefault("_onnx_cache", {})
        # The graph bakes in the weights, buffers and pooling; in-place ``.data`` edits go unseen, as for int8.
        buffers = tuple((id(b), b._version) for b in tower.buffers())
        version = (weights_version(tower), buffers, repr(tower.config()))
        if key not in cache or cache[key][0] != version:
            cache[key] = (version, onnx_tower(tower, precision))
        return cache[key][1]

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
        """Embeddings of both sides of aligned pairs (a as queries, b as documents)."""
        if self.is_shared:
            both = self.encode([*texts_a, *texts_b], batch_size=batch_size, show_progress=show_progress)
            return both[: len(texts_a)], both[len(texts_a) :]
        a = self.encode(texts_a, role="query", batch_size=batch_size, show_progress=show_progress)
        b = self.encode(texts_b, role="document", batch_size=batch_size, show_progress=show_progress)
        return a, b

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
            library_version=__version__,
        )

    def fingerprint(self) -> str:
        """A stable SHA-256 over configuration and weights: indexes record it to refuse a different model."""
        digest = hashlib.sha256()
        config = self.config()
        config.library_version = ""
        config.calibration = None
        digest.update(config.to_json().encode())
        for name, tensor in sorted(self.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()[:32]

    def save(self, path: str | Path) -> Path:
        """Write the model directory: ``config.json``, ``model.safetensors`` and ``towers/<name>/`` assets.

        The directory is assembled under a temporary name and moved into place, so an interrupted save
        never leaves a half-written model under ``path``.
        """
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            for name, tower in self.towers.items():
                tower.save_assets(staging / "towers" / name)  # type: ignore[operator]
            save_model(self.towers, str(staging / WEIGHTS_FILE))
            (staging / CONFIG_FILE).write_text(self.config().to_json(), "utf-8")
            replace_directory(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return target

    @classmethod
    def from_directory(cls, path: str | Path) -> SiameseModel:
        """Load a directory written by ``save`` (see ``textsiamese.load`` for all supported layouts)."""
        directory = Path(path)
        config = ModelConfig.from_file(directory / CONFIG_FILE)
        towers: dict[str, Tower] = {}
        for name, tower_config in config.towers.items():
            kind = tower_config.get("kind", "")
            towers[name] = tower_class(kind).from_assets(tower_config, directory / "towers" / name)
        query, document = towers[config.roles["query"]], towers[config.roles["document"]]
        model = cls(
            query=query,
            document=document,
            normalize=config.normalize,
            similarity=config.similarity,
            calibration=config.calibration,
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


# Texts tokenized and length-sorted together. Sorting within a chunk (rather than the whole input) keeps the
# token ids of only two chunks in memory at a time, and batches of a 16k-text chunk pad almost as little as a
# global sort would.
ENCODE_CHUNK = 16_384
_PADDING_COLLATES = (TransformerTower.collate, LSTMTower.collate)


@dataclass
class _Chunk:
    """One tokenized chunk, rows reordered longest first and stored back to back."""

    start: int  # index of the chunk's first text in the input
    order: np.ndarray  # input positions (within the chunk) in sorted order
    lengths: np.ndarray  # token counts in sorted order
    offsets: np.ndarray  # where each sorted row starts in ``flat`` (len + 1 entries)
    flat: np.ndarray  # all ids of the chunk, sorted rows back to back
    truncated: int


def _tokenize_chunk(tower: Tower, texts: Sequence[str], start: int) -> _Chunk:
    tokens = tower.tokenize(texts)
    lengths = np.fromiter(map(len, tokens.ids), dtype=np.int64, count=len(tokens.ids))
    # Longest first: a batch too large for memory fails at once, not at the end. Stable, so ties keep order.
    order = np.argsort(-lengths, kind="stable")
    sorted_ids = [tokens.ids[i] for i in order.tolist()]
    lengths = lengths[order]
    flat = np.fromiter(itertools.chain.from_iterable(sorted_ids), dtype=np.int64, count=int(lengths.sum()))
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return _Chunk(start, order, lengths, offsets, flat, tokens.truncated)


def _chunks(tower: Tower, items: Sequence[str]) -> Iterator[_Chunk]:
    """Tokenized chunks in input order; chunk k + 1 is tokenized on a worker thread while k is encoded.

    The fast (Rust) tokenizer releases the GIL, so on a GPU the tokenizer keeps ahead of the model; on CPU
    the overlap is small but free. At most two chunks exist at once.
    """
    starts = range(0, len(items), ENCODE_CHUNK)
    if len(starts) == 1:
        yield _tokenize_chunk(tower, items, 0)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="textsiamese-tokenize") as pool:
        pending = pool.submit(_tokenize_chunk, tower, items[:ENCODE_CHUNK], 0)
        for start in starts:
            chunk = pending.result()
            following = start + ENCODE_CHUNK
            if following < len(items):
                pending = pool.submit(
                    _tokenize_chunk, tower, items[following : following + ENCODE_CHUNK], following
                )
            yield chunk


def _encode_into(
    tower: Tower,
    items: Sequence[str],
    output: np.ndarray,
    batch_size: int,
    normalize: bool,
    target: torch.device,
    progress: Any,
) -> int:
    """Encode ``items`` into ``output`` (N, D) float32 in input order; returns how many were truncated.

    ``output`` may be a memory-mapped ``.npy`` so a corpus larger than memory streams to disk. The ONNX Runtime
    stand-in with ``workers`` > 1 has that many of a chunk's batches run at once on worker threads
    (``OnnxTower.concurrent``); a chunk of one batch runs alone, on all threads.
    """
    cuda = target.type == "cuda"
    pad_id = int(getattr(tower, "pad_id", 0))
    # Towers whose collate is plain right-padding are padded here straight from the chunk's flat ids.
    custom_collate = type(tower).collate not in _PADDING_COLLATES
    truncated = 0

    Forward = Callable[[dict[str, torch.Tensor]], torch.Tensor]
    workers, concurrent = (tower.workers, tower.concurrent) if isinstance(tower, OnnxTower) else (1, tower)

    def encode_batch(
        chunk: _Chunk, begin: int, end: int, staged: torch.Tensor | None, forward: Forward
    ) -> int:
        lengths = chunk.lengths[begin:end]
        if custom_collate:
            ids = [
                chunk.flat[a:b].tolist()
                for a, b in zip(chunk.offsets[begin:end], chunk.offsets[begin + 1 : end + 1], strict=True)
            ]
            features = tower.collate(ids)
        else:
            flat = chunk.flat[chunk.offsets[begin] : chunk.offsets[end]]
            input_ids, mask = pad_flat(flat, lengths, int(lengths[0]) or 1, pad_id)
            features = {"input_ids": input_ids, "attention_mask": mask}
        with torch.inference_mode():  # thread-local: set again on worker threads
            if cuda:
                features = {k: v.pin_memory().to(target, non_blocking=True) for k, v in features.items()}
            vectors = forward(features).float()
            if normalize:
                vectors = F.normalize(vectors, dim=-1)
            if staged is not None:
                staged[begin:end] = vectors
            else:
                output[chunk.start + chunk.order[begin:end]] = vectors.numpy()
        return end - begin

    with contextlib.ExitStack() as stack:
        pool = (
            stack.enter_context(ThreadPoolExecutor(workers, thread_name_prefix="textsiamese-encode"))
            if workers > 1
            else None
        )
        for chunk in _chunks(tower, items):
            truncated += chunk.truncated
            rows = len(chunk.order)
            # On CUDA, vectors stay on the device until the chunk is done: one copy back, no sync per batch.
            with torch.inference_mode():
                staged = (
                    torch.empty((rows, tower.dimension), dtype=torch.float32, device=target) if cuda else None
                )
            begins = range(0, rows, batch_size)
            ends = [min(begin + batch_size, rows) for begin in begins]
            # Never on CUDA: only the ONNX stand-in (CPU) has workers.
            parallel = pool is not None and len(begins) > 1
            run = functools.partial(
                encode_batch, chunk, staged=staged, forward=concurrent if parallel else tower
            )
            done = pool.map(run, begins, ends) if parallel and pool is not None else map(run, begins, ends)
            for count in done:
                progress.update(count)
            if staged is not None:
                output[chunk.start + chunk.order] = staged.cpu().numpy()
    return truncated


def _short(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__


class _NoProgress:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, show: bool, description: str) -> Any:
    if not show:
        return _NoProgress()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, unit="text")
