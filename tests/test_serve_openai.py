"""`textsiamese serve`'s OpenAI-compatible routes, called with the real `openai` client (3.x) on 127.0.0.1:
/v1/embeddings against `SiameseModel.encode` in the SDK's default encoding (base64) and in floats, `usage`
against the tower's tokenizer, /v1/models, role selection on a pseudo-siamese model, OpenAI's error shape and
the client's exception classes, and the API key through the real command (the key never in its logs).

Requests are sequential, so each is a batch of its own and the vectors equal the library's (see test_serve.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import openai
import pytest
from _serve_helpers import ProcessServer, ThreadServer, request
from conftest import make_tiny_transformer

from textsiamese import SiameseModel
from textsiamese.cli.serve import api_key_from
from textsiamese.errors import ConfigError
from textsiamese.serve import RequestLimits, ServiceState, create_app
from textsiamese.serve.state import default_model_name

pytestmark = pytest.mark.filterwarnings("ignore::textsiamese.model.TruncationWarning")

TEXTS = ["A man is playing a guitar.", "Oil prices rise again", "The team won the final"]
README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture(scope="module")
def server(default_model: Any) -> Iterator[ThreadServer]:
    limits = RequestLimits(max_body_bytes=200_000, max_texts=16, max_text_chars=5_000)
    state = ServiceState(default_model, limits=limits)  # named by default: all-MiniLM-L6-v2
    with ThreadServer(create_app(state)) as running:
        yield running


def client_for(base: str, api_key: str = "unused") -> Any:
    """The real SDK pointed at the service (no retries: a refusal is the test's answer, not a retry)."""
    return openai.OpenAI(base_url=base + "/v1", api_key=api_key, max_retries=0, timeout=60)


def tokens_of(model: Any, texts: list[str], role: str = "document") -> int:
    """What `usage` must say: the tower's own tokens (after truncation, special tokens included)."""
    return sum(len(ids) for ids in model.tower(role).tokenize(texts).ids)


def test_embeddings_match_encode_in_the_sdk_default_and_in_floats(server: Any, default_model: Any) -> None:
    client = client_for(server.base)
    expected = default_model.encode(TEXTS, role="document")
    raw = client.embeddings.with_raw_response.create(model="all-MiniLM-L6-v2", input=TEXTS)
    sent = json.loads(raw.http_request.content)
    assert sent == {"model": "all-MiniLM-L6-v2", "input": TEXTS, "encoding_format": "base64"}  # SDK default
    assert all(isinstance(item["embedding"], str) for item in json.loads(raw.content)["data"])
    packed = raw.parse()  # the SDK decodes the base64 back to floats
    as_floats = client.embeddings.create(model="all-MiniLM-L6-v2", input=TEXTS, encoding_format="float")
    for reply in (packed, as_floats):
        assert reply.object == "list" and reply.model == "all-MiniLM-L6-v2"
        assert [item.index for item in reply.data] == [0, 1, 2]
        assert {item.object for item in reply.data} == {"embedding"}
        got = np.asarray([item.embedding for item in reply.data], dtype=np.float32)
        np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)
        assert reply.usage.prompt_tokens == reply.usage.total_tokens == tokens_of(default_model, TEXTS)
    one = client.embeddings.create(model="all-MiniLM-L6-v2", input=TEXTS[1], user="ignored")
    assert len(one.data) == 1 and one.usage.prompt_tokens == tokens_of(default_model, TEXTS[1:2])
    np.testing.assert_allclose(one.data[0].embedding, expected[1], atol=1e-6, rtol=0)
    same = client.embeddings.create(model="all-MiniLM-L6-v2", input=TEXTS[:1], dimensions=384)
    np.testing.assert_allclose(same.data[0].embedding, expected[0], atol=1e-6, rtol=0)


def test_usage_counts_truncated_texts_as_read(server: Any, default_model: Any) -> None:
    long = "markets " * 400  # past the tower's 256 tokens: the tower reads 256
    reply = client_for(server.base).embeddings.create(model="all-MiniLM-L6-v2", input=[long, "short"])
    assert reply.usage.prompt_tokens == tokens_of(default_model, [long, "short"]) == 256 + 3


def test_models_list_and_retrieve(server: Any) -> None:
    client = client_for(server.base)
    listed = client.models.list()
    assert [m.id for m in listed.data] == ["all-MiniLM-L6-v2"]  # siamese: one tower, one name
    assert listed.data[0].owned_by == "textsiamese" and listed.data[0].object == "model"
    assert client.models.retrieve("all-MiniLM-L6-v2:query").id == "all-MiniLM-L6-v2:query"
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("gpt-4")
    assert caught.value.code == "model_not_found"


