"""`textsiamese serve` against the library calls it wraps: a real uvicorn server on 127.0.0.1 (on a thread, sharing
the session's embedded model; the write/restart/SIGTERM test runs the real CLI in a subprocess), a calibrated
copy of the model, a 120-row flat index of AG News titles and a reference set built from ../shared/data rows.

Requests here are sequential unless the test is about concurrency, so each one is a batch of its own and the
vectors equal the library's exactly (the CPU's bf16 autocast gives slightly different values for a text batched
with other texts; the concurrent checks allow for that).
"""

from __future__ import annotations

import base64
import copy
import shutil
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _serve_helpers import ProcessServer, ThreadServer, agnews_rows, mrpc_pairs, request
from conftest import SHARED_DATA

from textsiamese.data import PairData
from textsiamese.decisions.calibration import calibrate, calibrated_scores
from textsiamese.decisions.oneshot import OneShotClassifier
from textsiamese.search import Index
from textsiamese.serve import BatchLimits, RequestLimits, ServiceState, create_app
from textsiamese.serve.state import ServedIndex

# The worker's own truncation warning (the reply reports it instead).
pytestmark = pytest.mark.filterwarnings("ignore::textsiamese.model.TruncationWarning")

QUERIES = ["oil prices rise again", "the team won the final", "new chip from Intel"]


@pytest.fixture(scope="module")
def model(default_model: Any) -> Any:
    """A calibrated copy of the embedded model (the session's own stays uncalibrated)."""
    calibrated = copy.deepcopy(default_model)
    first, second, labels = mrpc_pairs(SHARED_DATA, 24)
    calibrate(calibrated, PairData(first, second, labels=labels, source="mrpc-head"))
    return calibrated


@pytest.fixture(scope="module")
def news_rows(shared_data: Path) -> list[dict[str, str]]:
    return agnews_rows(shared_data, 0, 120)


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory, model: Any, news_rows: list[dict[str, str]]) -> Path:
    index = Index.build(
        model,
        [row["title"] for row in news_rows],  # titles: short, so the index builds in a second on 2 cores
        ids=[f"n{i}" for i in range(len(news_rows))],
        metadata={"label": [r["label"] for r in news_rows], "source": ["agnews"] * len(news_rows)},
        kind="flat",
    )
    return index.save(tmp_path_factory.mktemp("serve") / "news.index")


@pytest.fixture(scope="module")
def classifier(model: Any, shared_data: Path) -> OneShotClassifier:
    rows = agnews_rows(shared_data, 150, 60)
    matcher = OneShotClassifier(model)
    matcher.enroll([r["label"] for r in rows[:24]], [r["title"] for r in rows[:24]])
    matcher.choose_threshold([r["title"] for r in rows[24:]], [r["label"] for r in rows[24:]])
    return matcher


def make_state(model: Any, index_dir: Path, classifier: Any = None, **options: Any) -> ServiceState:
    served = {"news": ServedIndex("news", index_dir, Index.load(index_dir, model))}
    return ServiceState(model, indexes=served, classifier=classifier, **options)


@pytest.fixture(scope="module")
def server(model: Any, index_dir: Path, classifier: OneShotClassifier) -> Any:
    limits = RequestLimits(max_body_bytes=200_000, max_texts=32, max_text_chars=5_000, max_k=20)
    with ThreadServer(create_app(make_state(model, index_dir, classifier, limits=limits))) as running:
        yield running


def vectors_of(reply: Any) -> np.ndarray:
    return np.asarray(reply.json["vectors"], dtype=np.float32)


def test_embed_matches_encode(server: Any, model: Any) -> None:
    for role in ("query", "document"):
        reply = request(server.base, "/embed", {"texts": QUERIES, "role": role})
        assert reply.status == 200, reply
        expected = model.encode(QUERIES, role=role)
        np.testing.assert_allclose(vectors_of(reply), expected, atol=1e-6, rtol=0)
        assert reply.json["dimension"] == 384 and reply.json["model"] == model.fingerprint()
        assert reply.json["truncation"] == {"truncated": 0, "of": 3, "rows": [], "warning": None}
    packed = request(server.base, "/embed", {"texts": QUERIES, "encoding": "base64"})
    decoded = np.stack([np.frombuffer(base64.b64decode(v), dtype="<f4") for v in packed.json["vectors"]])
    np.testing.assert_allclose(decoded, model.encode(QUERIES), atol=1e-6, rtol=0)


