"""Role prompts: a prefix per role, saved in the model config and applied wherever a role's texts are encoded
(encode, pair encoding, training batches, search, the service's batcher), and read from sentence-transformers
directories."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import textsiamese
from tests.conftest import make_tiny_transformer
from textsiamese import ConfigError, ModelError, SiameseModel
from textsiamese.data import PairData
from textsiamese.training.batches import build_train_set
from textsiamese.training.recipe_run import build_model

TEXTS = ["a cat sits on the mat", "the dog barks loudly", "rain is expected tomorrow"]
PROMPTS = {"query": "query: ", "document": "passage: "}


def _exact(model: SiameseModel, texts: list[str], role: str = "query", **options: object) -> np.ndarray:
    return model.encode(texts, role=role, precision="fp32", **options)  # type: ignore[arg-type]


def test_saved_prompts_encode_as_a_manual_prefix(tmp_path: Path, minilm_tokenizer) -> None:  # type: ignore[no-untyped-def]
    plain = SiameseModel(make_tiny_transformer(minilm_tokenizer), normalize=True)
    prompted = SiameseModel(make_tiny_transformer(minilm_tokenizer), normalize=True, prompts=PROMPTS)
    loaded = textsiamese.load(prompted.save(tmp_path / "m"), device="cpu")
    assert loaded.prompts == PROMPTS
    for role, prefix in PROMPTS.items():
        by_hand = _exact(plain, [prefix + t for t in TEXTS], role)
        np.testing.assert_allclose(_exact(loaded, TEXTS, role), by_hand, atol=1e-6)
        # prompt="" turns the prompt off; any other string replaces it
        np.testing.assert_allclose(
            _exact(loaded, TEXTS, role, prompt=""), _exact(plain, TEXTS, role), atol=1e-6
        )
        np.testing.assert_allclose(
            _exact(loaded, TEXTS, role, prompt="q: "),
            _exact(plain, ["q: " + t for t in TEXTS], role),
            atol=1e-6,
        )
    # the prompts are part of what an index checks: a model with other prompts is another model
    assert loaded.fingerprint() != plain.fingerprint()


def test_a_shared_tower_prompts_each_side_of_a_pair_by_its_role(minilm_tokenizer) -> None:  # type: ignore[no-untyped-def]
    plain = SiameseModel(make_tiny_transformer(minilm_tokenizer))
    prompted = SiameseModel(make_tiny_transformer(minilm_tokenizer), prompts=PROMPTS)
    a, b = prompted.encode_pairs(TEXTS, TEXTS[::-1])
    np.testing.assert_allclose(a, plain.encode(["query: " + t for t in TEXTS]), atol=1e-6)
    np.testing.assert_allclose(b, plain.encode(["passage: " + t for t in TEXTS[::-1]]), atol=1e-6)


def test_training_batches_carry_the_role_prompts(minilm_tokenizer) -> None:  # type: ignore[no-untyped-def]
    model = SiameseModel(make_tiny_transformer(minilm_tokenizer), prompts=PROMPTS)
    pairs = PairData(sentence1=TEXTS, sentence2=TEXTS[::-1], labels=[1, 0, 1])
    train = build_train_set(model, pairs, "pair", "contrastive")
    tower = model.tower("query")
    assert train.columns[0].ids == tower.tokenize(["query: " + t for t in TEXTS]).ids
    assert train.columns[1].ids == tower.tokenize(["passage: " + t for t in TEXTS[::-1]]).ids


def test_a_recipe_sets_the_prompts_and_untied_towers_keep_them(tiny_model_dir: Path) -> None:
    model = build_model({"base": str(tiny_model_dir), "towers": "pseudo", "prompts": PROMPTS}, None)
    assert not model.is_shared and model.prompts == PROMPTS
    with pytest.raises(ConfigError, match="unknown role 'title'"):
        build_model({"base": str(tiny_model_dir), "prompts": {"title": "t: "}}, None)


def test_bad_prompts_in_a_config_are_refused_by_name(tmp_path: Path, tiny_model_dir: Path) -> None:
    model = textsiamese.load(tiny_model_dir, device="cpu")
    path = model.save(tmp_path / "m")
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "prompts": {"query": 3}}))
    with pytest.raises(ModelError, match="prompts must map query / document to a string"):
        textsiamese.load(path, device="cpu")


def test_sentence_transformers_prompts_load_with_their_vectors(tmp_path: Path, minilm_tokenizer) -> None:  # type: ignore[no-untyped-def]
    """A directory saved by sentence-transformers itself with prompts: its ``query`` prompt serves the query
    role, ``passage`` the document role, and the vectors are its own ``encode_query`` / ``encode_document``."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    tower = make_tiny_transformer(minilm_tokenizer)
    hf = tmp_path / "hf"
    tower.encoder.save_pretrained(hf)
    minilm_tokenizer.save_pretrained(hf)
    st = SentenceTransformer(
        modules=[Transformer(str(hf), max_seq_length=32), Pooling(32, "mean")],
        prompts={"query": "query: ", "passage": "passage: "},
        device="cpu",
    )
    st_dir = tmp_path / "st"
    st.save(str(st_dir))
    settings = json.loads((st_dir / "config_sentence_transformers.json").read_text())
    settings["prompts"].pop("document", None)  # sentence-transformers 6 adds an empty one; older ones do not
    (st_dir / "config_sentence_transformers.json").write_text(json.dumps(settings))
    model = textsiamese.load(st_dir, device="cpu")
    assert model.prompts == {"query": "query: ", "document": "passage: "}
    np.testing.assert_allclose(_exact(model, TEXTS, "query"), st.encode(TEXTS, prompt="query: "), atol=1e-5)
    np.testing.assert_allclose(
        _exact(model, TEXTS, "document"), st.encode(TEXTS, prompt="passage: "), atol=1e-5
    )


