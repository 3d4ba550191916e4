"""One error shape for every refusal: ``{"error": {"status", "code", "message", "field"}}``, never a traceback.

Malformed JSON is 400 (a body sent as another content type, 415); a wrong type, a missing or unknown field is 422 naming the field (``texts[2]``,
``pairs[0][1]``); a too-large body or too many texts 413; an unknown index 404; a write to a read-only
service 403; a full queue 503 with ``Retry-After``. An error of ours that escapes still answers a JSON 500
whose message names nothing of the code (the traceback goes to the server log only).

Under ``/v1/`` (the OpenAI-compatible routes) the same refusals take OpenAI's shape,
``{"error": {"message", "type", "param", "code"}}``, so OpenAI clients raise their own exception classes; the
statuses are the same except that an invalid request is 400 there (OpenAI's status for it, which its clients
raise as ``BadRequestError``), not 422.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from textsiamese.errors import InputError, TextSiameseError
from textsiamese.serve.batcher import BatcherClosed, QueueFull

log = logging.getLogger("textsiamese.serve")


class ApiError(Exception):
    """A refusal with its HTTP status, a short code, a message for people and the field it concerns."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field
        self.headers = headers


OPENAI_PREFIX = "/v1/"


def is_openai_path(path: str) -> bool:
    """Whether ``path`` is one of the OpenAI-compatible routes, whose errors take OpenAI's shape."""
    return path.startswith(OPENAI_PREFIX) or path == OPENAI_PREFIX.rstrip("/")


def error_body(
    status: int, code: str, message: str, field: str | None = None, path: str = ""
) -> tuple[int, dict[str, Any]]:
    """(status, body) of an error: the project's shape, or OpenAI's on a ``/v1/`` path (422 becoming 400)."""
    if not is_openai_path(path):
        return status, {"error": {"status": status, "code": code, "message": message, "field": field}}
    if status == 422:
        status = 400
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return status, {"error": {"message": message, "type": kind, "param": field, "code": code}}


def error_response(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
    path: str = "",
) -> JSONResponse:
    """The JSON reply of an error, in the shape ``path`` calls for (see :func:`error_body`)."""
    status, body = error_body(status, code, message, field, path)
    return JSONResponse(body, status_code=status, headers=headers)


def field_path(location: Sequence[Any]) -> str:
    """``("body", "pairs", 0, 1)`` → ``pairs[0][1]``."""
    parts = [p for p in location if p != "body"]
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"


def _validation(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    path = request.url.path
    problems = list(error.errors())
    first = problems[0] if problems else {"loc": ("body",), "msg": "invalid request", "type": ""}
    content_type = request.headers.get("content-type", "")
    if content_type and "json" not in content_type and tuple(first.get("loc", ())) == ("body",):
        message = f"the body must be JSON sent as Content-Type: application/json, not {content_type}"
        return error_response(415, "unsupported_media_type", message, "body", path=path)
    if first.get("type") == "json_invalid":
        return error_response(
            400, "malformed_json", f"the body is not valid JSON: {first.get('msg')}", "body", path=path
        )
    field = field_path(first.get("loc", ()))
    kind = str(first.get("type", ""))
    message = f"{field}: {first.get('msg')}"
    if kind == "missing":
        message = f"{field} is required"
    elif kind == "extra_forbidden":
        message = f"{field} is not a field of this request"
    if len(problems) > 1:
        message += f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})"
    return error_response(422, "invalid_request", message, field, path=path)


def _api(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ApiError)
    return error_response(
        error.status, error.code, error.message, error.field, error.headers, request.url.path
    )


def _http(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    codes = {404: "not_found", 405: "method_not_allowed", 400: "bad_request"}
    code = codes.get(error.status_code, "http_error")
    return error_response(error.status_code, code, str(error.detail), None, error.headers, request.url.path)


def _library(request: Request, error: Exception) -> JSONResponse:
    field = error.source if isinstance(error, InputError) and error.source.isidentifier() else None
    message = error.reason if isinstance(error, InputError) and field else str(error)
    return error_response(422, "invalid_request", message, field, path=request.url.path)


def _queue_full(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, QueueFull)
    headers = {"Retry-After": str(error.retry_after)}
    return error_response(503, "queue_full", str(error), None, headers, request.url.path)


def _closed(request: Request, error: Exception) -> JSONResponse:
    return error_response(503, "unavailable", str(error), None, {"Retry-After": "5"}, request.url.path)


def _internal(request: Request, error: Exception) -> JSONResponse:
    log.error("internal error on %s %s", request.method, request.url.path, exc_info=error)
    message = "internal error; the server log has the details"
    return error_response(500, "internal", message, path=request.url.path)


def install_error_handlers(app: FastAPI) -> None:
    """Route every exception kind to its status and the one error shape."""
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(ApiError, _api)
    app.add_exception_handler(HTTPException, _http)
    app.add_exception_handler(TextSiameseError, _library)
    app.add_exception_handler(QueueFull, _queue_full)
    app.add_exception_handler(BatcherClosed, _closed)
    app.add_exception_handler(Exception, _internal)