def test_long_text_is_truncated_and_said(server: Any, model: Any) -> None:
    long = "markets " * 400  # ~400 tokens, past the tower's 256
    reply = request(server.base, "/embed", {"texts": ["short one", long]})
    assert reply.status == 200
    truncation = reply.json["truncation"]
    assert truncation["truncated"] == 1 and truncation["rows"] == [1]
    assert "1 of 2 texts were longer than 256 tokens" in truncation["warning"]
    with pytest.warns(UserWarning, match="1 of 2 texts"):
        expected = model.encode(["short one", long])
    np.testing.assert_allclose(vectors_of(reply), expected, atol=1e-6, rtol=0)


def test_score_matches_calibrated_scores(server: Any, model: Any, shared_data: Path) -> None:
    first, second, _ = mrpc_pairs(shared_data, 32)
    first, second = first[24:], second[24:]  # pairs the calibration did not see
    reply = request(server.base, "/score", {"pairs": [list(p) for p in zip(first, second, strict=True)]})
    assert reply.status == 200, reply
    expected = calibrated_scores(model, first, second)
    body = reply.json
    assert body["calibrated"] is True and body["metric"] == "cosine"
    np.testing.assert_allclose(body["scores"], expected["score"], atol=1e-6, rtol=0)
    np.testing.assert_allclose(body["probabilities"], expected["probability"], atol=1e-6, rtol=0)
    assert body["same"] == [bool(v) for v in expected["same"]]
    assert 0 < sum(body["same"]) < len(first) or len(set(body["same"])) >= 1


def test_search_matches_index_search(server: Any, model: Any, index_dir: Path) -> None:
    index = Index.load(index_dir, model)
    one = request(server.base, "/search", {"query": QUERIES[0], "k": 5})
    several = request(server.base, "/search", {"queries": QUERIES, "k": 3, "index": "news"})
    assert one.status == several.status == 200, (one, several)
    for reply, queries, k in ((one, QUERIES[:1], 5), (several, QUERIES, 3)):
        expected = index.search(queries, k=k)
        assert reply.json["index"] == "news" and reply.json["k"] == k
        for got, query, hits in zip(reply.json["results"], queries, expected, strict=True):
            assert got["query"] == query
            assert [h["id"] for h in got["hits"]] == [h.id for h in hits]
            assert got["hits"] == [h.to_dict() for h in hits]  # the `search --json` shape: text, title, label
    assert one.json["results"][0]["hits"][0]["source"] == "agnews"


def test_classify_matches_classifier(server: Any, classifier: OneShotClassifier, shared_data: Path) -> None:
    texts = [r["title"] for r in agnews_rows(shared_data, 300, 12)] + ["zzzz qqqq xxxx"]
    reply = request(server.base, "/classify", {"texts": texts})
    assert reply.status == 200, reply
    expected = classifier.classify(texts)
    got = reply.json["predictions"]
    assert [p["label"] for p in got] == expected.labels
    assert [p["nearest"] for p in got] == expected.nearest
    np.testing.assert_allclose([p["similarity"] for p in got], expected.similarities, atol=1e-6, rtol=0)
    assert reply.json["threshold"] == classifier.threshold
    forced = request(server.base, "/classify", {"texts": texts, "threshold": 2.0, "strategy": "reference"})
    assert {p["label"] for p in forced.json["predictions"]} == {"unknown"}


def test_health_and_metrics(server: Any, model: Any) -> None:
    request(server.base, "/embed", {"texts": ["counted"]})
    health = request(server.base, "/health")
    assert health.status == 200
    body = health.json
    assert body["status"] == "ok" and body["batcher"]["alive"] is True
    assert body["model"]["fingerprint"] == model.fingerprint() and body["model"]["calibrated"] is True
    assert body["indexes"]["news"]["rows"] == 120 and body["allow_writes"] is False
    assert set(body["versions"]) >= {"textsiamese", "torch", "faiss"}
    text = request(server.base, "/metrics").text
    for name in (
        'textsiamese_requests_total{route="/embed",status="200"}',
        "textsiamese_request_seconds_bucket",
        "textsiamese_batch_texts_count",
        "textsiamese_queue_texts 0",
        "textsiamese_batcher_alive 1",
    ):
        assert name in text
    assert "# TYPE textsiamese_batch_texts histogram" in text