def test_a_default_prompt_serves_roles_without_their_own(tmp_path: Path, tiny_model_dir: Path) -> None:
    from textsiamese.model.loading import st_prompts

    (tmp_path / "config_sentence_transformers.json").write_text(
        json.dumps({"prompts": {"query": "q: ", "classify": "c: "}, "default_prompt_name": "classify"})
    )
    assert st_prompts(tmp_path) == {"query": "q: ", "document": "c: "}
    (tmp_path / "config_sentence_transformers.json").write_text(
        json.dumps({"prompts": {"query": "q: "}, "default_prompt_name": "missing"})
    )
    with pytest.raises(ModelError, match="default_prompt_name 'missing'"):
        st_prompts(tmp_path)


def test_search_applies_the_query_prompt(tmp_path: Path, minilm_tokenizer) -> None:  # type: ignore[no-untyped-def]
    from textsiamese.search import Index

    model = SiameseModel(make_tiny_transformer(minilm_tokenizer), normalize=True, prompts=PROMPTS)
    index = Index.build(model, TEXTS, kind="flat")
    hits = index.search(["a cat"], k=3, model=model)[0]
    by_hand = index.search(model.encode(["query: a cat"], prompt=""), k=3)[0]
    assert [(h.id, round(h.score, 5)) for h in hits] == [(h.id, round(h.score, 5)) for h in by_hand]
    overridden = index.search(["a cat"], k=3, model=model, prompt="")[0]
    plain = index.search(model.encode(["a cat"], prompt=""), k=3)[0]
    assert [round(h.score, 5) for h in overridden] == [round(h.score, 5) for h in plain]


def test_the_service_batcher_applies_each_roles_prompt(minilm_tokenizer) -> None:  # type: ignore[no-untyped-def]
    """Queries and documents of a shared tower meet in one batch, so the prompt goes on before queueing."""
    from textsiamese.serve.state import ServiceState

    model = SiameseModel(make_tiny_transformer(minilm_tokenizer), normalize=True, prompts=PROMPTS)
    state = ServiceState(model, precision="fp32")
    state.start()
    try:
        queued = state.queued_model()
        for role in ("query", "document"):
            np.testing.assert_allclose(queued.encode(TEXTS, role=role), _exact(model, TEXTS, role), atol=1e-6)
        np.testing.assert_allclose(
            queued.encode(TEXTS, role="query", prompt=""), _exact(model, TEXTS, prompt=""), atol=1e-6
        )
        a, b = queued.encode_pairs(TEXTS, TEXTS)
        np.testing.assert_allclose(a, _exact(model, TEXTS, "query"), atol=1e-6)
        np.testing.assert_allclose(b, _exact(model, TEXTS, "document"), atol=1e-6)
    finally:
        state.close()


def test_encode_command_takes_a_prompt(tmp_path: Path, tiny_model_dir: Path) -> None:
    from textsiamese.cli import main

    corpus = tmp_path / "texts.txt"
    corpus.write_text("\n".join(TEXTS) + "\n")
    out = tmp_path / "v.npy"
    argv = ["encode", "--input", str(corpus), "--output", str(out), "--model", str(tiny_model_dir)]
    assert main([*argv, "--prompt", "query: ", "--precision", "fp32", "--no-progress"]) == 0
    model = textsiamese.load(tiny_model_dir, device="cpu")
    np.testing.assert_allclose(np.load(out), _exact(model, ["query: " + t for t in TEXTS]), atol=1e-6)
