"""``textsiamese serve``: the model, indexes and references over HTTP (``pip install -e ".[serve]"``).

Only argparse here: FastAPI, uvicorn, torch and the model load inside :func:`run`, so ``textsiamese --help``
stays fast. The endpoints are described in the README and on the running service's ``/docs`` page.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping

from textsiamese.errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``serve``: one ``add_argument`` per option (model, indexes, limits, batching), so it is long but
    flat."""
    parser = subparsers.add_parser(
        "serve",
        help="serve embeddings, scores, search and classification over HTTP",
        description="Start an HTTP service (FastAPI + uvicorn) over one model: POST /embed, /score, /search, "
        "/classify; the OpenAI-compatible POST /v1/embeddings and GET /v1/models; GET /health, /metrics; "
        "a search page at /; the OpenAPI page at /docs. Concurrent requests share forward passes through "
        "one micro-batching queue. Index writes (/index/NAME/add, /remove) only with --allow-writes. "
        "Needs the serve extra.",
    )
    parser.add_argument("--model", default=None, metavar="DIR", help="model directory (default: embedded)")
    parser.add_argument(
        "--index",
        action="append",
        default=[],
        metavar="[NAME=]DIR",
        help="index directory to serve (repeatable; named after the directory unless NAME= is given)",
    )
    parser.add_argument("--references", default=None, metavar="DIR", help="reference set from 'enroll'")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--allow-writes", action="store_true", help="accept /index/NAME/add and /remove")
    parser.add_argument(
        "--model-name",
        default=None,
        metavar="NAME",
        help="the model's id on /v1 (NAME: document tower, NAME:query: query tower; default: the model "
        "directory's name, all-MiniLM-L6-v2 for the embedded model)",
    )
    parser.add_argument(
        "--api-key",
        default=None,
        metavar="KEY",
        help=f"require Authorization: Bearer KEY on every route but /health and the pages (default: "
        f"${API_KEY_ENV} if set, else no key; the variable keeps the key out of the process list)",
    )
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 … (default: cuda when available)")
    parser.add_argument("--backend", choices=["torch", "onnx"], default="torch", help="encode backend")
    parser.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16", "int8"],
        default="auto",
        help="encode precision (default auto, as encode; fp32 gives the same vectors on every CPU)",
    )
    parser.add_argument("--threads", type=int, default=None, metavar="N", help="torch CPU threads")
    batching = parser.add_argument_group("batching and limits")
    batching.add_argument("--max-batch", type=int, default=64, metavar="N", help="texts per forward pass")
    batching.add_argument(
        "--max-batch-tokens", type=int, default=8192, metavar="N", help="padded tokens per forward pass"
    )
    batching.add_argument("--max-wait-ms", type=float, default=2.0, metavar="MS", help="wait to fill a batch")
    batching.add_argument(
        "--max-queue", type=int, default=2048, metavar="N", help="queued texts before 503 (Retry-After)"
    )
    batching.add_argument("--max-texts", type=int, default=256, metavar="N", help="texts per request")
    batching.add_argument("--max-chars", type=int, default=20_000, metavar="N", help="characters per text")
    batching.add_argument("--max-body", type=int, default=1 << 20, metavar="BYTES", help="request body size")
    batching.add_argument("--max-k", type=int, default=100, metavar="N", help="largest k for /search")
    parser.add_argument(
        "--graceful-timeout",
        type=int,
        default=30,
        metavar="S",
        help="on SIGTERM, seconds to let requests in flight finish (default 30)",
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.set_defaults(func=run)


API_KEY_ENV = "TEXTSIAMESE_API_KEY"


def api_key_from(option: str | None, environ: Mapping[str, str] = os.environ) -> str | None:
    """The key the service requires: ``--api-key``, else ``$TEXTSIAMESE_API_KEY``, else None (no auth).
    An empty key is refused rather than taken as "no key": whoever set it meant to protect the service."""
    key = option if option is not None else environ.get(API_KEY_ENV)
    if key is not None and not key.strip():
        source = "--api-key" if option is not None else API_KEY_ENV
        raise ConfigError(f"{source} is empty; give a key, or leave it out to serve without one")
    return key


def run(args: argparse.Namespace) -> int:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise ConfigError('serve needs FastAPI and uvicorn: pip install -e ".[serve]"') from None
    import warnings

    import torch

    from textsiamese.model import TruncationWarning
    from textsiamese.serve.batcher import BatchLimits
    from textsiamese.serve.limits import RequestLimits
    from textsiamese.serve.runner import run_server
    from textsiamese.serve.state import ServiceState

    try:
        batch_limits = BatchLimits(args.max_batch, args.max_batch_tokens, args.max_wait_ms, args.max_queue)
        limits = RequestLimits(args.max_body, args.max_texts, args.max_chars, args.max_k)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    api_key = api_key_from(args.api_key)
    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError("--threads must be at least 1")
        torch.set_num_threads(args.threads)
    # Each reply counts its own truncated texts; the per-batch library warning would only repeat it in the log.
    warnings.filterwarnings("ignore", category=TruncationWarning)
    state = ServiceState.load(
        args.model,
        args.index,
        args.references,
        device=args.device,
        backend=args.backend,
        allow_writes=args.allow_writes,
        limits=limits,
        batch_limits=batch_limits,
        precision=args.precision,
        model_name=args.model_name,
        api_key=api_key,
    )
    names = ", ".join(f"{n} ({len(s.index)} rows)" for n, s in state.indexes.items()) or "none"
    auth = "API key required" if api_key else "no API key"
    print(
        f"textsiamese serve: model {state.model_name} ({state.fingerprint[:12]}), indexes: {names}, "
        f"{'read-write' if args.allow_writes else 'read-only'}, {auth}; http://{args.host}:{args.port}/",
        file=sys.stderr,
        flush=True,
    )
    run_server(state, args.host, args.port, log_level=args.log_level, graceful_timeout=args.graceful_timeout)
    return 0
