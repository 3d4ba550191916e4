"""textsiamese.distributed on a real local Ray (2 workers) over a real corpus slice (AG News titles).

Ray starts once for the module (2 CPUs, a small object store, no dashboard). The expected vectors come from
the single-process ``SiameseModel.encode`` at fp32; ids come from ``read_corpus``, the reader ``textsiamese
encode`` uses. Faults are real: a driver stopped between shards, a shard file truncated on disk, shards of
another model, and (slow) a worker process killed with SIGKILL mid-job.
"""

from __future__ import annotations

import csv
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray
from conftest import SHARED_DATA, make_tiny_transformer

import textsiamese
from textsiamese.cli import main
from textsiamese.data import read_corpus
from textsiamese.distributed import ShardSet, encode_corpus, encode_dataset
from textsiamese.distributed.corpus import expand_inputs, iter_corpus, shards
from textsiamese.distributed.runtime import probe, require_ray
from textsiamese.errors import ConfigError, InputError
from textsiamese.search import Index

ROWS = 200
SHARD = 40  # 5 shards


@pytest.fixture(scope="module")
def local_ray():  # type: ignore[no-untyped-def]
    ray.init(num_cpus=2, object_store_memory=256 << 20, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def titles(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    """The first ROWS AG News rows as a CSV corpus (text column: title)."""
    path = tmp_path_factory.mktemp("corpus") / "news.csv"
    source = SHARED_DATA / "agnews" / "agnews-title-description-train.csv"
    with open(source, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))[:ROWS]
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["label", "title", "description"])
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def other_model_dir(tmp_path_factory, minilm_tokenizer) -> Path:  # type: ignore[no-untyped-def]
    """A second tiny model (other weights, same dimension as tiny_model_dir)."""
    path = tmp_path_factory.mktemp("models") / "other"
    textsiamese.SiameseModel(make_tiny_transformer(minilm_tokenizer, seed=1), normalize=True).save(path)
    return path


def _encode(corpus: Path, out: Path, model: Path | None, **kwargs) -> tuple[ShardSet, list[dict]]:  # type: ignore[no-untyped-def]
    seen: list[dict] = []
    options = {"text_column": "title", "precision": "fp32", "workers": 2, "shard_size": SHARD, **kwargs}
    result = encode_corpus(str(corpus), out, model, on_shard=seen.append, **options)
    return result, seen


def test_vectors_equal_single_process_encode(local_ray, titles, default_model, tmp_path) -> None:
    shard_set, seen = _encode(titles, tmp_path / "shards", None)
    corpus = read_corpus(titles, text_column="title")
    expected = default_model.encode(corpus.texts, role="document", precision="fp32")
    assert shard_set.ids() == corpus.ids  # same ids, same order, none repeated or missing
    assert np.abs(shard_set.vectors() - expected).max() < 1e-6
    assert sorted(row["shard"] for row in seen) == list(range(5))
    assert shard_set.manifest["model_fingerprint"] == default_model.fingerprint()
    assert [s["first_row"] for s in shard_set.manifest["shards"]] == [0, 40, 80, 120, 160]
    first = next(iter(shard_set))
    assert first.metadata["description"][0] == corpus.metadata["description"][0]  # metadata kept


@pytest.mark.slow
def test_interrupted_driver_resumes_only_unfinished_shards(
    local_ray, titles, tiny_model_dir, tmp_path
) -> None:
    reference, _ = _encode(titles, tmp_path / "whole", tiny_model_dir)
    out = tmp_path / "shards"

    def stop_after_two(row: dict) -> None:
        if len(list(out.glob("shard-*.json"))) >= 2:
            raise KeyboardInterrupt  # what Ctrl-C does to the driver between two results

    with pytest.raises(KeyboardInterrupt):
        encode_corpus(
            str(titles),
            out,
            tiny_model_dir,
            text_column="title",
            precision="fp32",
            workers=2,
            shard_size=SHARD,
            on_shard=stop_after_two,
        )
    assert not (out / "manifest.json").exists()
    finished_before = {p.name for p in out.glob("shard-*.json")}
    with pytest.raises(ConfigError, match="--resume"):
        _encode(titles, out, tiny_model_dir)
    resumed, seen = _encode(titles, out, tiny_model_dir, resume=True)
    skipped = {f"shard-{row['shard']:05d}.json" for row in seen if not row["encoded"]}
    assert skipped == finished_before and len(skipped) >= 2
    assert resumed.ids() == reference.ids() and len(set(resumed.ids())) == ROWS
    np.testing.assert_array_equal(resumed.vectors(), reference.vectors())


