"""Two ASGI middlewares: the body-size bound (before any JSON is parsed) and per-route request metrics
(the third, the API key, is :mod:`~textsiamese.serve.auth`).

Both are plain ASGI (not ``BaseHTTPMiddleware``), so they add no task per request and do not buffer bodies.
"""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from textsiamese.serve.errors import error_body
from textsiamese.serve.metrics import ServiceMetrics


async def send_json(
    send: Send, status: int, body: dict[str, Any], extra_headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """Answer with ``body`` as JSON from inside a middleware (before or instead of the app)."""
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    headers += extra_headers or []
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


class BodyLimit:
    """Refuse a body over ``limit`` bytes with 413: at once from Content-Length, or as a chunked body
    passes the limit (the app's own reply is then dropped for the 413)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, send, int(declared))
            return
        received = 0
        too_large = False

        async def limited() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    too_large = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded(message: Message) -> None:
            if not too_large:
                await send(message)

        await self.app(scope, limited, guarded)
        if too_large:
            await self._refuse(scope, send, received)

    async def _refuse(self, scope: Scope, send: Send, size: int) -> None:
        message = f"the request body has {size} bytes or more; at most {self.limit}"
        status, body = error_body(413, "body_too_large", message, "body", str(scope.get("path", "")))
        await send_json(send, status, body)


class RequestMetrics:
    """Count every HTTP request by route template and status, and time it."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, observed)
        finally:
            route = scope.get("route")
            # The route's template (``/index/{name}/add``), never the raw path: unknown paths share one label.
            name = str(getattr(route, "path", "")) or "unmatched"
            self.metrics.requests.inc(route=name, status=str(status))
            self.metrics.latency.observe(time.perf_counter() - started, route=name)
