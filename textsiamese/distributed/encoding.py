"""Encoding on Ray Data: one model per actor, a corpus cut into fixed-size shards, resumable.

Two entry points. :func:`encode_dataset` is for users who already live in Ray: a Dataset with a text column
in, the same Dataset with a ``vector`` column out, computed by ``map_batches`` over a pool of actors that each
load the model once. :func:`encode_corpus` is what ``textsiamese encode --engine ray`` runs: a corpus file
(or glob) is streamed by a single read task, cut into shards of ``shard_size`` rows with global row numbers,
and each shard is encoded and written (:mod:`textsiamese.distributed.shards`) by an actor; the driver only
collects one small row per shard and writes the manifest last.

Why one read task with ``num_cpus=0``: the rows must be numbered in file order, which one reader does
naturally, and a reader that reserves no CPU never competes with the actors for a slot (on 2 cores, two
actors of one CPU each and a reader of one would wait on each other forever). Ray Data's backpressure keeps
only a few shards in flight, so memory is bounded by the shard size, not the corpus.

A worker that dies is restarted by Ray and its shard retried (``max_restarts`` / ``max_task_retries``);
shards are written atomically and identified by their row range, so a retried shard overwrites its own files
and no row is written twice. If the job still fails, the finished shards stay and ``resume=True`` skips them.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from textsiamese.distributed import shards as shard_files
from textsiamese.distributed.corpus import Chunk, expand_inputs, iter_corpus
from textsiamese.distributed.runtime import cluster_cpus, connect, require_ray
from textsiamese.errors import ConfigError, InputError, TextSiameseError


def _model_path(model: str | os.PathLike[str] | None) -> str | None:
    return None if model is None else str(Path(model).resolve())


class _Encoder:
    """What every actor holds: one loaded model and how to encode with it."""

    SETTINGS: dict[str, Any] = {}  # noqa: RUF012  (set on the subclass that :func:`_bound` makes)

    def __init__(self) -> None:
        import torch

        from textsiamese.model.loading import load

        settings = self.SETTINGS
        threads = settings.get("threads")
        if threads:
            torch.set_num_threads(int(threads))
        self.model = load(settings["model"], backend=settings["backend"])
        self.settings = settings

    def encode(self, texts: list[str]) -> np.ndarray:
        vectors = self.model.encode(texts, **self.settings["encode"])
        return np.asarray(vectors, dtype=np.float32)


class BatchEncoder(_Encoder):
    """``map_batches`` callable for :func:`encode_dataset`: adds a ``vector`` column to each batch."""

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        column = self.settings["text_column"]
        texts = [str(t) for t in batch[column].tolist()]
        return {**batch, "vector": self.encode(texts)}


class ShardEncoder(_Encoder):
    """``map_batches`` callable for :func:`encode_corpus`: encodes and writes one shard per row."""

    def __init__(self) -> None:
        super().__init__()
        if self.model.fingerprint() != self.settings["fingerprint"]:
            raise ConfigError(
                f"{self.settings['model']}: the model changed while the job ran (fingerprint differs)"
            )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        counts = []
        for shard, first_row, done, payload in zip(
            batch["shard"].tolist(),
            batch["first_row"].tolist(),
            batch["done"].tolist(),
            batch["payload"].tolist(),
            strict=True,
        ):
            rows = json.loads(payload)
            if not done:
                vectors = self.encode(rows["texts"])
                directory = Path(self.settings["output"])
                shard_files.write_shard(
                    directory, shard, first_row, rows, vectors, self.settings["fingerprint"]
                )
            counts.append(len(rows["ids"]))
        return {
            "shard": batch["shard"],
            "first_row": batch["first_row"],
            "count": np.asarray(counts, dtype=np.int64),
            "encoded": ~batch["done"].astype(bool),
        }


def _settings(
    model: str | os.PathLike[str] | None,
    backend: str,
    cpus: float,
    encode: dict[str, Any],
    **extra: Any,
) -> dict[str, Any]:
    """What each actor is built from: the model path and backend, its torch threads (its CPUs), the
    ``SiameseModel.encode`` keywords, and the job's own entries (``extra``)."""
    batch_size = encode.get("batch_size")
    if batch_size is not None and batch_size < 1:
        raise ConfigError("batch_size must be at least 1")
    return {
        "model": _model_path(model),
        "backend": backend,
        "threads": max(1, int(cpus)),
        "encode": encode,
        **extra,
    }


def _bound(cls: type[_Encoder], settings: dict[str, Any]) -> type[_Encoder]:
    """``cls`` with its settings as a class attribute: Ray ships the class by value to each actor, so the
    actors need no constructor arguments (which Ray would keep in the object store for restarts)."""
    return type(cls.__name__, (cls,), {"SETTINGS": settings, "__module__": __name__})