BAD_REQUESTS = [
    ("/embed", b'{"texts": ["a",', 400, "body"),  # malformed JSON
    ("/embed", {"texts": ["a", 3]}, 422, "texts[1]"),  # wrong type
    ("/embed", {"texts": "a single string"}, 422, "texts"),
    ("/embed", {}, 422, "texts"),  # missing
    ("/embed", {"texts": []}, 422, "texts"),
    ("/embed", {"texts": ["a"], "colour": 1}, 422, "colour"),  # unknown field
    ("/embed", {"texts": ["a"], "role": "boss"}, 422, "role"),
    ("/embed", {"texts": ["a"] * 33}, 413, "texts"),  # more than max_texts
    ("/embed", {"texts": ["a", "b" * 5001]}, 413, "texts[1]"),  # longer than max_text_chars
    ("/embed", {"texts": ["a" * 4000] * 60}, 413, "body"),  # body over 200 kB, refused before parsing
    ("/score", {"pairs": [["a"]]}, 422, "pairs[0][1]"),
    ("/score", {"pairs": [["a", None]]}, 422, "pairs[0][1]"),
    ("/search", {"query": "x", "index": "nope"}, 404, "index"),
    ("/search", {"query": "x", "k": 0}, 422, "k"),
    ("/search", {"query": "x", "k": 21}, 422, "k"),  # over max_k
    ("/search", {"query": "x", "k": "5"}, 422, "k"),
    ("/search", {"query": "x", "queries": ["y"]}, 422, "query"),
    ("/search", {"k": 3}, 422, "query"),
    ("/classify", {"texts": [None]}, 422, "texts[0]"),
]


@pytest.mark.parametrize(("path", "body", "status", "field"), BAD_REQUESTS)
def test_bad_requests_get_4xx_naming_the_field(
    server: Any, path: str, body: Any, status: int, field: str
) -> None:
    raw = body if isinstance(body, bytes) else None
    reply = request(server.base, path, None if raw else body, raw=raw)
    assert reply.status == status, reply
    error = reply.json["error"]
    assert error["field"] == field and error["status"] == status and error["message"]
    assert "Traceback" not in reply.text


def test_other_refusals(server: Any) -> None:
    form = request(server.base, "/embed", raw=b"texts=a", content_type="application/x-www-form-urlencoded")
    assert form.status == 415 and form.json["error"]["code"] == "unsupported_media_type"
    assert request(server.base, "/nowhere").status == 404
    assert request(server.base, "/embed", method="GET").status == 405
    assert (
        request(server.base, "/").status == 200 and '<form id="search-form"' in request(server.base, "/").text
    )
    assert "/embed" in request(server.base, "/openapi.json").json["paths"]
    for path, body in (
        ("/index/news/add", {"rows": [{"id": "x", "text": "y"}]}),
        ("/index/news/remove", {"ids": ["n1"]}),
    ):
        refused = request(server.base, path, body)
        assert refused.status == 403 and refused.json["error"]["code"] == "read_only"


def test_concurrent_requests_share_batches(server: Any, model: Any, index_dir: Path) -> None:
    index = Index.load(index_dir, model)
    texts = [f"{query} number {i}" for i in range(22) for query in QUERIES][:64]
    before = request(server.base, "/health").json["batcher"]["batches"]

    def one(i: int) -> tuple[str, Any]:
        if i % 2:
            return "search", request(server.base, "/search", {"query": texts[i], "k": 3})
        return "embed", request(server.base, "/embed", {"texts": [texts[i]]})

    with ThreadPoolExecutor(32) as pool:
        replies = list(pool.map(one, range(64)))
    assert all(reply.status == 200 for _, reply in replies), [r for _, r in replies if r.status != 200][:2]
    for i, (kind, reply) in enumerate(replies):
        if kind == "embed":  # batched with others: bf16 rounding may differ by ~1e-3, never more
            np.testing.assert_allclose(vectors_of(reply)[0], model.encode([texts[i]])[0], atol=5e-3)
        else:
            expected = index.search([texts[i]], k=3)[0]
            assert [h["id"] for h in reply.json["results"][0]["hits"]][:1] == [expected[0].id]
    batches = request(server.base, "/health").json["batcher"]["batches"] - before
    assert batches < 64  # some requests shared a forward pass


