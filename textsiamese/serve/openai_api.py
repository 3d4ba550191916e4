"""The OpenAI-compatible routes: ``POST /v1/embeddings``, ``GET /v1/models`` and ``GET /v1/models/{model}``.

Why: every OpenAI client (the ``openai`` SDK, LangChain, LlamaIndex, vector databases' embedders) can then use
the service by pointing its base URL at ``http://HOST:PORT/v1``. The embeddings route is ``/embed`` under
OpenAI's names: the same checks (:func:`~textsiamese.serve.limits.check_texts`), the same per-request
:class:`~textsiamese.serve.queued.QueuedModel` over the one micro-batching queue (so its requests share
forward passes with ``/embed``'s), the same vectors. Its errors take OpenAI's shape
(:func:`~textsiamese.serve.errors.error_body`).

Model names: the service serves one model, named by ``--model-name`` (default: the model directory's name,
``all-MiniLM-L6-v2`` for the embedded model). ``NAME`` encodes with the document tower, ``NAME:query`` with
the query tower (``NAME:document`` is accepted too); ``GET /v1/models`` lists ``NAME`` and, for a
pseudo-siamese model (two towers), ``NAME:query``. An ``input_type`` field (``query``, ``document`` or
``passage``), which some clients send, picks the tower as well and must not contradict a suffixed name.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
from fastapi import APIRouter, Request

from textsiamese.serve.errors import ApiError
from textsiamese.serve.limits import check_texts
from textsiamese.serve.routes import count_truncated, service
from textsiamese.serve.schemas import (
    OpenAIEmbeddingRequest,
    OpenAIEmbeddingResponse,
    OpenAIErrorResponse,
    OpenAIModel,
    OpenAIModelList,
)
from textsiamese.serve.state import ServiceState

router = APIRouter(prefix="/v1", tags=["OpenAI-compatible"])
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": OpenAIErrorResponse} for code in (400, 401, 404, 413, 503)
}
INPUT_TYPES = {"query": "query", "document": "document", "passage": "document"}


def model_roles(state: ServiceState) -> dict[str, str]:
    """Every model id the service accepts, with the role (tower) it encodes with."""
    name = state.model_name
    return {name: "document", f"{name}:document": "document", f"{name}:query": "query"}


def listed_models(state: ServiceState) -> list[str]:
    """The ids ``GET /v1/models`` lists: ``NAME``, and ``NAME:query`` when the query tower is another one."""
    name = state.model_name
    return [name] if state.model.is_shared else [name, f"{name}:query"]


def _model_card(state: ServiceState, model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": int(state.started), "owned_by": "textsiamese"}


def _not_found(state: ServiceState, model_id: str) -> ApiError:
    served = ", ".join(listed_models(state))
    message = f"The model `{model_id}` does not exist; this service serves: {served}"
    return ApiError(404, "model_not_found", message, "model")


def resolve_role(state: ServiceState, model_id: str, input_type: str | None) -> str:
    """The role to encode with: from the model id, or from ``input_type`` (which wins over a plain NAME)."""
    roles = model_roles(state)
    if model_id not in roles:
        raise _not_found(state, model_id)
    if input_type is None:
        return roles[model_id]
    wanted = INPUT_TYPES[input_type]
    if model_id != state.model_name and roles[model_id] != wanted:
        raise ApiError(
            422,
            "invalid_request",
            f"input_type {input_type!r} contradicts the model {model_id!r}; give one or the other",
            "input_type",
        )
    return wanted


def input_texts(value: str | list[Any]) -> list[str]:
    """The texts of ``input``: one string or a list of strings. Token-id lists are refused by name: OpenAI's
    ids are another tokenizer's (tiktoken), meaningless to this model."""
    if isinstance(value, str):
        return [value]
    texts: list[str] = []
    for position, item in enumerate(value):
        if isinstance(item, str):
            texts.append(item)
            continue
        where = f"input[{position}]"
        if (type(item) is int) or (isinstance(item, list) and all(type(i) is int for i in item)):
            message = (
                "token-id input is not supported (the ids would be another tokenizer's): send the texts; "
                "LangChain's OpenAIEmbeddings does so with check_embedding_ctx_length=False"
            )
            raise ApiError(422, "invalid_request", message, "input")
        raise ApiError(422, "invalid_request", f"{where} must be a string, not {type(item).__name__}", where)
    return texts


@router.post(
    "/embeddings",
    response_model=OpenAIEmbeddingResponse,
    responses=ERRORS,
    summary="OpenAI-compatible embeddings",
)
def embeddings(body: OpenAIEmbeddingRequest, request: Request) -> dict[str, Any]:
    """OpenAI's embeddings call: the vectors `/embed` gives (same queue, limits and model), as float lists or
    base64 of little-endian float32; `usage` counts the tower's tokens."""
    state = service(request)
    role = resolve_role(state, body.model, body.input_type)
    texts = input_texts(body.input)
    check_texts(texts, "input", state.limits)
    dimension = int(state.model.dimension)
    if body.dimensions is not None and body.dimensions != dimension:
        message = (
            f"this model gives {dimension}-dimensional vectors and cannot shorten them: "
            f"leave dimensions out or send {dimension}"
        )
        raise ApiError(422, "unsupported_dimensions", message, "dimensions")
    model = state.queued_model()
    vectors = np.asarray(model.encode(texts, role=role), dtype="<f4")
    count_truncated(state, len(model.truncation.rows))
    packed = body.encoding_format == "base64"
    data = [
        {
            "object": "embedding",
            "index": position,
            "embedding": base64.b64encode(row.tobytes()).decode("ascii") if packed else row.tolist(),
        }
        for position, row in enumerate(vectors)
    ]
    usage = {"prompt_tokens": model.tokens, "total_tokens": model.tokens}
    return {"object": "list", "data": data, "model": body.model, "usage": usage}


@router.get("/models", response_model=OpenAIModelList, responses=ERRORS, summary="The served model")
def models(request: Request) -> dict[str, Any]:
    """The model ids `/v1/embeddings` takes (see the module's naming rules)."""
    state = service(request)
    return {"object": "list", "data": [_model_card(state, name) for name in listed_models(state)]}


@router.get("/models/{model_id}", response_model=OpenAIModel, responses=ERRORS, summary="One model")
def model(model_id: str, request: Request) -> dict[str, Any]:
    """One model id's card, or 404 `model_not_found`."""
    state = service(request)
    if model_id not in model_roles(state):
        raise _not_found(state, model_id)
    return _model_card(state, model_id)
