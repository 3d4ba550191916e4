"""Load on the real command (slow): N requests from 32 concurrent clients, every answer checked, none lost; then
SIGTERM in the middle of a second wave, whose accepted requests must all be answered.

The server runs with ``--precision fp32``, whose vectors do not depend on what else shares the batch, so each
answer is checked against the library's to 1e-5 however the requests were batched.
"""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _serve_helpers import ProcessServer, agnews_rows, request

from textsiamese.search import Index

pytestmark = pytest.mark.slow
REQUESTS = 480
CLIENTS = 32


@pytest.fixture(scope="module")
def corpus_index(tmp_path_factory: pytest.TempPathFactory, default_model: Any, shared_data: Path) -> Path:
    rows = agnews_rows(shared_data, 0, 200)
    index = Index.build(
        default_model, [r["title"] for r in rows], ids=[f"n{i}" for i in range(200)], kind="flat"
    )
    return index.save(tmp_path_factory.mktemp("load") / "news.index")


def test_load_32_clients_every_answer_right_none_lost(
    corpus_index: Path, default_model: Any, shared_data: Path
) -> None:
    texts = [r["title"] for r in agnews_rows(shared_data, 1000, REQUESTS)]
    expected = default_model.encode(texts, precision="fp32")
    index = Index.load(corpus_index, default_model)
    truth = index.search(expected, k=3)

    def one(i: int) -> Any:
        if i % 2:
            return request(server.base, "/search", {"query": texts[i], "k": 3})
        return request(server.base, "/embed", {"texts": [texts[i]]})

    with ProcessServer("--index", str(corpus_index), "--precision", "fp32") as server:
        with ThreadPoolExecutor(CLIENTS) as pool:
            replies = list(pool.map(one, range(REQUESTS)))
        metrics = request(server.base, "/metrics").text
    assert len(replies) == REQUESTS and [r.status for r in replies] == [200] * REQUESTS
    for i, reply in enumerate(replies):
        if i % 2:
            hits = reply.json["results"][0]["hits"]
            assert [h["id"] for h in hits] == [h.id for h in truth[i]]
            np.testing.assert_allclose([h["score"] for h in hits], [h.score for h in truth[i]], atol=1e-5)
        else:
            np.testing.assert_allclose(reply.json["vectors"][0], expected[i], atol=1e-5, rtol=0)
    served = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("textsiamese_requests_total") and 'status="200"' in line and "/health" not in line
    )
    assert served == REQUESTS
    batches = next(line for line in metrics.splitlines() if line.startswith("textsiamese_batch_texts_count"))
    assert float(batches.rsplit(" ", 1)[1]) < REQUESTS  # requests shared forward passes


def test_sigterm_mid_load_answers_every_accepted_request(corpus_index: Path, default_model: Any) -> None:
    texts = [f"text {i} of the wave, on markets, sport and science" for i in range(24)]
    expected = default_model.encode(texts, precision="fp32")
    server = ProcessServer("--index", str(corpus_index), "--precision", "fp32", "--graceful-timeout", "300")
    with server, ThreadPoolExecutor(CLIENTS) as pool:
        futures = [pool.submit(request, server.base, "/embed", {"texts": texts}) for _ in range(CLIENTS)]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # until most requests are queued (in, not still connecting)
            if request(server.base, "/health").json["batcher"]["queued_texts"] >= 24 * (CLIENTS - 4):
                break
        status, err = server.terminate(timeout=300)
        replies = [f.result() for f in futures]
    assert status in (0, -signal.SIGTERM) and "Application shutdown complete" in err, err
    assert [r.status for r in replies] == [200] * CLIENTS, err[-2000:]
    for reply in replies:
        np.testing.assert_allclose(reply.json["vectors"], expected, atol=1e-5, rtol=0)