def test_full_queue_answers_503_with_retry_after(model: Any, index_dir: Path) -> None:
    state = make_state(model, index_dir, batch_limits=BatchLimits(max_queue_texts=2, max_wait_ms=0))
    gate = threading.Event()
    real = state.batcher.encode_fn

    def held(texts: list[str], role: str, batch_size: int) -> Any:
        gate.wait(30)
        return real(texts, role, batch_size)

    state.batcher.encode_fn = held
    with ThreadServer(create_app(state)) as running, ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(request, running.base, "/embed", {"texts": ["a", "b"]}) for _ in range(8)]
        # One request runs (held at the gate), one waits in the queue (2 texts, the bound), six are refused.
        while state.metrics.requests.value(route="/embed", status="503") < 6:
            threading.Event().wait(0.01)
        gate.set()
        replies = [f.result() for f in futures]
    statuses = sorted(r.status for r in replies)
    assert statuses == [200, 200] + [503] * 6, statuses
    busy = next(r for r in replies if r.status == 503)
    assert busy.headers["retry-after"] == "1" and busy.json["error"]["code"] == "queue_full"


def test_health_reports_a_dead_worker(model: Any, index_dir: Path) -> None:
    state = make_state(model, index_dir)

    def crash(texts: list[str], role: str, batch_size: int) -> Any:
        raise SystemExit("simulated crash of the encode worker")

    state.batcher.encode_fn = crash
    with ThreadServer(create_app(state)) as running:
        failed = request(running.base, "/embed", {"texts": ["a"]})
        state.batcher._thread.join(10)  # type: ignore[union-attr]
        health = request(running.base, "/health")
        after = request(running.base, "/embed", {"texts": ["b"]})
    assert failed.status == 503 and "worker died" in failed.json["error"]["message"]
    assert health.status == 503 and health.json["status"] == "worker dead" and health.json["ok"] is False
    assert "simulated crash" in health.json["batcher"]["death"]
    assert after.status == 503


def test_cli_serve_writes_persist_and_sigterm_finishes_in_flight(
    tmp_path: Path, index_dir: Path, model: Any
) -> None:
    """The real command in a subprocess: writes refused nowhere here (--allow-writes), all or nothing, saved;
    SIGTERM with requests in flight answers them all; a restarted server searches the saved index."""
    directory = shutil.copytree(index_dir, tmp_path / "news.index")
    fresh = {
        "id": "new-1",
        "text": "Astronomers find water ice on a distant moon",
        "metadata": {"label": "4"},
    }
    with ProcessServer("--index", str(directory), "--allow-writes", "--graceful-timeout", "300") as server:
        added = request(server.base, "/index/news/add", {"rows": [fresh]})
        assert added.status == 200 and added.json == {
            "index": "news",
            "added": 1,
            "removed": None,
            "rows": 121,
            "truncation": {"truncated": 0, "of": 1, "rows": [], "warning": None},
        }
        clash = request(
            server.base,
            "/index/news/add",
            {"rows": [{"id": "new-2", "text": "x"}, {"id": "n3", "text": "y"}]},
        )
        assert clash.status == 409 and "duplicate id 'n3'" in clash.json["error"]["message"]
        unknown = request(server.base, "/index/news/remove", {"ids": ["n4", "no-such-id"]})
        assert unknown.status == 404 and unknown.json["error"]["field"] == "ids"
        assert request(server.base, "/index/news/remove", {"ids": ["n4"]}).json["rows"] == 120
        assert request(server.base, "/index/other/add", {"rows": [fresh]}).status == 404
        hit = request(server.base, "/search", {"query": "water ice on a moon", "k": 1}).json["results"][0][
            "hits"
        ][0]
        assert hit["id"] == "new-1" and hit["label"] == "4"
        # SIGTERM while 12 requests of 32 texts are queued or running: every one is answered.
        texts = [f"in flight text number {i} about markets and sport" for i in range(32)]
        with ThreadPoolExecutor(12) as pool:
            futures = [pool.submit(request, server.base, "/embed", {"texts": texts}) for _ in range(12)]
            wait_until_queued(server.base, 32 * 10, futures)
            status, err = server.terminate()
            replies = [f.result() for f in futures]
        # uvicorn finishes the requests and the lifespan, then ends by the signal it caught (-15).
        assert status in (0, -signal.SIGTERM) and "Application shutdown complete" in err, err
        assert [r.status for r in replies] == [200] * 12
        expected = model.encode(texts)
        for reply in replies:
            np.testing.assert_allclose(vectors_of(reply), expected, atol=5e-3)
    on_disk = Index.load(directory)
    assert "new-1" in on_disk and "n4" not in on_disk and len(on_disk) == 120
    with ProcessServer("--index", f"news={directory}") as restarted:
        again = request(restarted.base, "/search", {"query": "water ice on a moon", "k": 1})
        assert again.json["results"][0]["hits"][0]["id"] == "new-1"
        assert request(restarted.base, "/health").json["indexes"]["news"]["rows"] == 120
        assert request(restarted.base, "/index/news/remove", {"ids": ["new-1"]}).status == 403


