"""``textsiamese export``: one tower alone, in textsiamese's format, as a sentence-transformers directory that
sentence-transformers itself loads, and as ONNX that a bare ONNX Runtime session runs (tokenisation, prompt
and normalisation done here from ``onnx_config.json``, as a caller without textsiamese would)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

import textsiamese
from tests.conftest import make_tiny_lstm, make_tiny_transformer
from textsiamese import ConfigError, SiameseModel
from textsiamese.cli import main
from textsiamese.inference.precision import cpu_has_vnni
from textsiamese.towers import DenseLayer, L2Normalize, ProjectedTower

TEXTS = [
    "a cat sits on the mat",
    "  The Dog barks loudly  ",
    "rain is expected tomorrow in the north",
    " ".join(["the quick brown fox jumps over the lazy dog"] * 6),  # past both towers' limits
]
PROMPTS = {"query": "query: ", "document": "passage: "}


@pytest.fixture(scope="module")
def two_tower_dir(tmp_path_factory, minilm_tokenizer) -> Path:  # type: ignore[no-untyped-def]
    """A saved pseudo-siamese model: different query and document towers (weights, pooling, limits, heads),
    role prompts, normalised."""
    import torch

    query = ProjectedTower(
        make_tiny_transformer(minilm_tokenizer, seed=0), [DenseLayer(32, 16, activation="tanh")]
    )
    torch.manual_seed(5)
    head = [
        DenseLayer(32, 16, bias=False, activation="gelu"),
        L2Normalize(),
        DenseLayer(16, 16, activation="identity"),
    ]
    document = ProjectedTower(
        make_tiny_transformer(minilm_tokenizer, seed=1, pooling="cls", max_length=24), head
    )
    model = SiameseModel(query=query, document=document, normalize=True, prompts=PROMPTS)
    return model.save(tmp_path_factory.mktemp("export") / "two-tower")


def _ours(model: SiameseModel, role: str, **options: object) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the long text's truncation warning
        return model.encode(TEXTS, role=role, precision="fp32", **options)  # type: ignore[arg-type, no-any-return]


def _export(model_dir: Path, out: Path, role: str, fmt: str, *extra: str) -> int:
    return main(
        ["export", "--model", str(model_dir), "--role", role, "--format", fmt, "--output", str(out), *extra]
    )


def _exported(model_dir: Path, out: Path, role: str, fmt: str) -> tuple[SiameseModel, np.ndarray]:
    """The model, its fp32 vectors of TEXTS for ``role``, after exporting that tower to ``out``."""
    model = textsiamese.load(model_dir, device="cpu")
    assert _export(model_dir, out, role, fmt) == 0
    return model, _ours(model, role)


@pytest.mark.parametrize("role", ["query", "document"])
def test_an_exported_tower_loads_in_sentence_transformers(
    tmp_path: Path, two_tower_dir: Path, role: str
) -> None:
    from sentence_transformers import SentenceTransformer

    model, expected = _exported(two_tower_dir, tmp_path / "st", role, "st")
    theirs = SentenceTransformer(str(tmp_path / "st"), device="cpu")
    # plain encode applies the role's prompt (its default prompt); encode_query / encode_document too
    np.testing.assert_allclose(theirs.encode(TEXTS), expected, atol=1e-5)
    by_role = theirs.encode_query if role == "query" else theirs.encode_document
    np.testing.assert_allclose(by_role(TEXTS), expected, atol=1e-5)
    assert theirs.max_seq_length == model.tower(role).max_length
    # the two towers differ, so an export of the wrong one could not pass
    other = "document" if role == "query" else "query"
    assert np.abs(_ours(model, other) - expected).max() > 0.1
    # and textsiamese reads the exported directory back to the same vectors, for either role
    again = textsiamese.load(tmp_path / "st", device="cpu")
    assert again.is_shared and again.prompts == {"query": PROMPTS[role], "document": PROMPTS[role]}
    np.testing.assert_allclose(_ours(again, "query"), expected, atol=1e-5)


def test_the_textsiamese_format_holds_only_that_tower(tmp_path: Path, two_tower_dir: Path) -> None:
    model, expected = _exported(two_tower_dir, tmp_path / "q", "query", "textsiamese")
    single = textsiamese.load(tmp_path / "q", device="cpu")
    assert single.is_shared and single.num_parameters() == sum(
        p.numel() for p in model.tower("query").parameters()
    )
    for role in ("query", "document"):  # every role of the export is the query tower, prompt included
        np.testing.assert_allclose(_ours(single, role), expected, atol=1e-6)


def _bare_onnx(directory: Path, texts: list[str]) -> np.ndarray:
    """What a caller with onnxruntime and tokenizers alone does with an exported directory."""
    import onnxruntime
    from tokenizers import Tokenizer

    config = json.loads((directory / "onnx_config.json").read_text())
    assert config["pooling_in_graph"] and config["inputs"] == ["input_ids", "attention_mask"]
    tokenizer = Tokenizer.from_file(str(directory / config["tokenizer"]))
    tokenizer.no_padding()
    tokenizer.enable_truncation(config["max_length"])
    items = [config["prompt"] + text for text in texts]
    items = [text.strip() for text in items] if config["strip"] else items
    items = [text.lower() for text in items] if config["lowercase"] else items
    rows = [encoding.ids for encoding in tokenizer.encode_batch(items)]
    width = max(map(len, rows))
    ids = np.full((len(rows), width), config["pad_id"], dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)], mask[i, : len(row)] = row, 1
    session = onnxruntime.InferenceSession(
        str(directory / config["model"]), providers=["CPUExecutionProvider"]
    )
    (vectors,) = session.run([config["output"]], {"input_ids": ids, "attention_mask": mask})
    if config["normalize"]:
        vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    assert vectors.shape == (len(texts), config["dimension"])
    return vectors  # type: ignore[no-any-return]


@pytest.mark.parametrize("role", ["query", "document"])
def test_the_onnx_export_runs_in_a_bare_onnxruntime_session(
    tmp_path: Path, two_tower_dir: Path, role: str
) -> None:
    _, expected = _exported(two_tower_dir, tmp_path / "onnx", role, "onnx")
    config = json.loads((tmp_path / "onnx" / "onnx_config.json").read_text())
    assert config["prompt"] == PROMPTS[role] and config["normalize"] and not config["int8"]
    np.testing.assert_allclose(_bare_onnx(tmp_path / "onnx", TEXTS), expected, atol=1e-4)
    assert _export(two_tower_dir, tmp_path / "int8", role, "onnx", "--int8") == 0
    quantized = _bare_onnx(tmp_path / "int8", TEXTS)
    cosines = (quantized * expected).sum(axis=1)  # both unit length
    # As tests/test_encode.py: 8-bit activations lose more without VNNI (AVX2-only CPUs gave a 0.9715
    # minimum), so the bound follows the CPU, as tests/test_onnx_backend.py's 0.97 for the default model.
    assert cosines.min() > (0.99 if cpu_has_vnni() else 0.96), cosines
    assert (tmp_path / "int8" / "model.onnx").stat().st_size < (
        tmp_path / "onnx" / "model.onnx"
    ).stat().st_size


def test_an_existing_output_is_refused_unless_forced(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert _export(tiny_model_dir, out, "query", "st") == 2
    assert "already exists and is not empty; pass --force to replace it" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"
    assert _export(tiny_model_dir, out, "query", "st", "--force") == 0
    assert not (out / "keep.txt").exists() and (out / "modules.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging folder left behind
    (tmp_path / "empty").mkdir()  # an empty directory is fine without --force
    assert _export(tiny_model_dir, tmp_path / "empty", "document", "textsiamese") == 0


def test_what_cannot_be_exported_is_refused(tmp_path: Path, tiny_model_dir: Path) -> None:
    from textsiamese.cli.export import EXPORT_FORMATS
    from textsiamese.model.export import FORMATS, export_tower_directory

    assert EXPORT_FORMATS == FORMATS
    lstm = SiameseModel(make_tiny_lstm())
    for fmt in ("st", "onnx"):
        with pytest.raises(
            ConfigError,
            match=r"the query tower is of kind 'lstm'; .* \(export it with --format textsiamese\)",
        ):
            export_tower_directory(lstm, "query", tmp_path / fmt, fmt)
    assert not any(tmp_path.iterdir())  # the staging folders went with the failure
    export_tower_directory(lstm, "query", tmp_path / "lstm", "textsiamese")
    model = textsiamese.load(tiny_model_dir, device="cpu")
    with pytest.raises(ConfigError, match="int8 is offered for the onnx format only"):
        export_tower_directory(model, "query", tmp_path / "x", "st", int8=True)
    with pytest.raises(ConfigError, match="unknown role 'title'"):
        export_tower_directory(model, "title", tmp_path / "x", "st")


def test_the_onnx_backend_runs_projected_towers(two_tower_dir: Path) -> None:
    """The in-memory ONNX backend takes a tower with a Dense head too (same graph as the export)."""
    model = textsiamese.load(two_tower_dir, device="cpu")
    for role in ("query", "document"):
        np.testing.assert_allclose(_ours(model, role, backend="onnx"), _ours(model, role), atol=1e-4)
