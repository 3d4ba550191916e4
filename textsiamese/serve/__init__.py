"""``textsiamese serve``: the library over HTTP (FastAPI + uvicorn, the ``serve`` extra).

- :mod:`~textsiamese.serve.batcher`: the bounded queue and the one worker thread that encodes in batches.
- :mod:`~textsiamese.serve.queued`: the per-request model stand-in whose ``encode`` uses that queue.
- :mod:`~textsiamese.serve.state`: model, batcher, indexes, references and metrics of one service.
- :mod:`~textsiamese.serve.routes` / :mod:`~textsiamese.serve.admin`: the endpoints;
  :mod:`~textsiamese.serve.page`: the search page; :mod:`~textsiamese.serve.app`: the app.

>>> from textsiamese.serve import ServiceState, create_app                    # doctest: +SKIP
>>> app = create_app(ServiceState.load(index_specs=["news.index"]))          # doctest: +SKIP
"""

from __future__ import annotations

from textsiamese.serve.app import create_app
from textsiamese.serve.batcher import Batcher, BatcherClosed, BatchLimits, QueueFull
from textsiamese.serve.limits import RequestLimits
from textsiamese.serve.state import ServiceState

__all__ = [
    "BatchLimits",
    "Batcher",
    "BatcherClosed",
    "QueueFull",
    "RequestLimits",
    "ServiceState",
    "create_app",
]