def _actor_args(workers: int, cpus_per_worker: float | None) -> dict[str, Any]:
    """``map_batches`` keywords: a fixed pool of ``workers`` actors, each reserving ``cpus_per_worker`` CPUs
    (default: the cluster's CPUs shared out). Ray Data restarts a dead actor and retries its task
    (``max_restarts`` / ``max_task_retries`` default to -1 for actor pools)."""
    from ray.data import ActorPoolStrategy

    if workers < 1:
        raise ConfigError("workers must be at least 1")
    cpus = cpus_per_worker if cpus_per_worker is not None else max(1, cluster_cpus() // workers)
    return {"compute": ActorPoolStrategy(size=workers), "num_cpus": cpus}


def encode_dataset(
    ds: Any,
    model: str | os.PathLike[str] | None = None,
    *,
    text_column: str = "text",
    backend: str = "torch",
    workers: int = 1,
    cpus_per_worker: float | None = None,
    rows_per_call: int = 256,
    **options: Any,
) -> Any:
    """A Ray Dataset of texts → the same rows with a ``vector`` column (float32, the model's dimension).

    Every other column (an ``id`` column, say) passes through, so ids stay with their vectors whatever order
    Ray produces rows in. ``model``: a model directory (every worker must see it) or None for the embedded
    default, loaded with ``backend``. ``workers`` actors each load the model once and get
    ``cpus_per_worker`` CPUs (default: the cluster's CPUs shared out), which is also their torch thread
    count. ``rows_per_call`` texts go to an actor at a time (``map_batches``' ``batch_size``). ``options``
    are ``SiameseModel.encode`` keywords (``role``, default ``"document"``; ``precision``, ``batch_size``,
    ``normalize``, ``prompt``, ...).

    >>> import ray.data                                                   # doctest: +SKIP
    >>> ds = ray.data.from_items([{"id": "a", "text": "a cat sat"}])      # doctest: +SKIP
    >>> encode_dataset(ds).take(1)[0]["vector"].shape                     # doctest: +SKIP
    (384,)
    """
    require_ray()
    args = _actor_args(workers, cpus_per_worker)
    encode = {"role": "document", **options}
    settings = _settings(model, backend, args["num_cpus"], encode, text_column=text_column)
    return ds.map_batches(
        _bound(BatchEncoder, settings), batch_size=rows_per_call, batch_format="numpy", **args
    )


def _shard_rows(
    files: list[str],
    corpus_options: dict[str, Any],
    shard_size: int,
    output: str,
    fingerprint: str,
    resume: bool,
) -> Any:
    """The read task's body: one single-row block per shard, in order, flagged ``done`` when a resumed run
    finds it finished (its rows are still read, to number the ones after it)."""
    import pyarrow as pa

    from textsiamese.distributed.corpus import shards

    directory = Path(output)
    first_row = 0
    for number, chunk in enumerate(shards(iter_corpus(files, **corpus_options), shard_size)):
        digest = shard_files.input_digest(chunk.ids, chunk.texts, chunk.metadata)
        done = resume and shard_files.finished(directory, number, fingerprint, digest)[0]
        payload = {"ids": chunk.ids, "texts": chunk.texts, "metadata": chunk.metadata, "input_sha256": digest}
        yield pa.table(
            {
                "shard": [number],
                "first_row": [first_row],
                "done": [done],
                "payload": [json.dumps(payload, ensure_ascii=False)],
            }
        )
        first_row += len(chunk)


def _shard_dataset(read: Callable[[], Any]) -> Any:
    """A Ray Dataset from one read task running ``read`` (a generator of blocks) with no CPU reserved."""
    from ray.data import Datasource, ReadTask, read_datasource
    from ray.data.block import BlockMetadata

    class CorpusShards(Datasource):
        def estimate_inmemory_data_size(self) -> int | None:
            return None

        def get_read_tasks(self, parallelism: int, *args: Any, **kwargs: Any) -> list[Any]:
            # the keywords after parallelism differ between Ray versions; one task whatever they are
            meta = BlockMetadata(num_rows=None, size_bytes=None, exec_stats=None, input_files=None)
            return [ReadTask(read, meta)]

    return read_datasource(CorpusShards(), num_cpus=0, override_num_blocks=1)


@contextlib.contextmanager
def _one_block_per_shard(show_progress: bool) -> Iterator[None]:
    """Ray Data settings for one job: every shard its own block (Ray coalesces blocks under 1 MiB, which
    would hand a whole small corpus to one actor), and Ray Data's progress only when asked for."""
    import logging

    from ray.data import DataContext

    ctx = DataContext.get_current()
    names = ("target_min_block_size", "target_max_block_size", "enable_progress_bars")
    saved = {name: getattr(ctx, name) for name in names}
    logger = logging.getLogger("ray.data")
    level = logger.level
    ctx.target_min_block_size, ctx.target_max_block_size = 1, 1024
    ctx.enable_progress_bars = show_progress
    if not show_progress:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(ctx, name, value)
        logger.setLevel(level)


def prepare_output(output: Path, resume: bool) -> None:
    """Create ``output``; refuse a directory that holds shards unless resuming (then its old manifest goes,
    so that the directory reads as incomplete until this run finishes)."""
    if output.exists() and not output.is_dir():
        raise InputError(output, "exists and is not a directory")
    output.mkdir(parents=True, exist_ok=True)
    has_shards = any(output.glob("shard-*.json")) or (output / shard_files.MANIFEST).exists()
    if has_shards and not resume:
        raise ConfigError(f"{output} already holds shards: pass --resume (resume=True) or another directory")
    (output / shard_files.MANIFEST).unlink(missing_ok=True)


def encode_corpus(
    input: str,
    output: str | os.PathLike[str],
    model: str | os.PathLike[str] | None = None,
    *,
    text_column: str = "text",
    id_column: str | None = None,
    errors: str = "strict",
    role: str = "document",
    precision: str = "auto",
    backend: str = "torch",
    batch_size: int | None = None,
    normalize: bool | None = None,
    workers: int = 1,
    cpus_per_worker: float | None = None,
    shard_size: int = 10_000,
    resume: bool = False,
    address: str | None = None,
    show_progress: bool = False,
    on_shard: Callable[[dict[str, Any]], None] | None = None,
) -> shard_files.ShardSet:
    """Encode a corpus file or glob into a shard directory on Ray and return it (see the module docstring).

    ``address``: None runs Ray on this machine (or uses the Ray this process started), ``"auto"`` or
    ``host:port`` a cluster, whose workers must all see ``input``, ``output`` and ``model`` at the same paths.
    ``resume``: keep the finished shards of an interrupted run (same model, same input rows, intact files)
    and encode the rest. ``on_shard`` is called on the driver with each shard's result row as it arrives.
    """
    if shard_size < 1:
        raise ConfigError("shard_size must be at least 1")
    from textsiamese.model.loading import load

    files = expand_inputs(input)
    directory = Path(output).resolve()
    started = connect(address, num_cpus=max(os.cpu_count() or 1, workers))  # an unreachable address: first
    try:
        prepare_output(directory, resume)
        reference = load(_model_path(model), backend="torch")
        fingerprint, dimension = reference.fingerprint(), int(reference.tower(role).dimension)
        source = str(getattr(reference, "source", model) or "")
        shared = bool(reference.is_shared)
        del reference
        args = _actor_args(workers, cpus_per_worker)
        encode = {"role": role, "precision": precision, "batch_size": batch_size, "normalize": normalize}
        settings = _settings(
            model, backend, args["num_cpus"], encode, output=str(directory), fingerprint=fingerprint
        )
        corpus_options = {"text_column": text_column, "id_column": id_column, "errors": errors}
        out = str(directory)

        def read() -> Any:
            return _shard_rows(files, corpus_options, shard_size, out, fingerprint, resume)

        with _one_block_per_shard(show_progress):
            encoded = _shard_dataset(read).map_batches(
                _bound(ShardEncoder, settings), batch_size=1, batch_format="numpy", **args
            )
            records = _collect(encoded, on_shard)
    finally:
        if started:
            require_ray().shutdown()
    if not records:
        raise InputError(input, "the corpus has no texts")
    description = {
        "model_fingerprint": fingerprint,
        "model_source": source,
        "dimension": dimension,
        "role": role,
        "shared_towers": shared,  # one tower for both roles: the role does not change the vectors
        "precision": precision,
        "backend": backend,
        "shard_size": shard_size,
        "inputs": files,
        "corpus_columns": {k: v for k, v in corpus_options.items() if k != "errors" and v},
    }
    shard_files.write_manifest(directory, description, records)
    return shard_files.ShardSet(directory)


def _collect(encoded: Any, on_shard: Callable[[dict[str, Any]], None] | None) -> list[dict[str, Any]]:
    """Run the job, one result row per shard; a job that fails for good is one line that keeps the
    finished shards (resume) and names Ray's reason."""
    records: dict[int, dict[str, Any]] = {}
    try:
        for row in encoded.iter_rows():
            record = {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
            records[int(record["shard"])] = record
            if on_shard is not None:
                on_shard(record)
    except Exception as error:  # Ray wraps a worker's failure in its own exception types
        cause = _user_error(error)
        if cause is not None:
            raise cause from None
        reason = str(error).strip().splitlines()[-1][:300] if str(error).strip() else type(error).__name__
        raise TextSiameseError(
            f"the Ray job failed ({type(error).__name__}: {reason}); the finished shards are kept: "
            "rerun with --resume to encode the rest"
        ) from error
    numbers = sorted(records)
    if numbers != list(range(len(numbers))):
        missing = sorted(set(range(max(numbers, default=-1) + 1)) - set(numbers))
        raise TextSiameseError(f"shards missing from the job's results: {missing[:10]}")
    return [records[n] for n in numbers]


def _user_error(error: BaseException) -> TextSiameseError | None:
    """The TextSiameseError a worker raised (bad input row, wrong model), unwrapped from Ray's exception
    (``RayTaskError.cause``) so that it reads as the one line it was."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        cause = getattr(current, "cause", None)
        if isinstance(cause, TextSiameseError):
            return cause
        if isinstance(current, TextSiameseError) and not hasattr(current, "cause"):
            return current
        current = cause if isinstance(cause, BaseException) else current.__cause__
    return None


__all__ = ["BatchEncoder", "Chunk", "ShardEncoder", "encode_corpus", "encode_dataset", "prepare_output"]
