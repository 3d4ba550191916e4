"""The read routes: /embed, /score, /search, /classify. Each calls the library function its CLI command calls.

They are plain ``def`` functions, which FastAPI runs on its thread pool: the request's thread tokenizes
(counting truncation), queues its texts on the shared batcher and waits for the batch, so the event loop only
ever parses and writes JSON. The model each library call gets is the request's
:class:`~textsiamese.serve.queued.QueuedModel`.
"""

from __future__ import annotations

import base64
import copy
from typing import Any

import numpy as np
from fastapi import APIRouter, Request

from textsiamese.serve.errors import ApiError
from textsiamese.serve.limits import check_k, check_texts
from textsiamese.serve.schemas import (
    ClassifyRequest,
    ClassifyResponse,
    EmbedRequest,
    EmbedResponse,
    ErrorResponse,
    Prediction,
    ScoreRequest,
    ScoreResponse,
    SearchRequest,
    SearchResponse,
)
from textsiamese.serve.state import ServedIndex, ServiceState

router = APIRouter()
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 404, 413, 422, 503)
}


def service(request: Request) -> ServiceState:
    """The app's :class:`ServiceState`."""
    state = request.app.state.service
    assert isinstance(state, ServiceState)
    return state


def served_index(state: ServiceState, name: str | None) -> ServedIndex:
    """The index called ``name`` (default: the first served), or a 404 naming the ones there are."""
    if not state.indexes:
        raise ApiError(404, "no_index", "no index is served; start the service with --index DIR", "index")
    if name is None:
        return next(iter(state.indexes.values()))
    if name not in state.indexes:
        known = ", ".join(sorted(state.indexes))
        raise ApiError(404, "unknown_index", f"no index named {name!r}; served: {known}", "index")
    return state.indexes[name]


def count_truncated(state: ServiceState, texts: int) -> None:
    """Add a request's truncated texts to the service's counter (every route that encodes calls this)."""
    if texts:
        state.metrics.truncated.inc(texts)


@router.post("/embed", response_model=EmbedResponse, responses=ERRORS, summary="Encode texts into vectors")
def embed(body: EmbedRequest, request: Request) -> dict[str, Any]:
    """Vectors of `texts` from the `role` tower (`SiameseModel.encode`, the model's normalisation), as float
    lists or, with `"encoding": "base64"`, base64 of little-endian float32 per vector."""
    state = service(request)
    check_texts(body.texts, "texts", state.limits)
    model = state.queued_model()
    vectors = np.asarray(model.encode(body.texts, role=body.role, prompt=body.prompt), dtype="<f4")
    count_truncated(state, len(model.truncation.rows))
    out: list[Any]
    if body.encoding == "base64":
        out = [base64.b64encode(row.tobytes()).decode("ascii") for row in vectors]
    else:
        out = vectors.tolist()
    return {
        "vectors": out,
        "dimension": int(vectors.shape[1]),
        "role": body.role,
        "model": state.fingerprint,
        "truncation": model.truncation.report(),
    }


@router.post("/score", response_model=ScoreResponse, responses=ERRORS, summary="Score sentence pairs")
def score(body: ScoreRequest, request: Request) -> dict[str, Any]:
    """A score per pair (`calibrated_scores`, as `textsiamese score`): the model's similarity under its
    calibration's metric, plus `probabilities` and `same` when the model carries a calibration."""
    from textsiamese.decisions.calibration import calibrated_scores, metric_of

    state = service(request)
    flat = [text for pair in body.pairs for text in pair]
    check_texts(flat, "pairs", state.limits, per_item=2)
    model = state.queued_model()
    first, second = [a for a, _ in body.pairs], [b for _, b in body.pairs]
    result = calibrated_scores(model, first, second)  # type: ignore[arg-type]
    truncation = model.truncation.report()
    # The two sides were encoded one after the other (all firsts, then all seconds): report pair indices.
    truncation["rows"] = sorted({row % len(body.pairs) for row in truncation["rows"]})
    count_truncated(state, len(model.truncation.rows))
    calibration = state.model.calibration
    out: dict[str, Any] = {
        "scores": result["score"].tolist(),
        "metric": metric_of(calibration) if calibration else state.model.similarity_metric,
        "calibrated": "probability" in result,
        "truncation": truncation,
    }
    if "probability" in result:
        out["probabilities"] = result["probability"].tolist()
        out["same"] = [bool(v) for v in result["same"]]
    return out


@router.post("/search", response_model=SearchResponse, responses=ERRORS, summary="Search an index")
def search(body: SearchRequest, request: Request) -> dict[str, Any]:
    """Top-`k` hits per query (`Index.search`, as `textsiamese search --json`): id, score, text and metadata.
    Give `query` (one) or `queries` (several); `index` picks one of the served indexes by name."""
    state = service(request)
    if (body.query is None) == (body.queries is None):
        raise ApiError(422, "invalid_request", "give exactly one of query or queries", "query")
    field = "query" if body.query is not None else "queries"
    queries = [body.query] if body.query is not None else list(body.queries or [])
    check_texts(queries, field, state.limits)
    served = served_index(state, body.index)
    check_k(body.k, len(served.index), state.limits)
    model = state.queued_model()
    vectors = model.encode(queries, role="query")  # outside the lock: a write waits only for FAISS work
    with served.lock:
        check_k(body.k, len(served.index), state.limits)  # a removal may have shrunk it meanwhile
        results = served.index.search(vectors, k=body.k)
    count_truncated(state, len(model.truncation.rows))
    return {
        "index": served.name,
        "k": body.k,
        "results": [
            {"query": query, "hits": [hit.to_dict() for hit in hits]}
            for query, hits in zip(queries, results, strict=True)
        ],
        "truncation": model.truncation.report(),
    }


@router.post(
    "/classify", response_model=ClassifyResponse, responses=ERRORS, summary="One-shot classification"
)
def classify(body: ClassifyRequest, request: Request) -> dict[str, Any]:
    """The nearest enrolled class per text and its similarity, or the unknown label below the threshold
    (`OneShotClassifier.classify`, as `textsiamese classify`)."""
    state = service(request)
    if state.classifier is None:
        raise ApiError(404, "no_references", "no reference set is served; start with --references DIR")
    check_texts(body.texts, "texts", state.limits)
    model = state.queued_model()
    matcher = copy.copy(state.classifier)  # shares the reference vectors; only the model differs
    matcher.model = model
    threshold = None if body.threshold is None else float(body.threshold)
    predictions = matcher.classify(body.texts, strategy=body.strategy, threshold=threshold)
    strategy = body.strategy or matcher.strategy
    count_truncated(state, len(model.truncation.rows))
    return {
        "predictions": [
            Prediction(label=label, nearest=nearest, similarity=float(similarity))
            for label, nearest, similarity in zip(
                predictions.labels, predictions.nearest, predictions.similarities, strict=True
            )
        ],
        "strategy": strategy,
        "threshold": threshold if threshold is not None else matcher.threshold_for(strategy),
        "unknown_label": matcher.unknown_label,
        "truncation": model.truncation.report(),
    }
