"""Long texts: chunk-then-pool (library, save / load, ONNX, LSTM) and the per-row truncation report (CLI)."""

from __future__ import annotations

import csv
import json
import random
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import textsiamese
from tests.conftest import WORDS, make_tiny_transformer
from textsiamese import ConfigError, SiameseModel, TruncationWarning
from textsiamese.cli import main
from textsiamese.inference.long_text import LongText, window_starts
from textsiamese.towers import Tower

MAX = 32  # the tiny transformer's maximum, [CLS] and [SEP] included
# Words the MiniLM tokenizer keeps whole: one token each, so a text of n of them has n + 2 tokens.
ONE_TOKEN = [w for w in (*WORDS, "red", "blue", "green", "house", "tree", "car", "sun", "rain", "bird")]


def text_of(tokens: int, seed: int = 0) -> str:
    """A text of ``tokens`` tokens for the tiny transformer, special tokens included."""
    rng = random.Random(seed)
    return " ".join(rng.choice(ONE_TOKEN) for _ in range(tokens - 2))


@pytest.fixture
def model(minilm_tokenizer) -> SiameseModel:  # type: ignore[no-untyped-def]
    return SiameseModel(make_tiny_transformer(minilm_tokenizer), normalize=True)


def hand_pooled(tower: Tower, text: str, chunk_length: int, overlap: int, pooling: str, normalize: bool):  # type: ignore[no-untyped-def]
    """The chunk-then-pool vector computed apart from the library: windows cut here, each run through the
    tower alone (no padding), pooled here."""
    if hasattr(tower, "tokenizer") and hasattr(tower.tokenizer, "cls_token_id"):
        content = tower.tokenizer(text, add_special_tokens=False)["input_ids"]
        head, tail = [tower.tokenizer.cls_token_id], [tower.tokenizer.sep_token_id]
    else:
        content, head, tail = tower.tokenizer.encode(text), [], []
    room = chunk_length - len(head) - len(tail)
    last = len(content) - room
    starts = [0] if last <= 0 else [*range(0, last, room - overlap), last]
    vectors = []
    tower.eval()  # no dropout, as in encode
    with torch.no_grad():
        for start in starts:
            ids = torch.tensor([head + content[start : start + room] + tail])
            vectors.append(tower({"input_ids": ids, "attention_mask": torch.ones_like(ids)})[0].numpy())
    stack = np.stack(vectors)
    if normalize:
        stack = stack / np.linalg.norm(stack, axis=1, keepdims=True)
    pooled = {"mean": stack.mean(0), "max": stack.max(0), "first": stack[0]}[pooling]
    return (pooled / np.linalg.norm(pooled) if normalize else pooled), len(starts)


def test_window_starts_cover_the_text_with_full_windows() -> None:
    assert window_starts(30, 30, 8) == [0]
    assert window_starts(31, 30, 8) == [0, 1]
    assert window_starts(150, 30, 8) == [0, 22, 44, 66, 88, 110, 120]


def test_exactly_max_is_whole_and_max_plus_one_truncates_or_chunks(model: SiameseModel) -> None:
    exact, over = text_of(MAX), text_of(MAX + 1, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TruncationWarning)
        vectors, tokens = model.encode([exact], return_tokens=True)
        chunked = model.encode([exact], long_text="chunk")
    assert tokens.tolist() == [MAX]
    np.testing.assert_allclose(chunked, vectors, atol=1e-6)  # fits: one window, the same row
    with pytest.warns(TruncationWarning, match=r"1 of 2 texts were longer than 32 tokens .*\(indexes 1\)"):
        _, tokens = model.encode([exact, over], return_tokens=True)
    assert tokens.tolist() == [MAX, MAX + 1]
    setting = LongText("chunk", overlap=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TruncationWarning)  # chunking cuts nothing
        vector = model.encode(over, long_text=setting, precision="fp32")
    expected, windows = hand_pooled(model.tower("query"), over, MAX, 4, "mean", True)
    assert windows == 2
    np.testing.assert_allclose(vector, expected, atol=1e-5)


