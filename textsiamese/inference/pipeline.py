"""The batched encode loop behind ``SiameseModel.encode``: texts to an (N, dimension) float32 array, fast.

Texts are tokenized in chunks of ``ENCODE_CHUNK`` (chunk k + 1 on a worker thread while chunk k is encoded),
each chunk sorted by token length, longest first, so a batch pads only to its own longest member, and
padded straight from the chunk's flat id array without per-row Python. Batches run under inference mode;
on CUDA with pinned memory, non-blocking copies and one copy back per chunk; with the ONNX Runtime stand-in
(``inference.onnx.OnnxTower``) several batches of a chunk run at once on worker threads. Vectors land in
input order in the given output array, which may be memory-mapped. What runs each batch (the torch tower,
its int8 copy, the ONNX stand-in) and under which autocast is chosen by the caller; this module only
feeds it.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from textsiamese.errors import ConfigError
from textsiamese.inference.long_text import LongText, windows
from textsiamese.inference.long_text import pool as pool_windows
from textsiamese.inference.onnx import OnnxTower
from textsiamese.towers import LSTMTower, Tower, TransformerTower
from textsiamese.towers.base import pad_flat

# Texts tokenized and length-sorted together. Sorting within a chunk (rather than the whole input) keeps the
# token ids of only two chunks in memory at a time, and batches of a 16k-text chunk pad almost as little as a
# global sort would.
ENCODE_CHUNK = 16_384
_PADDING_COLLATES = (TransformerTower.collate, LSTMTower.collate)


@dataclass
class _Chunk:
    """One tokenized chunk, rows reordered longest first and stored back to back.

    A row is a text, or with chunk-then-pool one window of a text: ``starts`` (texts + 1 entries, input
    order) then says which rows each text owns (``inference.long_text.windows``)."""

    start: int  # index of the chunk's first text in the input
    order: np.ndarray  # row positions (within the chunk) in sorted order
    lengths: np.ndarray  # token counts in sorted order
    offsets: np.ndarray  # where each sorted row starts in ``flat`` (len + 1 entries)
    flat: np.ndarray  # all ids of the chunk, sorted rows back to back
    truncated: int
    tokens: np.ndarray  # each text's whole token count, special tokens included, in input order
    starts: np.ndarray | None = None  # chunk-then-pool: text i owns rows starts[i]:starts[i + 1]


def _tokenize_chunk(tower: Tower, texts: Sequence[str], start: int, long_text: LongText | None) -> _Chunk:
    starts = None
    if long_text is not None and long_text.chunked:
        prefix, suffix = tower.special_ids()
        content = tower.content_ids(texts)
        ids, starts = windows(content, prefix, suffix, long_text)
        tokens = np.fromiter((len(row) for row in content), dtype=np.int64, count=len(content))
        tokens += len(prefix) + len(suffix)
        truncated = 0
    else:
        tokenized = tower.tokenize(texts)
        ids, truncated = tokenized.ids, tokenized.truncated
        whole = tokenized.lengths if tokenized.lengths is not None else map(len, ids)
        tokens = np.fromiter(whole, dtype=np.int64, count=len(ids))
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    # Longest first: a batch too large for memory fails at once, not at the end. Stable, so ties keep order.
    order = np.argsort(-lengths, kind="stable")
    sorted_ids = [ids[i] for i in order.tolist()]
    lengths = lengths[order]
    flat = np.fromiter(itertools.chain.from_iterable(sorted_ids), dtype=np.int64, count=int(lengths.sum()))
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return _Chunk(start, order, lengths, offsets, flat, truncated, tokens, starts)


def _chunks(tower: Tower, items: Sequence[str], long_text: LongText | None = None) -> Iterator[_Chunk]:
    """Tokenized chunks in input order; chunk k + 1 is tokenized on a worker thread while k is encoded.

    The fast (Rust) tokenizer releases the GIL, so on a GPU the tokenizer keeps ahead of the model; on CPU
    the overlap is small but free. At most two chunks exist at once.
    """
    starts = range(0, len(items), ENCODE_CHUNK)
    if len(starts) == 1:
        yield _tokenize_chunk(tower, items, 0, long_text)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="textsiamese-tokenize") as pool:
        pending = pool.submit(_tokenize_chunk, tower, items[:ENCODE_CHUNK], 0, long_text)
        for start in starts:
            chunk = pending.result()
            following = start + ENCODE_CHUNK
            if following < len(items):
                pending = pool.submit(
                    _tokenize_chunk, tower, items[following : following + ENCODE_CHUNK], following, long_text
                )
            yield chunk


def _batch_features(
    tower: Tower, chunk: _Chunk, begin: int, end: int, custom_collate: bool, pad_id: int
) -> dict[str, torch.Tensor]:
    """The padded features of sorted rows ``begin:end`` of ``chunk``: by the tower's own ``collate`` when it
    is not plain right-padding, else padded here straight from the chunk's flat ids."""
    lengths = chunk.lengths[begin:end]
    if custom_collate:
        ids = [
            chunk.flat[a:b].tolist()
            for a, b in zip(chunk.offsets[begin:end], chunk.offsets[begin + 1 : end + 1], strict=True)
        ]
        return tower.collate(ids)
    flat = chunk.flat[chunk.offsets[begin] : chunk.offsets[end]]
    input_ids, mask = pad_flat(flat, lengths, int(lengths[0]) or 1, pad_id)
    return {"input_ids": input_ids, "attention_mask": mask}