def wait_until_queued(base: str, texts: int, futures: list[Any], timeout: float = 20.0) -> None:
    """Until the server's queue holds ``texts`` texts (so the requests are in, not still connecting), all
    ``futures`` are done, or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all(f.done() for f in futures):
        if request(base, "/health").json["batcher"]["queued_texts"] >= texts:
            return
        time.sleep(0.02)


@pytest.fixture(scope="session")
def chromium() -> Any:
    """Headless Debian Chromium through selenium, installed by the project (`.ci/install-chromium`, apt) when
    missing; skipped with the installer's own words only where it cannot install (no apt, not root)."""
    from selenium import webdriver

    if not all(Path(binary).exists() for binary in (CHROMIUM, CHROMEDRIVER)):
        installer = Path(__file__).resolve().parents[1] / ".ci" / "install-chromium"
        done = subprocess.run([str(installer)], capture_output=True, text=True, timeout=900)
        if done.returncode != 0 or not all(Path(b).exists() for b in (CHROMIUM, CHROMEDRIVER)):
            reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
            pytest.skip(f"Chromium could not be installed here ({reason}); the page test needs it")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1200,900",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SCREENSHOT = Path(__file__).resolve().parents[1] / "out" / "serve-page.png"  # /out/ is gitignored


def test_page_in_headless_chromium(server: Any, chromium: Any, model: Any, index_dir: Path) -> None:
    """Type a query into the page at /, the hits render (the library's top hits, in order); score a pair."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    chromium.get(server.base + "/")
    wait = WebDriverWait(chromium, 30)
    wait.until(lambda d: d.find_element(By.ID, "status").text.startswith("ok"))
    assert [o.get_attribute("value") for o in chromium.find_elements(By.CSS_SELECTOR, "#index option")] == [
        "news"
    ]
    box = chromium.find_element(By.ID, "query")
    box.send_keys("oil prices climb to a record")
    chromium.find_element(By.ID, "search-button").click()
    wait.until(expected_conditions.presence_of_all_elements_located((By.CSS_SELECTOR, "#hits li")))
    wait.until(lambda d: "hits from news" in d.find_element(By.ID, "search-message").text)
    shown = [e.text for e in chromium.find_elements(By.CSS_SELECTOR, "#hits li .hit-text")]
    expected = Index.load(index_dir, model).search(["oil prices climb to a record"], k=5)[0]
    assert shown == [hit.text for hit in expected]
    scores = [e.text for e in chromium.find_elements(By.CSS_SELECTOR, "#hits li .score")]
    assert scores == [f"{hit.score:.4f}" for hit in expected]
    assert "label: " in chromium.find_element(By.CSS_SELECTOR, "#hits li .meta").text
    chromium.find_element(By.ID, "text-a").send_keys("A man is playing a guitar.")
    chromium.find_element(By.ID, "text-b").send_keys("Someone plays the guitar.")
    chromium.find_element(By.ID, "score-button").click()
    wait.until(lambda d: "P(same)" in d.find_element(By.ID, "score-result").text)
    SCREENSHOT.parent.mkdir(exist_ok=True)
    chromium.save_screenshot(str(SCREENSHOT))
