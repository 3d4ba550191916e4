"""/health, /metrics and the index writes (/index/{name}/add, /index/{name}/remove).

/health answers 200 only while the encode worker is alive; a dead worker (and why), a shutdown in progress or
a batch running for long is in its body, with 503, so a load balancer stops sending work to a service that
cannot do it. Writes are refused (403) unless the service started with ``--allow-writes``; an accepted write
is all or nothing and saved with ``Index.save`` (new files first, the manifest last) before the reply, as
``textsiamese index add`` / ``remove`` do. A save that fails puts the index back as it is on disk.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from textsiamese.errors import InputError
from textsiamese.serve.errors import ApiError
from textsiamese.serve.limits import check_texts
from textsiamese.serve.routes import ERRORS, served_index, service
from textsiamese.serve.schemas import AddRequest, RemoveRequest, WriteResponse
from textsiamese.serve.state import ServedIndex, ServiceState

router = APIRouter()
WRITE_ERRORS = {**ERRORS, 403: ERRORS[404], 409: ERRORS[404]}


@router.get("/health", summary="What the service can do right now")
async def health(request: Request) -> JSONResponse:
    """Worker alive (or dead, and why), queue depth, running batch, model fingerprint, index sizes, versions.
    A coroutine (no thread): it answers even while every worker thread waits on a batch.
    200 while the worker takes work, 503 otherwise."""
    report = service(request).health()
    return JSONResponse(report, status_code=200 if report["ok"] else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
async def metrics(request: Request) -> PlainTextResponse:
    """Request counts and latencies by route, batch sizes and times, queue depth and wait, truncations."""
    text = service(request).metrics.render()
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")


def _writable(state: ServiceState, name: str) -> ServedIndex:
    if not state.allow_writes:
        raise ApiError(
            403, "read_only", "this service is read-only; start it with --allow-writes to update indexes"
        )
    return served_index(state, name)


def _save(state: ServiceState, served: ServedIndex) -> None:
    """Persist, or on failure reload what is on disk so memory and disk agree (all or nothing)."""
    from textsiamese.search import Index

    try:
        served.index.save(served.path)
    except BaseException:
        served.index = Index.load(served.path, state.model)
        raise


@router.post("/index/{name}/add", response_model=WriteResponse, responses=WRITE_ERRORS, summary="Add rows")
def add_rows(name: str, body: AddRequest, request: Request) -> dict[str, Any]:
    """Encode the rows' texts (document tower) and add them by id, all or nothing; saved before the reply."""
    state = service(request)
    served = _writable(state, name)
    texts = [row.text for row in body.rows]
    check_texts(texts, "rows", state.limits)
    ids = [row.id for row in body.rows]
    model = state.queued_model()
    vectors = model.encode(texts, role="document")
    with served.lock:
        try:
            added = served.index.add_vectors(
                vectors, ids=ids, texts=texts, metadata=[row.metadata or {} for row in body.rows]
            )
        except InputError as error:
            status = 409 if "duplicate id" in error.reason else 422
            raise ApiError(
                status, "conflict" if status == 409 else "invalid_request", error.reason, "rows"
            ) from None
        _save(state, served)
        rows = len(served.index)
    return {"index": served.name, "added": len(added), "rows": rows, "truncation": model.truncation.report()}


@router.post(
    "/index/{name}/remove", response_model=WriteResponse, responses=WRITE_ERRORS, summary="Remove rows"
)
def remove_rows(name: str, body: RemoveRequest, request: Request) -> dict[str, Any]:
    """Remove rows by id, all or nothing (an unknown id removes none, 404); saved before the reply."""
    state = service(request)
    served = _writable(state, name)
    if not body.ids:
        raise ApiError(422, "invalid_request", "ids must not be empty", "ids")
    with served.lock:
        try:
            removed = served.index.remove(body.ids)
        except InputError as error:
            raise ApiError(404, "unknown_id", error.reason, "ids") from None
        _save(state, served)
        rows = len(served.index)
    return {"index": served.name, "removed": removed, "rows": rows}
