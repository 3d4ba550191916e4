"""sentence-transformers directories in full: Dense, Normalize and Router / Asym load and give
sentence-transformers' own vectors. Every directory is built and saved by sentence-transformers itself from
tiny random BERTs (no download); its ``encode`` / ``encode_query`` / ``encode_document`` is the reference."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sentence_transformers as st
import torch
from sentence_transformers.sentence_transformer.modules import (
    Dense,
    LayerNorm,
    Normalize,
    Pooling,
    Router,
    Transformer,
)

import textsiamese
from tests.conftest import make_tiny_transformer
from textsiamese import ConfigError, ModelError, SiameseModel
from textsiamese.towers import DenseLayer, L2Normalize, ProjectedTower, TransformerTower

# The last text is longer than the 24 and 32 tokens the towers read: both libraries truncate it alike.
TEXTS = [
    "a cat sits on the mat",
    "the dog barks loudly",
    "rain is expected tomorrow in the north",
    " ".join(["the quick brown fox jumps over the lazy dog"] * 6),
]


def _hf(tmp_path: Path, tokenizer: Any, seed: int) -> str:
    """A tiny random BERT with the MiniLM tokenizer, saved as a Hugging Face folder."""
    folder = tmp_path / f"hf{seed}"
    if not folder.is_dir():
        tower = make_tiny_transformer(tokenizer, seed=seed)
        tower.encoder.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    return str(folder)


def _saved(model: Any, folder: Path) -> Path:
    model.save(str(folder))
    return folder


def _ours(model: SiameseModel, role: str = "query") -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the long text's truncation warning
        return model.encode(TEXTS, role=role, precision="fp32")  # type: ignore[no-any-return]


def _seeded_dense(seed: int, *args: Any, **options: Any) -> Dense:
    torch.manual_seed(seed)
    return Dense(*args, **options)


def test_dense_and_normalize_reproduce_sentence_transformers(tmp_path: Path, minilm_tokenizer) -> None:  # type: ignore[no-untyped-def]
    """Transformer → Pooling → Dense (tanh) → Dense (identity, residual projection) → Normalize."""
    reference = st.SentenceTransformer(
        modules=[
            Transformer(_hf(tmp_path, minilm_tokenizer, 0), max_seq_length=24),
            Pooling(32, "mean"),
            _seeded_dense(1, 32, 16),
            _seeded_dense(2, 16, 8, activation_function=torch.nn.Identity(), use_residual=True),
            Normalize(),
        ],
        device="cpu",
    )
    directory = _saved(reference, tmp_path / "st")
    model = textsiamese.load(directory, device="cpu")
    tower = model.tower("query")
    assert model.is_shared and model.normalize and model.dimension == 8
    assert isinstance(tower, ProjectedTower) and isinstance(tower.base, TransformerTower)
    assert [type(layer) for layer in tower.layers] == [DenseLayer, DenseLayer]
    assert tower.max_length == 24
    expected = reference.encode(TEXTS)
    np.testing.assert_allclose(_ours(model), expected, atol=1e-5)
    # textsiamese's own format keeps the head: saved and loaded, the same vectors
    again = textsiamese.load(model.save(tmp_path / "ours"), device="cpu")
    assert isinstance(again.tower("query"), ProjectedTower)
    np.testing.assert_allclose(_ours(again), expected, atol=1e-5)
    assert again.fingerprint() == model.fingerprint()


def _router_reference(tmp_path: Path, tokenizer: Any, top_normalize: bool) -> Any:
    """Different query and document chains: other weights, pooling, length, Dense activation and bias; with
    ``top_normalize`` a Normalize after the Router (every route), else one inside the query route only."""
    query = [
        Transformer(_hf(tmp_path, tokenizer, 0), max_seq_length=32),
        Pooling(32, "mean"),
        _seeded_dense(3, 32, 16, activation_function=torch.nn.Identity()),
    ]
    document = [
        Transformer(_hf(tmp_path, tokenizer, 1), max_seq_length=24),
        Pooling(32, "cls"),
        _seeded_dense(4, 32, 16, bias=False, activation_function=torch.nn.GELU()),
    ]
    if not top_normalize:
        query.append(Normalize())
    modules = [Router.for_query_document(query, document), *([Normalize()] if top_normalize else [])]
    return st.SentenceTransformer(modules=modules, device="cpu")


@pytest.mark.parametrize("layout", ["router, normalize after", "router, normalize in one route", "asym"])
def test_router_and_asym_give_one_tower_per_role(tmp_path: Path, minilm_tokenizer, layout: str) -> None:  # type: ignore[no-untyped-def]
    reference = _router_reference(
        tmp_path, minilm_tokenizer, top_normalize=layout != "router, normalize in one route"
    )
    directory = _saved(reference, tmp_path / "st")
    if layout == "asym":
        # The layout of releases before Router: type Asym, its config as config.json; sentence-transformers
        # reads it too, and stays the reference.
        modules = json.loads((directory / "modules.json").read_text())
        modules[0]["type"] = "sentence_transformers.models.Asym"
        (directory / "modules.json").write_text(json.dumps(modules))
        shutil.move(directory / "router_config.json", directory / "config.json")
        reference = st.SentenceTransformer(str(directory), device="cpu")
    model = textsiamese.load(directory, device="cpu")
    assert not model.is_shared and model.dimension == 16
    assert model.tower("query").max_length == 32 and model.tower("document").max_length == 24
    if layout == "router, normalize in one route":
        assert not model.normalize
        assert isinstance(model.tower("query").layers[-1], L2Normalize)  # type: ignore[index]
    else:
        assert model.normalize
    np.testing.assert_allclose(_ours(model, "query"), reference.encode_query(TEXTS), atol=1e-5)
    np.testing.assert_allclose(_ours(model, "document"), reference.encode_document(TEXTS), atol=1e-5)
    # the two roles really differ (else the test could not tell a swapped route)
    assert np.abs(_ours(model, "query") - _ours(model, "document")).max() > 0.1
    again = textsiamese.load(model.save(tmp_path / "ours"), device="cpu")
    np.testing.assert_allclose(_ours(again, "document"), reference.encode_document(TEXTS), atol=1e-5)


def test_router_with_prompts_and_aliased_routes(tmp_path: Path, minilm_tokenizer) -> None:  # type: ignore[no-untyped-def]
    """Routes named ``query`` and ``passage`` (mapped for sentence-transformers by route_mappings), prompts per
    role: the model loads with them and encodes as encode_query / encode_document do."""
    query = [Transformer(_hf(tmp_path, minilm_tokenizer, 0), max_seq_length=32), Pooling(32, "mean")]
    passage = [Transformer(_hf(tmp_path, minilm_tokenizer, 1), max_seq_length=32), Pooling(32, "max")]
    router = Router(
        {"query": query, "passage": passage},
        default_route="query",
        route_mappings={("document", None): "passage"},
    )
    reference = st.SentenceTransformer(
        modules=[router, Normalize()],
        prompts={"query": "query: ", "document": "passage: "},
        device="cpu",
    )
    directory = _saved(reference, tmp_path / "st")
    model = textsiamese.load(directory, device="cpu")
    assert model.prompts == {"query": "query: ", "document": "passage: "}
    np.testing.assert_allclose(_ours(model, "query"), reference.encode_query(TEXTS), atol=1e-5)
    np.testing.assert_allclose(_ours(model, "document"), reference.encode_document(TEXTS), atol=1e-5)
    # without the mapping, the route's own name (passage) still serves the document role
    config = json.loads((directory / "router_config.json").read_text())
    config["parameters"]["route_mappings"] = {}
    (directory / "router_config.json").write_text(json.dumps(config))
    unmapped = textsiamese.load(directory, device="cpu")
    np.testing.assert_allclose(_ours(unmapped, "document"), _ours(model, "document"), atol=1e-6)


def test_a_router_whose_routes_share_one_chain_is_siamese(tmp_path: Path, minilm_tokenizer) -> None:  # type: ignore[no-untyped-def]
    chain = [Transformer(_hf(tmp_path, minilm_tokenizer, 0), max_seq_length=32), Pooling(32, "mean")]
    reference = st.SentenceTransformer(modules=[Router.for_query_document(chain, chain)], device="cpu")
    model = textsiamese.load(_saved(reference, tmp_path / "st"), device="cpu")
    assert model.is_shared and not model.normalize
    np.testing.assert_allclose(_ours(model), reference.encode_query(TEXTS), atol=1e-5)


def _plain(tmp_path: Path, tokenizer: Any, *extra: Any) -> Path:
    modules = [Transformer(_hf(tmp_path, tokenizer, 0), max_seq_length=32), Pooling(32, "mean"), *extra]
    return _saved(st.SentenceTransformer(modules=modules, device="cpu"), tmp_path / "st")


def test_other_modules_are_refused_by_name(tmp_path: Path, minilm_tokenizer) -> None:  # type: ignore[no-untyped-def]
    directory = _plain(tmp_path, minilm_tokenizer, LayerNorm(32))
    with pytest.raises(
        ModelError, match=r"modules \['Transformer', 'Pooling', 'LayerNorm'\] are not supported"
    ):
        textsiamese.load(directory, device="cpu")


def test_pickled_dense_weights_are_refused(tmp_path: Path, minilm_tokenizer) -> None:  # type: ignore[no-untyped-def]
    modules = [Transformer(_hf(tmp_path, minilm_tokenizer, 0)), Pooling(32, "mean"), Dense(32, 8)]
    directory = tmp_path / "st"
    st.SentenceTransformer(modules=modules, device="cpu").save(str(directory), safe_serialization=False)
    shutil.copy(
        Path(_hf(tmp_path, minilm_tokenizer, 0)) / "model.safetensors", directory
    )  # the encoder's own
    with pytest.raises(ModelError, match=r"2_Dense: holds only pickled weights \(pytorch_model.bin\)"):
        textsiamese.load(directory, device="cpu")


def test_dense_on_token_vectors_and_unknown_activations_are_refused(tmp_path: Path, minilm_tokenizer) -> None:  # type: ignore[no-untyped-def]
    directory = _plain(tmp_path, minilm_tokenizer, Dense(32, 8))
    config_path = directory / "2_Dense" / "config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "activation_function": "mypackage.Swish"}))
    with pytest.raises(ModelError, match=r"Dense activation 'mypackage.Swish' is not supported"):
        textsiamese.load(directory, device="cpu")
    config_path.write_text(json.dumps({**config, "module_input_name": "token_embeddings"}))
    with pytest.raises(ModelError, match="module_input_name 'token_embeddings' is not supported"):
        textsiamese.load(directory, device="cpu")
    config_path.write_text(json.dumps({**config, "out_features": 4}))
    with pytest.raises(
        ModelError, match=r"\(linear.bias 8; linear.weight 8x32\) do not fit its config \(linear.bias 4;"
    ):
        textsiamese.load(directory, device="cpu")
    with pytest.raises(ConfigError, match=r"head layer 0 \(dense\) takes 16-d vectors but gets 32-d"):
        ProjectedTower(make_tiny_transformer(minilm_tokenizer), [DenseLayer(16, 8)])


def test_a_router_with_no_route_for_a_role_is_refused(tmp_path: Path, minilm_tokenizer) -> None:  # type: ignore[no-untyped-def]
    chain = [Transformer(_hf(tmp_path, minilm_tokenizer, 0)), Pooling(32, "mean")]
    router = Router({"titles": chain, "bodies": chain}, allow_empty_key=False)
    directory = _saved(st.SentenceTransformer(modules=[router], device="cpu"), tmp_path / "st")
    with pytest.raises(ModelError, match="no route for the query role \\(routes: titles, bodies"):
        textsiamese.load(directory, device="cpu")