def test_unknown_model_is_404_model_not_found(server: Any) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client_for(server.base).embeddings.create(model="text-embedding-3-small", input="x")
    error = caught.value
    assert error.status_code == 404 and error.code == "model_not_found" and error.param == "model"
    assert error.type == "invalid_request_error" and "all-MiniLM-L6-v2" in error.message


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"input": []}, "input"),
        ({"input": [101, 2023, 102]}, "input"),  # token ids (what tiktoken-based clients send)
        ({"input": [[101, 2023]]}, "input"),
        ({"input": ["a", None]}, "input[1]"),
        ({"input": "a", "dimensions": 128}, "dimensions"),  # the model cannot shorten its vectors
        ({"input": "a", "encoding_format": "int8"}, "encoding_format"),
        ({"input": "a", "extra_body": {"colour": 1}}, "colour"),
        ({"model": "all-MiniLM-L6-v2:query", "input": "a", "extra_body": {"input_type": "document"}}, None),
    ],
)
def test_bad_input_is_bad_request(server: Any, options: dict[str, Any], param: str | None) -> None:
    options = {"model": "all-MiniLM-L6-v2", **options}
    with pytest.raises(openai.BadRequestError) as caught:
        client_for(server.base).embeddings.create(**options)
    error = caught.value
    assert error.status_code == 400 and error.type == "invalid_request_error" and error.message
    assert error.param == (param or "input_type")


def test_raw_refusals_take_openai_shape_only_under_v1(server: Any) -> None:
    def shape(reply: Any) -> set[str]:
        return set(reply.json["error"])

    openai_shape = {"message", "type", "param", "code"}
    malformed = request(server.base, "/v1/embeddings", raw=b'{"model": "x", "input": [')
    assert malformed.status == 400 and shape(malformed) == openai_shape
    assert malformed.json["error"]["code"] == "malformed_json"
    too_many = request(server.base, "/v1/embeddings", {"model": "all-MiniLM-L6-v2", "input": ["a"] * 17})
    assert too_many.status == 413 and shape(too_many) == openai_shape
    body = request(server.base, "/v1/embeddings", {"model": "m", "input": ["a" * 4000] * 60})
    assert (
        body.status == 413 and body.json["error"]["code"] == "body_too_large" and shape(body) == openai_shape
    )
    assert shape(request(server.base, "/v1/nowhere")) == openai_shape
    missing = request(server.base, "/v1/embeddings", {"input": "a"})
    assert missing.status == 400 and missing.json["error"]["param"] == "model"
    old = request(server.base, "/embed", {"texts": []})  # the project's routes keep the project's shape
    assert old.status == 422 and shape(old) == {"status", "code", "message", "field"}


def test_embeddings_share_the_queue_with_embed(server: Any, default_model: Any) -> None:
    texts = [f"{text} number {i}" for i in range(6) for text in TEXTS]
    before = request(server.base, "/health").json["batcher"]["batches"]

    def one(i: int) -> np.ndarray:
        if i % 2:
            reply = request(server.base, "/embed", {"texts": [texts[i]], "role": "document"})
            return np.asarray(reply.json["vectors"][0], dtype=np.float32)
        reply = request(server.base, "/v1/embeddings", {"model": "all-MiniLM-L6-v2", "input": texts[i]})
        return np.asarray(reply.json["data"][0]["embedding"], dtype=np.float32)

    with ThreadPoolExecutor(len(texts)) as pool:
        got = list(pool.map(one, range(len(texts))))
    np.testing.assert_allclose(np.stack(got), default_model.encode(texts), atol=5e-3)  # bf16 in a batch
    assert request(server.base, "/health").json["batcher"]["batches"] - before < len(texts)


@pytest.fixture(scope="module")
def pseudo_server(minilm_tokenizer: Any) -> Iterator[ThreadServer]:
    """A pseudo-siamese model (two tiny towers) served as `tiny`."""
    model = SiameseModel(
        query=make_tiny_transformer(minilm_tokenizer, seed=1),
        document=make_tiny_transformer(minilm_tokenizer, seed=2),
        normalize=True,
    )
    with ThreadServer(create_app(ServiceState(model, model_name="tiny"))) as running:
        running.model = model  # type: ignore[attr-defined]
        yield running