@pytest.mark.parametrize("pooling", ["mean", "max", "first"])
@pytest.mark.parametrize("normalize", [True, False])
def test_five_times_max_equals_the_hand_computation(minilm_tokenizer, pooling: str, normalize: bool) -> None:  # type: ignore[no-untyped-def]
    model = SiameseModel(make_tiny_transformer(minilm_tokenizer), normalize=normalize)
    long = text_of(5 * MAX, seed=2)
    texts = ["a dog", long, text_of(MAX + 7, seed=3), "the cat"]  # batched with short texts and each other
    setting = LongText("chunk", chunk_length=24, overlap=6, pooling=pooling)
    vectors, tokens = model.encode(
        texts, long_text=setting, batch_size=3, return_tokens=True, precision="fp32"
    )
    assert tokens[1] == 5 * MAX
    for i in (1, 2):
        expected, windows = hand_pooled(model.tower("query"), texts[i], 24, 6, pooling, normalize)
        np.testing.assert_allclose(vectors[i], expected, atol=1e-5)
    assert windows > 1
    short = model.encode(["a dog", "the cat"], precision="fp32")
    np.testing.assert_allclose(vectors[[0, 3]], short, atol=1e-6)


def test_save_load_keeps_the_setting_and_the_fingerprint(model: SiameseModel, tmp_path: Path) -> None:
    before = model.fingerprint()
    model.set_long_text({"mode": "chunk", "overlap": 4, "pooling": "max"}, role="document")
    assert model.fingerprint() == before  # an encode setting, as precision is: indexes stay usable
    path = model.save(tmp_path / "m")
    assert json.loads((path / "config.json").read_text())["long_text"] == {
        "document": {"mode": "chunk", "chunk_length": None, "overlap": 4, "pooling": "max"}
    }
    loaded = textsiamese.load(path)
    assert loaded.long_text == {"document": LongText("chunk", overlap=4, pooling="max")}
    long = text_of(4 * MAX)
    np.testing.assert_allclose(loaded.encode(long, role="document"), model.encode(long, role="document"))
    np.testing.assert_allclose(
        loaded.encode(long, role="document"),
        model.encode(long, long_text=LongText("chunk", overlap=4, pooling="max")),
    )
    with pytest.warns(TruncationWarning):  # the query role still truncates
        loaded.encode(long, role="query")
    # A config written before the setting existed loads, truncating.
    config = json.loads((path / "config.json").read_text())
    del config["long_text"]
    (path / "config.json").write_text(json.dumps(config))
    assert textsiamese.load(path).long_text == {}


def test_bad_settings_are_refused(model: SiameseModel) -> None:
    with pytest.raises(ConfigError, match="longer than the tower reads"):
        model.encode("a dog", long_text=LongText("chunk", chunk_length=MAX + 1))
    with pytest.raises(ConfigError, match="overlap"):
        model.set_long_text(LongText("chunk", chunk_length=10, overlap=8))
    with pytest.raises(ConfigError, match="chunk pooling"):
        LongText("chunk", pooling="median")
    with pytest.raises(ConfigError, match="unknown long_text settings"):
        LongText.of({"mode": "chunk", "stride": 3})


def test_lstm_tower_chunks_its_words(tiny_lstm) -> None:  # type: ignore[no-untyped-def]
    model = SiameseModel(tiny_lstm)
    text = " ".join(random.Random(4).choice(WORDS) for _ in range(40))  # 40 words, the tower reads 12
    vector = model.encode(text, long_text=LongText("chunk", overlap=3), precision="fp32")
    expected, windows = hand_pooled(tiny_lstm, text, 12, 3, "mean", False)
    assert windows == 5
    np.testing.assert_allclose(vector, expected, atol=1e-5)


def test_onnx_matches_torch_when_chunking(model: SiameseModel) -> None:
    texts = [text_of(5 * MAX, seed=5), "a dog", text_of(2 * MAX, seed=6)]
    setting = LongText("chunk", overlap=4)
    torch_vectors = model.encode(texts, long_text=setting, precision="fp32")
    onnx_vectors = model.encode(texts, long_text=setting, backend="onnx")
    np.testing.assert_allclose(onnx_vectors, torch_vectors, atol=1e-4)


# --- the CLI: --report-truncation and --long-text ----------------------------------------------------------

LONG_LINES = (3, 6, 11)  # file lines (header = line 1) of the long rows below


@pytest.fixture
def corpus_csv(tmp_path: Path) -> Path:
    """Ten rows, three of them past the tiny model's 32 tokens."""
    path = tmp_path / "corpus.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text"])
        for line in range(2, 12):
            writer.writerow([f"d{line}", text_of(3 * MAX if line in LONG_LINES else 10, seed=line)])
    return path


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(args) == 0
    return capsys.readouterr().err