@pytest.mark.slow
def test_shards_of_another_model_and_torn_shards_are_redone(
    local_ray, titles, tiny_model_dir, other_model_dir, tmp_path
) -> None:
    out = tmp_path / "shards"
    _encode(titles, out, other_model_dir)
    redone, seen = _encode(titles, out, tiny_model_dir, resume=True)  # every shard is the other model's
    assert all(row["encoded"] for row in seen) and len(seen) == 5
    expected = redone.vectors()
    with open(out / "shard-00003.npy", "r+b") as handle:  # torn: cut in the middle of the vectors
        handle.truncate(handle.seek(0, os.SEEK_END) // 2)
    record = (out / "shard-00001.json").read_text()
    (out / "shard-00001.json").write_text(record[: len(record) // 2])  # torn record
    again, seen = _encode(titles, out, tiny_model_dir, resume=True)
    assert sorted(row["shard"] for row in seen if row["encoded"]) == [1, 3]
    np.testing.assert_array_equal(again.vectors(), expected)
    assert again.ids() == read_corpus(titles, text_column="title").ids


def test_encode_dataset_keeps_ids_with_their_vectors(local_ray, tiny_model_dir) -> None:
    model = textsiamese.load(tiny_model_dir)
    texts = [f"a sentence about topic {i}" for i in range(30)]
    ds = ray.data.from_items([{"id": f"t{i}", "text": t} for i, t in enumerate(texts)])
    rows = encode_dataset(ds, tiny_model_dir, workers=1, precision="fp32", rows_per_call=8).take_all()
    got = {row["id"]: row["vector"] for row in rows}
    expected = model.encode(texts, role="document", precision="fp32")
    assert sorted(got) == sorted(f"t{i}" for i in range(30))
    for i in range(30):
        np.testing.assert_allclose(got[f"t{i}"], expected[i], atol=1e-6)


def test_corpus_formats_stream_with_read_corpus_ids(tmp_path) -> None:
    text = tmp_path / "a.txt"
    text.write_text("first\n\nsecond\r\nthird\n", encoding="utf-8")
    jsonl = tmp_path / "b.jsonl"
    jsonl.write_text('{"id": "x", "text": "one", "tag": "k"}\n{"id": "y", "text": "two", "tag": "m"}\n')
    parquet = tmp_path / "c.parquet"
    pq.write_table(pa.table({"text": ["p1", "p2", "p3"], "lang": ["en", "fr", "de"]}), parquet)
    for path in (text, jsonl):
        corpus = read_corpus(path)
        chunks = list(iter_corpus([str(path)], chunk_rows=1))
        assert [i for c in chunks for i in c.ids] == corpus.ids
        assert [t for c in chunks for t in c.texts] == corpus.texts
    (whole,) = shards(iter_corpus([str(parquet)], chunk_rows=2), 10)
    assert whole.ids == ["1", "2", "3"] and whole.metadata == {"lang": ["en", "fr", "de"]}
    files = expand_inputs(str(tmp_path / "*.*"))
    assert [Path(f).name for f in files] == ["a.txt", "b.jsonl", "c.parquet"]
    rows = [i for s in shards(iter_corpus(files), 4) for i in s.ids]
    assert len(rows) == 8 and rows[0] == f"{files[0]}:1" and rows[3] == f"{files[1]}:x"
    assert [len(s) for s in shards(iter_corpus(files), 3)] == [3, 3, 2]
    with pytest.raises(InputError, match="no such file"):
        expand_inputs(str(tmp_path / "*.csv"))


@pytest.mark.slow
def test_bad_row_is_one_line_naming_file_row_and_column(local_ray, tiny_model_dir, tmp_path) -> None:
    corpus = tmp_path / "bad.csv"
    corpus.write_text("id,text\na,fine\nb,  \n", encoding="utf-8")
    with pytest.raises(InputError, match=r"bad\.csv, line 3, column 'text': text is empty"):
        encode_corpus(str(corpus), tmp_path / "out", tiny_model_dir, workers=1)


def test_input_error_crosses_processes_whole() -> None:
    error = pickle.loads(pickle.dumps(InputError("news.csv", "text is empty", line=3, column="title")))
    assert str(error) == "news.csv, line 3, column 'title': text is empty" and error.line == 3


LOCAL_NICENESS = """
import os, ray
from textsiamese.distributed.runtime import connect
assert connect(None, num_cpus=1)
print(ray.get(ray.remote(lambda: os.nice(0)).remote()))
ray.shutdown()
"""


def test_a_local_ray_runs_its_workers_at_the_callers_priority() -> None:
    # Ray's default worker niceness (15) starves the encode actors beside any other busy process.
    env = {k: v for k, v in os.environ.items() if k != "RAY_worker_niceness"}
    done = subprocess.run(
        [sys.executable, "-c", LOCAL_NICENESS], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == str(os.nice(0))


def test_missing_ray_is_one_line_naming_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` sees without the package
    with pytest.raises(ConfigError, match=r'pip install "textsiamese\[ray\]"'):
        require_ray()


def test_unreachable_address_fails_fast(tmp_path, tiny_model_dir, titles) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.perf_counter()
    with pytest.raises(ConfigError, match=rf"127\.0\.0\.1:{port}' is unreachable"):
        encode_corpus(str(titles), tmp_path / "out", tiny_model_dir, address=f"127.0.0.1:{port}")
    assert time.perf_counter() - started < 15
    with pytest.raises(ConfigError, match="unreachable"):
        probe(f"ray://127.0.0.1:{port}")


def _encoder_pids() -> list[int]:
    """Pids of this test's Ray actor processes running the shard encoder (Ray names them by class)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"MapBatches(ShardEncoder)" in cmdline:
                pids.append(int(entry.name))
    return pids


@pytest.mark.slow
def test_killed_worker_is_restarted_and_its_shard_redone(local_ray, titles, tiny_model_dir, tmp_path) -> None:
    reference, _ = _encode(titles, tmp_path / "whole", tiny_model_dir, shard_size=10)
    out = tmp_path / "shards"
    killed: list[int] = []

    def kill_one_worker() -> None:  # once the first shard is written, SIGKILL one encoder process
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            pids = _encoder_pids()
            if pids and any(out.glob("shard-*.json")):
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one_worker)
    killer.start()
    result, seen = _encode(titles, out, tiny_model_dir, shard_size=10)
    killer.join()
    assert killed, "no worker was killed: the test did not exercise a failure"
    assert result.ids() == reference.ids() and len(set(result.ids())) == ROWS
    assert sorted(row["shard"] for row in seen) == list(range(20))
    np.testing.assert_array_equal(result.vectors(), reference.vectors())


# ---------------------------------------------------------------------- command line


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    status = main(args)
    return status, capsys.readouterr().err


def test_cli_refuses_what_the_ray_engine_cannot_do(capsys, tmp_path, titles) -> None:
    status, err = _cli(["encode", "--engine", "ray", "--input", str(titles), "--output", "v.npy"], capsys)
    assert status == 2 and "give --output a directory, not a .npy file" in err
    status, err = _cli(["index", "build", "--output", str(tmp_path / "i")], capsys)
    assert status == 2 and "--corpus FILE, or shards with --from-shards DIR" in err
    status, err = _cli(["index", "build", "--from-shards", str(tmp_path), "--engine", "ray"], capsys)
    assert status == 2 and "leave out --engine ray" in err


@pytest.mark.slow
def test_cli_index_from_ray_shards_answers_as_the_one_process_index(
    local_ray, capsys, titles, tiny_model_dir, tmp_path
) -> None:
    model = ["--model", str(tiny_model_dir)]
    shards, sharded, single = tmp_path / "shards", tmp_path / "sharded.index", tmp_path / "single.index"
    encode = ["encode", "--engine", "ray", "--workers", "2", "--shard-size", "40", "--role", "document"]
    status, err = _cli([*encode, "--input", str(titles), "--text-column", "title", "--output", str(shards), *model, "--precision", "fp32"], capsys)  # fmt: skip
    assert status == 0, err
    assert "5 shards" in err
    status, err = _cli(["index", "build", "--from-shards", str(shards), "--kind", "flat", "--output", str(sharded)], capsys)  # fmt: skip
    assert status == 0, err
    status, err = _cli(["index", "build", "--corpus", str(titles), "--text-column", "title", "--kind", "flat", "--output", str(single), *model], capsys)  # fmt: skip
    assert status == 0, err
    queries = ["oil prices rise", "new space launch", "stocks fall on wall street"]
    hits = {}
    for index in (sharded, single):
        status = main(["search", "--index", str(index), "-k", "10", "--json", *model, *[a for q in queries for a in ("--query", q)]])  # fmt: skip
        out = capsys.readouterr().out
        assert status == 0
        hits[index] = [[h["id"] for h in json.loads(line)["hits"]] for line in out.splitlines()]
    assert hits[sharded] == hits[single] and len(hits[single][0]) == 10
    chained = tmp_path / "chained.index"
    status, err = _cli(["index", "build", "--engine", "ray", "--workers", "2", "--corpus", str(titles), "--text-column", "title", "--kind", "flat", "--output", str(chained), *model], capsys)  # fmt: skip
    assert status == 0, err
    assert (tmp_path / "chained.index.shards" / "manifest.json").is_file()
    assert Index.load(chained).ids == Index.load(single).ids


@pytest.mark.slow
def test_cli_driver_killed_then_resume(titles, tiny_model_dir, tmp_path) -> None:
    out = tmp_path / "shards"
    command = [sys.executable, "-m", "textsiamese", "encode", "--engine", "ray", "--workers", "2", "--shard-size", "10", "--input", str(titles), "--text-column", "title", "--output", str(out), "--model", str(tiny_model_dir), "--precision", "fp32"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    driver = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and len(list(out.glob("shard-*.json"))) < 3:
        time.sleep(0.1)
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and the Ray it started, mid-job
    driver.wait()
    kept = len(list(out.glob("shard-*.json")))
    assert 3 <= kept < 20 and not (out / "manifest.json").exists()
    resumed = subprocess.run([*command, "--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stderr.count("kept (finished before)") >= 3
    shard_set = ShardSet(out)
    corpus = read_corpus(titles, text_column="title")
    assert shard_set.ids() == corpus.ids
    expected = textsiamese.load(tiny_model_dir).encode(corpus.texts, role="query", precision="fp32")
    assert np.abs(shard_set.vectors() - expected).max() < 1e-6