def test_pseudo_siamese_roles_by_name_and_input_type(pseudo_server: Any) -> None:
    client, model = client_for(pseudo_server.base), pseudo_server.model
    assert [m.id for m in client.models.list().data] == ["tiny", "tiny:query"]
    query, document = model.encode(TEXTS, role="query"), model.encode(TEXTS, role="document")
    assert not np.allclose(query, document, atol=1e-2)

    def vectors(name: str, **extra: Any) -> np.ndarray:
        reply = client.embeddings.create(model=name, input=TEXTS, extra_body=extra or None)
        return np.asarray([item.embedding for item in reply.data], dtype=np.float32)

    for got, expected in (
        (vectors("tiny"), document),
        (vectors("tiny:query"), query),
        (vectors("tiny:document"), document),
        (vectors("tiny", input_type="query"), query),
        (vectors("tiny", input_type="passage"), document),
        (vectors("tiny:query", input_type="query"), query),
    ):
        np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)


def test_model_names() -> None:
    class Source:
        def __init__(self, source: str) -> None:
            self.source = source

    import textsiamese

    assert default_model_name(Source(str(textsiamese.default_model_path()))) == "all-MiniLM-L6-v2"
    assert default_model_name(Source("/models/runs/stsb-minilm/")) == "stsb-minilm"
    assert default_model_name(Source("<memory>")) == "textsiamese"


def test_api_key_sources() -> None:
    env = {"TEXTSIAMESE_API_KEY": "from-env"}
    assert api_key_from(None, env) == "from-env" and api_key_from("given", env) == "given"
    assert api_key_from(None, {}) is None
    for option, environ in ((None, {"TEXTSIAMESE_API_KEY": ""}), ("  ", {})):
        with pytest.raises(ConfigError, match="empty"):
            api_key_from(option, environ)


KEY = "ts-test-3f9c1d2a7b"


def test_api_key_through_the_cli_and_never_logged(default_model: Any) -> None:
    """The real command with --api-key (debug logging): the SDK without the key gets AuthenticationError,
    with it the vectors; /health and the page stay open; the key appears nowhere in what the server wrote."""
    with ProcessServer("--api-key", KEY, "--log-level", "debug", "--model-name", "minilm") as server:
        with pytest.raises(openai.AuthenticationError) as caught:
            client_for(server.base, "wrong-key").embeddings.create(model="minilm", input="x")
        assert caught.value.status_code == 401 and caught.value.code == "invalid_api_key"
        assert "wrong-key" not in caught.value.message
        reply = client_for(server.base, KEY).embeddings.create(model="minilm", input=TEXTS)
        np.testing.assert_allclose(
            [item.embedding for item in reply.data], default_model.encode(TEXTS, role="document"), atol=1e-6
        )
        bare = request(server.base, "/v1/models")
        assert bare.status == 401 and bare.json["error"]["code"] == "missing_api_key"
        assert bare.headers["www-authenticate"] == "Bearer" and set(bare.json["error"]) == {
            "message",
            "type",
            "param",
            "code",
        }
        embed = request(server.base, "/embed", {"texts": ["x"]}, headers={"Authorization": "Bearer nope"})
        assert embed.status == 401 and embed.json["error"]["status"] == 401  # the project's shape there
        assert request(server.base, "/metrics").status == 401
        authorised = {"Authorization": f"Bearer {KEY}"}
        assert request(server.base, "/metrics", headers=authorised).status == 200
        assert request(server.base, "/embed", {"texts": ["x"]}, headers=authorised).status == 200
        health = request(server.base, "/health")
        assert health.status == 200 and health.json["api_key_required"] is True
        assert request(server.base, "/").status == 200 and request(server.base, "/docs").status == 200
        status, err = server.terminate()
    assert status in (0, -15) and "Application shutdown complete" in err, err
    logs = err + server.stdout
    assert "API key required" in logs and "minilm" in logs
    assert KEY not in logs


def readme_openai_block() -> str:
    """The README's python block that calls the service with the `openai` client."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    found = [block for block in blocks if "from openai import OpenAI" in block]
    assert len(found) == 1, "README's openai example is gone"
    return found[0]


def test_readme_openai_example_runs(server: Any, default_model: Any) -> None:
    """tests/test_readme.py skips this block (it needs a running service); it runs here against one."""
    code = readme_openai_block()
    assert "http://127.0.0.1:8000/v1" in code
    namespace: dict[str, Any] = {}
    exec(compile(code.replace("http://127.0.0.1:8000", server.base), "README.md", "exec"), namespace)
    expected = default_model.encode(["A man eats.", "Someone eats."], role="document")
    np.testing.assert_allclose(np.asarray(namespace["vectors"]), expected, atol=1e-6, rtol=0)