def encode_into(
    tower: Tower,
    items: Sequence[str],
    output: np.ndarray,
    batch_size: int,
    normalize: bool,
    target: torch.device,
    progress: Any,
    long_text: LongText | None = None,
    tokens: np.ndarray | None = None,
) -> int:
    """Encode ``items`` into ``output`` (N, D) float32 in input order; returns how many were truncated.

    ``output`` may be a memory-mapped ``.npy`` so a corpus larger than memory streams to disk. The ONNX Runtime
    stand-in with ``workers`` > 1 has that many of a chunk's batches run at once on worker threads
    (``OnnxTower.concurrent``); a chunk of one batch runs alone, on all threads. ``long_text`` with mode
    ``chunk`` (its ``chunk_length`` resolved) encodes each long text as windows, batched with every other
    row, and pools them (``inference.long_text``). ``tokens``: an (N,) int64 array to fill with each text's
    whole token count.

    One function rather than several: the batch step and the chunk loop share this call's state (the worker
    pool, the current chunk's CUDA staging buffer, the padding choice), and the CUDA path (vectors staged on
    the device, one copy back per chunk) reads correctly only beside that loop.
    """
    cuda = target.type == "cuda"
    pad_id = int(getattr(tower, "pad_id", 0))
    # Towers whose collate is plain right-padding are padded here straight from the chunk's flat ids.
    custom_collate = type(tower).collate not in _PADDING_COLLATES
    truncated = 0
    chunked = long_text is not None and long_text.chunked
    # Window vectors are normalised (or not) by ``pool``, with the pooled vector.
    normalize_rows = normalize and not chunked

    Forward = Callable[[dict[str, torch.Tensor]], torch.Tensor]
    workers, concurrent = (tower.workers, tower.concurrent) if isinstance(tower, OnnxTower) else (1, tower)

    def encode_batch(
        chunk: _Chunk, begin: int, end: int, dest: np.ndarray, staged: torch.Tensor | None, forward: Forward
    ) -> int:
        features = _batch_features(tower, chunk, begin, end, custom_collate, pad_id)
        with torch.inference_mode():  # thread-local: set again on worker threads
            if cuda:
                features = {k: v.pin_memory().to(target, non_blocking=True) for k, v in features.items()}
            vectors = forward(features).float()
            if normalize_rows:
                vectors = F.normalize(vectors, dim=-1)
            if staged is not None:
                staged[begin:end] = vectors
            else:
                dest[chunk.order[begin:end]] = vectors.numpy()
        return end - begin

    with contextlib.ExitStack() as stack:
        pool = (
            stack.enter_context(ThreadPoolExecutor(workers, thread_name_prefix="textsiamese-encode"))
            if workers > 1
            else None
        )
        for chunk in _chunks(tower, items, long_text):
            truncated += chunk.truncated
            texts = len(chunk.tokens)
            if tokens is not None:
                tokens[chunk.start : chunk.start + texts] = chunk.tokens
            rows = len(chunk.order)
            # The chunk's rows land in its slice of ``output`` (a view), or for windows in a buffer pooled below.
            dest = (
                np.empty((rows, tower.dimension), dtype=np.float32)
                if chunk.starts is not None
                else output[chunk.start : chunk.start + texts]
            )
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
                encode_batch, chunk, dest=dest, staged=staged, forward=concurrent if parallel else tower
            )
            done = pool.map(run, begins, ends) if parallel and pool is not None else map(run, begins, ends)
            for count in done:
                if chunk.starts is None:  # windows count as their text, below
                    progress.update(count)
            if staged is not None:
                dest[chunk.order] = staged.cpu().numpy()
            if chunk.starts is not None:
                assert long_text is not None
                output[chunk.start : chunk.start + texts] = pool_windows(
                    dest, chunk.starts, long_text.pooling, normalize
                )
                progress.update(texts)
    return truncated


def output_array(out: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    """The array ``encode`` fills: ``out`` when given (it must be float32 of ``shape``), else a new one."""
    if out is None:
        return np.empty(shape, dtype=np.float32)
    if out.shape != shape or out.dtype != np.float32:
        raise ConfigError(f"out must be a float32 array of shape {shape}, not {out.dtype} {out.shape}")
    return out


class _NoProgress:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, show: bool, description: str) -> Any:
    """A tqdm bar over ``total`` texts when ``show``, else one that does nothing."""
    if not show:
        return _NoProgress()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, unit="text")
