"""Tests of textsiamese.search.Index: recall against exact numpy search, persistence, integrity, updates."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from textsiamese.errors import ConfigError, InputError, ModelError, TextSiameseError
from textsiamese.search import Index, choose_kind
from textsiamese.search import storage as storage_module

try:  # tests may or may not be a package
    from ._search_helpers import ToyEncoder, clustered, exact_scores, exact_topk, recall
except ImportError:
    from _search_helpers import ToyEncoder, clustered, exact_scores, exact_topk, recall  # type: ignore[no-redef]

N, D, K = 3000, 32, 10
KINDS = ["flat", "hnsw", "ivf", "ivfpq"]
# ivfpq stores lossy codes: it is tested with fine codes (2 dims a byte) and to a lower bar.
PARAMS: dict[str, dict[str, int]] = {"ivfpq": {"m": 16, "nbits": 6}}
FLOOR = {"flat": 1.0, "hnsw": 0.9, "ivf": 0.9, "ivfpq": 0.6}
TARGET = {"flat": 0.95, "hnsw": 0.95, "ivf": 0.95, "ivfpq": 0.75}


@pytest.fixture(scope="module")
def corpus() -> np.ndarray:
    return clustered(N, D, seed=1)


@pytest.fixture(scope="module")
def queries() -> np.ndarray:
    # Held-out points from the same blobs: not corpus rows, so no query finds itself.
    return clustered(N + 200, D, seed=1)[N:]


@pytest.fixture(scope="module")
def built(corpus: np.ndarray) -> dict[str, Index]:
    ids = [f"doc-{i}" for i in range(N)]
    texts = [f"text {i}" for i in range(N)]
    meta = {"parity": ["even" if i % 2 == 0 else "odd" for i in range(N)]}
    return {
        kind: Index.from_vectors(
            corpus, ids, texts, meta, kind=kind, params=PARAMS.get(kind), recall_target=TARGET[kind]
        )
        for kind in KINDS
    }


def truth_ids(queries: np.ndarray, corpus: np.ndarray, k: int = K, metric: str = "cosine") -> list[list[str]]:
    return [[f"doc-{p}" for p in row] for row in exact_topk(queries, corpus, k, metric)]


@pytest.mark.parametrize("kind", KINDS)
def test_recall_against_exact_numpy_search(
    kind: str, built: dict[str, Index], corpus: np.ndarray, queries: np.ndarray
) -> None:
    index = built[kind]
    _, found = index.search_vectors(queries, K)
    measured = recall(found, truth_ids(queries, corpus))
    assert measured >= FLOOR[kind], f"{kind} recall@{K} {measured:.3f}"
    if kind == "flat":
        assert found == truth_ids(queries, corpus)


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_tuning_holds_out_its_queries(kind: str, built: dict[str, Index]) -> None:
    index = built[kind]
    assert index.tuning is not None and index.tuning["reached"]
    assert index.tuning["queries"] == N // 10 and index.tuning["queries_from"] == "given"
    assert index.params[index.tuning["parameter"]] == index.tuning["value"]
    assert len(index) == N and sorted(index.ids) == sorted(f"doc-{i}" for i in range(N))


def test_tune_with_given_queries_matches_numpy_recall(corpus: np.ndarray, queries: np.ndarray) -> None:
    ids = [f"doc-{i}" for i in range(N)]
    index = Index.from_vectors(corpus, ids, kind="ivf", recall_target=0.97, tune_queries=queries[:100])
    tuning = index.tuning
    assert tuning is not None and tuning["reached"] and tuning["recall"] >= 0.97
    _, found = index.search_vectors(queries[:100], K)
    assert recall(found, truth_ids(queries[:100], corpus)) == pytest.approx(tuning["recall"], abs=1e-6)
    # One nprobe less would miss the target: the tuner picks the smallest value that reaches it.
    if tuning["value"] > 1:
        _, labels = index._search_labels(index._prepare(queries[:100]), K, tuning["value"] - 1)
        lower = [[index._ids[label] for label in row if label >= 0] for row in labels]
        assert recall(lower, truth_ids(queries[:100], corpus)) < 0.97


def test_ivfpq_unreachable_target_warns_and_records_it(corpus: np.ndarray) -> None:
    with pytest.warns(UserWarning, match="below the target"):
        index = Index.from_vectors(corpus, kind="ivfpq", params={"m": 2, "nbits": 4}, recall_target=0.99)
    assert index.tuning is not None and not index.tuning["reached"]
    assert index.tuning["recall"] < 0.99


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_scores_are_the_manifest_metric(
    kind: str, built: dict[str, Index], corpus: np.ndarray, queries: np.ndarray
) -> None:
    index = built[kind]
    scores, found = index.search_vectors(queries[:20], 5)
    position = {f"doc-{i}": i for i in range(N)}
    exact = exact_scores(queries[:20], corpus, "cosine")
    for row, ids in enumerate(found):
        np.testing.assert_allclose(scores[row, : len(ids)], [exact[row, position[i]] for i in ids], atol=1e-5)
        assert list(scores[row, : len(ids)]) == sorted(scores[row, : len(ids)], reverse=True)


@pytest.mark.parametrize("metric", ["dot", "euclidean"])
def test_other_metrics_match_numpy(metric: str, corpus: np.ndarray, queries: np.ndarray) -> None:
    index = Index.from_vectors(corpus, [f"doc-{i}" for i in range(N)], kind="flat", metric=metric)
    scores, found = index.search_vectors(queries[:30], 5)
    assert found == truth_ids(queries[:30], corpus, 5, metric)
    expected = np.take_along_axis(
        exact_scores(queries[:30], corpus, metric), exact_topk(queries[:30], corpus, 5, metric), axis=1
    )
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-3)
    assert index.higher_is_closer == (metric != "euclidean")


def test_input_vectors_are_not_modified(corpus: np.ndarray) -> None:
    before = corpus.copy()
    Index.from_vectors(corpus, kind="flat")
    np.testing.assert_array_equal(corpus, before)


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trip(
    kind: str, built: dict[str, Index], queries: np.ndarray, tmp_path: Path
) -> None:
    index = built[kind]
    index.save(tmp_path / "idx")
    again = Index.load(tmp_path / "idx")
    assert (again.kind, again.metric, again.dimension, len(again)) == (kind, "cosine", D, N)
    assert again.params == index.params and again.tuning == index.tuning
    before, after = index.search(queries[:10], K), again.search(queries[:10], K)
    assert [[h.id for h in r] for r in before] == [[h.id for h in r] for r in after]
    hit = after[0][0]
    number = int(hit.id.split("-")[1])
    assert hit.text == f"text {number}" and hit.metadata == {"parity": "even" if number % 2 == 0 else "odd"}
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    for key in ("model_fingerprint", "dimension", "metric", "kind", "params", "count", "library_version"):
        assert key in manifest
    assert manifest["count"] == N and manifest["files"]["index"]["sha256"]


def test_saving_twice_keeps_one_generation(built: dict[str, Index], tmp_path: Path) -> None:
    built["flat"].save(tmp_path)
    built["flat"].save(tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 3 and names[-1].startswith("rows-") and "manifest.json" in names


def test_failed_save_leaves_the_old_index_readable(
    built: dict[str, Index], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    small = Index.from_vectors(clustered(50, D), kind="flat")
    small.save(tmp_path)

    def crash(path: Path, payload: dict[str, object]) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(storage_module, "write_json_atomic", crash)
    with pytest.raises(OSError):
        built["flat"].save(tmp_path)
    monkeypatch.undo()
    assert len(Index.load(tmp_path)) == 50
    assert len(list(tmp_path.glob("index-*.faiss"))) == 1


@pytest.fixture()
def saved(built: dict[str, Index], tmp_path: Path) -> Path:
    return built["ivf"].save(tmp_path / "idx")


def _data_file(directory: Path, prefix: str) -> Path:
    (path,) = directory.glob(f"{prefix}-*")
    return path


def test_truncated_index_file_is_refused(saved: Path) -> None:
    path = _data_file(saved, "index")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(InputError, match="truncated"):
        Index.load(saved)


def test_corrupted_index_file_is_refused(saved: Path) -> None:
    path = _data_file(saved, "index")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="corrupted"):
        Index.load(saved)


def test_corrupted_rows_and_manifest_are_refused(saved: Path) -> None:
    rows = _data_file(saved, "rows")
    rows.write_text(rows.read_text().replace('"doc-1"', '"doc-X"', 1))
    with pytest.raises(InputError, match="corrupted"):
        Index.load(saved)
    (saved / "manifest.json").write_text("{not json")
    with pytest.raises(InputError, match="manifest"):
        Index.load(saved)


def test_missing_directory_and_missing_file(saved: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such index"):
        Index.load(tmp_path / "nowhere")
    _data_file(saved, "rows").unlink()
    with pytest.raises(InputError, match="missing"):
        Index.load(saved)


def test_model_mismatch_is_refused(tmp_path: Path) -> None:
    model = ToyEncoder(dimension=16)
    texts = ["the cat sat on the mat", "stocks fell sharply today", "a dog ran in the park"]
    Index.build(model, texts, ids=["c", "s", "d"], kind="flat").save(tmp_path)
    assert len(Index.load(tmp_path, model=ToyEncoder(dimension=16))) == 3
    with pytest.raises(ModelError, match="fingerprint"):
        Index.load(tmp_path, model=ToyEncoder(dimension=16, salt="another model"))
    with pytest.raises(ModelError, match="dimension"):
        Index.load(tmp_path, model=ToyEncoder(dimension=24))
    # The error is a one-line message, as the CLI prints it.
    with pytest.raises(TextSiameseError) as info:
        Index.load(tmp_path, model=ToyEncoder(dimension=16, salt="x"))
    assert "\n" not in str(info.value)


def test_text_build_and_search_use_document_and_query_roles() -> None:
    model = ToyEncoder(dimension=64)
    texts = ["the cat sat on the mat", "stocks fell sharply today", "a dog ran in the park"]
    index = Index.build(
        model, texts, ids=["c", "s", "d"], metadata=[{"topic": "pets"}, {"topic": "money"}, {"topic": "pets"}]
    )
    assert model.calls[0] == ("document", 3)
    hits = index.search("sharply falling stocks", k=2)[0]
    assert model.calls[-1] == ("query", 1)
    assert hits[0].id == "s" and hits[0].text == texts[1]
    assert hits[0].to_dict() == {
        "id": "s",
        "score": round(hits[0].score, 6),
        "text": texts[1],
        "topic": "money",
    }
    index.add(["stocks rose sharply"], ids=["r"])
    assert {h.id for h in index.search("stocks sharply", k=2)[0]} == {"s", "r"}


def test_text_queries_without_a_model_are_refused(built: dict[str, Index]) -> None:
    with pytest.raises(ConfigError, match="model"):
        built["flat"].search(["a query"], k=1)


@pytest.mark.parametrize("kind", KINDS)
def test_add_and_remove_by_id(kind: str, corpus: np.ndarray, queries: np.ndarray) -> None:
    base, extra = corpus[:1500], corpus[1500:1600]
    index = Index.from_vectors(
        base,
        [f"doc-{i}" for i in range(1500)],
        kind=kind,
        params=PARAMS.get(kind),
        recall_target=TARGET[kind],
    )
    added = index.add_vectors(extra, ids=[f"doc-{i}" for i in range(1500, 1600)])
    assert len(index) == 1600 and added[0] == "doc-1500"
    # Each added vector finds itself first.
    _, found = index.search_vectors(extra[:20], 1)
    assert sum(f[0] == f"doc-{1500 + i}" for i, f in enumerate(found)) >= (20 if kind != "ivfpq" else 15)
    gone = [f"doc-{i}" for i in range(0, 1600, 3)]
    assert index.remove(gone) == len(gone)
    assert len(index) == 1600 - len(gone)
    _, found = index.search_vectors(queries, K)
    assert not set(gone) & {i for row in found for i in row}
    keep = [i for i in range(1600) if i % 3 != 0]
    truth = [[f"doc-{keep[p]}" for p in row] for row in exact_topk(queries, corpus[keep], K)]
    assert recall(found, truth) >= FLOOR[kind] - 0.05


def test_add_is_all_or_nothing(built: dict[str, Index], corpus: np.ndarray) -> None:
    index = Index.from_vectors(corpus[:100], [f"doc-{i}" for i in range(100)], kind="flat")
    with pytest.raises(InputError, match="duplicate id"):
        index.add_vectors(corpus[100:103], ids=["new-1", "doc-5", "new-2"])
    with pytest.raises(InputError, match="duplicate id"):
        index.add_vectors(corpus[100:102], ids=["twin", "twin"])
    with pytest.raises(InputError, match="dimension"):
        index.add_vectors(np.zeros((2, D + 1), np.float32), ids=["a", "b"])
    with pytest.raises(InputError, match="NaN"):
        index.add_vectors(np.full((1, D), np.nan, np.float32), ids=["nan"])
    assert len(index) == 100 and index.faiss_index.ntotal == 100 and "new-1" not in index


def test_remove_is_all_or_nothing() -> None:
    index = Index.from_vectors(clustered(100, D), kind="flat")
    with pytest.raises(InputError, match="nothing was removed"):
        index.remove(["1", "2", "no-such-id"])
    assert len(index) == 100 and "1" in index


def test_hnsw_compaction_after_removing_most_rows(
    corpus: np.ndarray, queries: np.ndarray, tmp_path: Path
) -> None:
    index = Index.from_vectors(corpus[:1000], [f"doc-{i}" for i in range(1000)], kind="hnsw")
    index.remove([f"doc-{i}" for i in range(300)])
    assert index.faiss_index.ntotal == 1000  # masked, not yet rebuilt
    index.save(tmp_path)
    reloaded = Index.load(tmp_path)
    _, found = reloaded.search_vectors(queries, K)
    assert all(int(i.split("-")[1]) >= 300 for row in found for i in row)
    index.remove([f"doc-{i}" for i in range(300, 700)])
    assert index.faiss_index.ntotal == 300  # rebuilt without the removed rows
    _, found = index.search_vectors(queries, K)
    truth = [[f"doc-{700 + p}" for p in row] for row in exact_topk(queries, corpus[700:1000], K)]
    assert recall(found, truth) >= 0.9


def test_k_larger_than_the_index_and_empty_index() -> None:
    index = Index.from_vectors(clustered(5, D), kind="flat")
    # more hits than rows: every row, with a warning (was: a ConfigError)
    with pytest.warns(UserWarning, match=r"k=6 is larger than the index \(5 rows\); returning 5 hits"):
        scores, found = index.search_vectors(clustered(2, D), 6)
    assert scores.shape == (2, 5) and all(sorted(row) == sorted(index.ids) for row in found)
    with pytest.warns(UserWarning, match="larger than the index"):
        assert len(index.search(clustered(1, D), k=6)[0]) == 5
    with pytest.raises(ConfigError, match="at least 1"):
        index.search_vectors(clustered(1, D), 0)
    index.remove(index.ids)
    with pytest.raises(ConfigError, match="empty"):
        index.search_vectors(clustered(1, D), 1)
    with pytest.raises(ConfigError, match="empty corpus"):
        Index.from_vectors(np.zeros((0, D), np.float32))


def test_bad_kind_metric_and_params() -> None:
    x = clustered(100, D)
    with pytest.raises(ConfigError, match="unknown index kind"):
        Index.from_vectors(x, kind="annoy")
    with pytest.raises(ConfigError, match="unknown metric"):
        Index.from_vectors(x, metric="jaccard")
    with pytest.raises(ConfigError, match="no parameter"):
        Index.from_vectors(x, kind="ivf", params={"nprobes": 3})
    with pytest.raises(ConfigError, match="larger than the corpus"):
        Index.from_vectors(x, kind="ivf", params={"nlist": 500})


def test_auto_picks_by_size_and_memory() -> None:
    assert choose_kind(10_000, 384) == "flat"
    assert choose_kind(1_000_000, 384, memory_budget=8 << 30) == "ivf"
    assert choose_kind(100_000_000, 384, memory_budget=8 << 30) == "ivfpq"
    assert Index.from_vectors(clustered(200, D), kind="auto").kind == "flat"


def test_tune_after_updates_uses_stored_vectors(corpus: np.ndarray) -> None:
    index = Index.from_vectors(corpus[:2000], kind="ivf", recall_target=None)
    index.add_vectors(corpus[2000:2500])
    tuning = index.tune(0.97, k=5)
    assert tuning["reached"] and tuning["recall"] >= 0.97 and index.params["nprobe"] == tuning["value"]
    labels, vectors = index.stored_vectors()
    assert len(labels) == 2500 and vectors.shape == (2500, D)


def test_mmap_load_searches_and_refuses_updates(
    built: dict[str, Index], queries: np.ndarray, tmp_path: Path
) -> None:
    built["ivf"].save(tmp_path)
    mapped = Index.load(tmp_path, mmap=True)
    assert mapped.search_vectors(queries[:5], K)[1] == built["ivf"].search_vectors(queries[:5], K)[1]
    with pytest.raises(ConfigError, match="read-only"):
        mapped.remove(["doc-1"])
    with pytest.raises(ConfigError, match="read-only"):
        mapped.add_vectors(queries[:1], ids=["new"])


def test_real_model_on_agnews_titles_and_descriptions(default_model, shared_data: Path) -> None:  # type: ignore[no-untyped-def]
    """Integration: the packaged all-MiniLM-L6-v2 finds a news title's own description (exact check by numpy)."""
    from textsiamese.data import read_pairs

    pairs = read_pairs(shared_data / "agnews" / "agnews-title-description-train.csv", format="agnews")
    titles, descriptions = pairs.sentence1[:40], pairs.sentence2[:40]
    ids = [f"ag-{i}" for i in range(40)]
    index = Index.build(default_model, descriptions, ids=ids, kind="flat")
    hits = index.search(titles, k=3)
    q = default_model.encode(titles, role="query")
    d = default_model.encode(descriptions, role="document")
    expected = [f"ag-{p}" for p in exact_topk(q, d, 1)[:, 0]]
    assert [h[0].id for h in hits] == expected
    assert sum(h[0].id == ids[i] for i, h in enumerate(hits)) >= 32  # title → own description, rank 1
