"""``--engine ray`` for ``textsiamese encode`` and ``textsiamese index build``: Ray Data past one machine.

``encode --engine ray --output DIR`` writes a shard directory (``textsiamese.distributed``) instead of one
``.npy``; ``index build --from-shards DIR`` builds the usual index directory from one
(``textsiamese.search.sharded``), and ``index build --engine ray`` does both, keeping the shards beside the
index (``--shards``) so that an interrupted build resumes with ``--resume``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from textsiamese.cli.common import count
from textsiamese.errors import ConfigError

ENGINES = ("local", "ray")


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    """``--engine``, ``--ray-address``, ``--workers``, ``--shard-size``, ``--resume``."""
    group = parser.add_argument_group(
        "distributed encoding (--engine ray; needs pip install 'textsiamese[ray]')"
    )
    group.add_argument(
        "--engine",
        choices=ENGINES,
        default="local",
        help="local (default): this process; ray: Ray Data, one model per worker, sharded and resumable",
    )
    group.add_argument(
        "--ray-address",
        default=None,
        metavar="auto|HOST:PORT",
        help="Ray cluster to run on: auto (the one `ray start` began here) or the head's HOST:PORT "
        "(default: start Ray on this machine). Every node must see the input, output and model paths",
    )
    group.add_argument("--workers", type=int, default=1, metavar="N", help="encoding actors (default: 1)")
    group.add_argument(
        "--shard-size", type=int, default=10_000, metavar="N", help="texts per shard (default: 10000)"
    )
    group.add_argument(
        "--resume",
        action="store_true",
        help="keep the finished shards of an interrupted run (same model, same rows, intact files); redo the rest",
    )


def refuse_local_only(args: argparse.Namespace, names: tuple[str, ...]) -> None:
    """A ConfigError for options ``--engine ray`` does not offer (yet), rather than ignoring them."""
    given = [f"--{n.replace('_', '-')}" for n in names if getattr(args, n, None) not in (None, False)]
    if given:
        raise ConfigError(f"{', '.join(given)} is not available with --engine ray")


def encode_shards(args: argparse.Namespace, corpus: str, output: str, role: str) -> Any:
    """Run :func:`textsiamese.distributed.encode_corpus` from the command's options; prints progress."""
    from textsiamese.distributed import encode_corpus

    refuse_local_only(
        args, ("prompt", "report_truncation", "long_text", "chunk_length", "chunk_overlap", "chunk_pooling")
    )
    if getattr(args, "device", None) not in (None, "cpu") and args.device:
        raise ConfigError("--device is chosen per worker with --engine ray (CUDA where Ray gives one)")
    quiet = (
        getattr(args, "progress", None) is False
    )  # a line a shard (a log of a long job) unless --no-progress

    def report(row: dict[str, Any]) -> None:
        if not quiet:
            state = "encoded" if row["encoded"] else "kept (finished before)"
            print(
                f"textsiamese: shard {row['shard']}: {count(row['count'], 'text')} {state}", file=sys.stderr
            )

    return encode_corpus(
        corpus,
        output,
        args.model,
        text_column=args.text_column,
        id_column=getattr(args, "id_column", None),
        errors=args.errors,
        role=role,
        precision=getattr(args, "precision", "auto"),
        backend=args.backend,
        batch_size=args.batch_size,
        normalize=getattr(args, "normalize", None),
        workers=args.workers,
        cpus_per_worker=getattr(args, "threads", None),
        shard_size=args.shard_size,
        resume=args.resume,
        address=args.ray_address,
        on_shard=report,
    )


def run_encode(args: argparse.Namespace) -> int:
    """``textsiamese encode --engine ray``: a shard directory at ``--output``."""
    if str(args.output).endswith(".npy"):
        raise ConfigError("--engine ray writes a shard directory: give --output a directory, not a .npy file")
    shard_set = encode_shards(args, args.input, args.output, args.role)
    print(
        f"textsiamese encode: {count(len(shard_set), 'text')} → {args.output} "
        f"({len(shard_set.manifest['shards'])} shards of {shard_set.dimension}-d vectors, manifest.json last)",
        file=sys.stderr,
    )
    return 0


def build_index(args: argparse.Namespace, params: dict[str, Any]) -> tuple[Any, Path]:
    """``index build --from-shards DIR`` or ``--engine ray``: the index and where it goes."""
    from textsiamese.distributed import ShardSet
    from textsiamese.search.sharded import build_from_shards

    if args.from_shards:
        if args.engine == "ray":
            raise ConfigError("--from-shards reads shards already encoded: leave out --engine ray")
        shards = Path(args.from_shards)
        output = Path(args.output) if args.output else shards.with_suffix(".index")
    else:
        output = Path(args.output) if args.output else Path(args.corpus).with_suffix(".index")
        shards = Path(args.shards) if args.shards else output.with_name(output.name + ".shards")
        encode_shards(args, args.corpus, str(shards), "document")
    index = build_from_shards(
        shards, kind=args.kind, metric=args.metric, params=params, recall_target=args.recall_target or None
    )
    manifest = ShardSet(shards).manifest
    role = manifest.get("role")
    if role not in (None, "document") and not manifest.get("shared_towers"):
        print(
            f"textsiamese index: warning: the shards were encoded by the {role} tower; an index holds "
            "documents (for a two-tower model encode them with --role document)",
            file=sys.stderr,
        )
    return index, output
