"""Run the app under uvicorn: one process, one event loop, graceful stop on SIGTERM / Ctrl-C.

Why one process: the model is one copy in memory and the batcher's whole point is that every request shares
its forward passes; more uvicorn workers would mean more model copies fighting over the same cores.
"""

from __future__ import annotations

import logging

from textsiamese.serve.state import ServiceState


def run_server(
    state: ServiceState,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    log_level: str = "info",
    limit_concurrency: int | None = 1024,
    graceful_timeout: int = 30,
) -> None:
    """Serve until SIGTERM / SIGINT; requests in flight then finish (up to ``graceful_timeout`` s).

    ``limit_concurrency`` bounds open connections and requests (uvicorn answers 503 past it), so a flood
    cannot pile up without bound in front of the batcher's own bounded queue.
    """
    import uvicorn

    from textsiamese.serve.app import create_app

    logging.getLogger("textsiamese.serve").setLevel(log_level.upper())
    config = uvicorn.Config(
        create_app(state),
        host=host,
        port=port,
        log_level=log_level,
        limit_concurrency=limit_concurrency,
        timeout_graceful_shutdown=graceful_timeout,
        access_log=False,
    )
    uvicorn.Server(config).run()
