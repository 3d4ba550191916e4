"""The FastAPI app: routes, error handlers, middleware, and the batcher's start and graceful stop.

``create_app(state)`` is all a test or another server needs; ``textsiamese serve`` runs it under uvicorn.
On SIGTERM uvicorn stops accepting connections and waits for the requests in flight; the lifespan's exit
then drains the batcher's queue and stops its worker, so an accepted request is answered, not dropped.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from textsiamese.serve import admin, openai_api, page, routes
from textsiamese.serve.auth import ApiKeyAuth
from textsiamese.serve.errors import install_error_handlers
from textsiamese.serve.middleware import BodyLimit, RequestMetrics
from textsiamese.serve.state import ServiceState

DESCRIPTION = """Text similarity over HTTP: embeddings, pair scores (calibrated probability and decision when
the model has a calibration), semantic search over FAISS indexes with ids, texts and metadata, and one-shot
classification. Every encode of every request goes through one micro-batching queue over one model copy.
Errors share one shape: `{"error": {"status", "code", "message", "field"}}`. The OpenAI-compatible routes
(`POST /v1/embeddings`, `GET /v1/models`) take OpenAI's request and response shapes, its error shape
`{"error": {"message", "type", "param", "code"}}` included. With `--api-key`, every route but `/health`,
this page and the search page needs `Authorization: Bearer KEY`."""


def create_app(state: ServiceState) -> FastAPI:
    """The service over ``state`` (its batcher starts with the app and stops after the last request)."""
    from textsiamese import __version__

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.start()
        try:
            yield
        finally:
            await asyncio.to_thread(state.close)

    app = FastAPI(title="textsiamese", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    app.state.service = state
    install_error_handlers(app)
    app.include_router(routes.router)
    app.include_router(admin.router)
    app.include_router(openai_api.router)
    app.include_router(page.router)
    app.add_middleware(BodyLimit, limit=state.limits.max_body_bytes)
    if state.api_key is not None:  # before the body limit: a caller without the key gets 401, not 413
        app.add_middleware(ApiKeyAuth, key=state.api_key)
    app.add_middleware(RequestMetrics, metrics=state.metrics)  # outermost: counts the 401s and 413s too
    return app