def test_encode_report_names_the_three_long_rows(
    corpus_csv: Path, tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "vectors.npy"
    err = run_cli(
        [
            "encode",
            "--input",
            str(corpus_csv),
            "--output",
            str(out),
            "--model",
            str(tiny_model_dir),
            "--report-truncation",
        ],
        capsys,
    )
    assert "warning: 3 of 10 texts were longer than 32 tokens and were truncated (lines 3, 6, 11)" in err
    with (tmp_path / "vectors.tokens.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["line"]) for r in rows if r["truncated"] == "1"] == list(LONG_LINES)
    assert {int(r["tokens"]) for r in rows if r["truncated"] == "1"} == {3 * MAX}
    assert rows[0] == {"id": "d2", "line": "2", "tokens": "10", "truncated": "0"}
    # --long-text chunk: nothing is cut, and the vectors are the library's
    err = run_cli(
        [
            *["encode", "--input", str(corpus_csv), "--output", str(out), "--model", str(tiny_model_dir)],
            *[
                "--long-text",
                "chunk",
                "--chunk-overlap",
                "4",
                "--chunk-pooling",
                "max",
                "--report-truncation",
            ],
        ],
        capsys,
    )
    assert "truncated" not in err
    with (tmp_path / "vectors.tokens.csv").open() as handle:
        assert {r["truncated"] for r in csv.DictReader(handle)} == {"0"}
    model = textsiamese.load(tiny_model_dir)
    with corpus_csv.open() as handle:
        texts = [r["text"] for r in csv.DictReader(handle)]
    expected = model.encode(texts, long_text=LongText("chunk", overlap=4, pooling="max"))
    np.testing.assert_allclose(np.load(out), expected, atol=1e-6)


def test_chunk_options_need_chunk_mode(corpus_csv: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "v.npy"
    args = ["encode", "--input", str(corpus_csv), "--output", str(out), "--model", str(tiny_model_dir)]
    assert main([*args, "--chunk-pooling", "max"]) == 2


def test_score_report_names_the_three_long_rows(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pairs = tmp_path / "pairs.csv"
    with pairs.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sentence1", "sentence2"])
        for line in range(2, 12):
            long = line in LONG_LINES
            writer.writerow(["a dog", text_of(3 * MAX if long else 8, seed=line)])
    out = tmp_path / "scored.csv"
    err = run_cli(
        [
            "score",
            "--pairs",
            str(pairs),
            "--model",
            str(tiny_model_dir),
            "--output",
            str(out),
            "--report-truncation",
        ],
        capsys,
    )
    assert "warning: 3 of 20 texts were longer than 32 tokens and were truncated (lines 3, 6, 11)" in err
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == [
        "sentence1",
        "sentence2",
        "score",
        "sentence1_tokens",
        "sentence2_tokens",
        "truncated",
    ]
    assert [i + 2 for i, r in enumerate(rows) if r["truncated"] == "1"] == list(LONG_LINES)
    assert rows[0]["sentence1_tokens"] == "4" and rows[0]["sentence2_tokens"] == "8"
    # Without the flag the warning still names the lines, and the output has no token columns.
    err = run_cli(
        ["score", "--pairs", str(pairs), "--model", str(tiny_model_dir), "--output", str(out)], capsys
    )
    assert "(lines 3, 6, 11)" in err
    with out.open() as handle:
        assert "truncated" not in next(csv.reader(handle))


def test_index_build_report_and_chunked_search(
    corpus_csv: Path, tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    index = tmp_path / "corpus.index"
    args = [
        "index",
        "build",
        "--corpus",
        str(corpus_csv),
        "--output",
        str(index),
        "--model",
        str(tiny_model_dir),
    ]
    err = run_cli([*args, "--report-truncation", "--recall-target", "0"], capsys)
    assert "3 of 10 texts were longer than 32 tokens and were truncated (lines 3, 6, 11)" in err
    main(["search", "--index", str(index), "--query", text_of(3 * MAX, seed=3), "--json", "-k", "10"])
    out, _ = capsys.readouterr()
    hits = {hit["id"]: hit for hit in json.loads(out)["hits"]}
    assert sorted(i for i, hit in hits.items() if hit["truncated"]) == ["d11", "d3", "d6"]
    assert hits["d3"]["tokens"] == 3 * MAX
    err = run_cli([*args, "--long-text", "chunk", "--recall-target", "0"], capsys)
    assert "truncated" not in err
    assert main(["search", "--index", str(index), "--query", "a dog", "--long-text", "chunk"]) == 0
