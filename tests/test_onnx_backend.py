"""The ONNX Runtime encode backend: exported graph, int8 weights, cache, errors, and the encode CLI flag."""

from __future__ import annotations

import copy
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

import textsiamese
from textsiamese import SiameseModel
from textsiamese.cli import main
from textsiamese.errors import ConfigError
from textsiamese.inference.onnx import check_backend, export_tower
from textsiamese.inference.precision import torch_threads
from textsiamese.towers.base import pad_ids
from textsiamese.towers.pooling import get_pooling

TEXTS = [
    "a man is eating food",
    "a dog runs in the park with a ball and the man is playing the guitar on the grass",
    "the cat",
    "dog",
    "the market fell sharply on monday after the central bank raised rates",
    "someone is playing a guitar in the park",
    "a man is eating food " * 6,  # longer than the tiny tower's 32 tokens: truncated alike on both paths
]


def _onnx_runner(model: SiameseModel, role: str, precision: str) -> Any:
    """The cached ONNX Runtime stand-in the model runs ``role``'s batches with."""
    return model._runner(role, "onnx", precision)[0]


def _onnx_sessions(model: SiameseModel) -> int:
    """How many ONNX Runtime stand-ins the model holds in its runner cache."""
    cache = model.__dict__.get("_runners")
    return len(cache._onnx) if cache is not None else 0


def test_onnx_fp32_gives_torchs_vectors_in_input_order(tiny_transformer) -> None:  # type: ignore[no-untyped-def]
    model = SiameseModel(tiny_transformer, normalize=True)
    want = model.encode(TEXTS, batch_size=3, precision="fp32")
    for batch_size in (1, 3, 16):
        got = model.encode(TEXTS, batch_size=batch_size, backend="onnx")
        np.testing.assert_allclose(got, want, atol=1e-5)
    one = model.encode(TEXTS[2], backend="onnx")
    np.testing.assert_allclose(one, want[2], atol=1e-5)


def test_exported_file_runs_in_a_bare_session(tiny_transformer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The written graph stands alone: ONNX Runtime alone reproduces the tower's unnormalised output,
    padding included, for a batch shape other than the one it was traced with."""
    path = export_tower(tiny_transformer, tmp_path / "tower.onnx")
    assert tiny_transformer.training  # the export left the tower's mode alone
    tiny_transformer.eval()  # no dropout in the reference
    ids, mask = pad_ids(tiny_transformer.tokenize(TEXTS[:5]).ids, tiny_transformer.pad_id)
    with torch.no_grad():
        want = tiny_transformer({"input_ids": ids, "attention_mask": mask}).numpy()
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    assert got.shape == (5, tiny_transformer.dimension)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tower.onnx"]


def test_int8_export_quantises_every_matmul_weight(tiny_transformer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = export_tower(tiny_transformer, tmp_path / "tower-int8.onnx", int8=True)
    graph = onnx.load(str(path)).graph
    ops = [node.op_type for node in graph.node]
    plain = [
        node.op_type
        for node in onnx.load(str(export_tower(tiny_transformer, tmp_path / "p.onnx"))).graph.node
    ]
    # 2 layers x (query, key, value, attention output, intermediate, output) = 12 weight products
    assert ops.count("MatMulInteger") == 12
    assert plain.count("MatMul") - ops.count("MatMul") == 12  # the attention products stay float
    int8 = [t for t in graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert sum(len(t.dims) == 2 for t in int8) == 12  # the weights; the rest are per-channel zero points
    assert all(t.dims[0] in (32, 64) for t in int8 if len(t.dims) == 1)  # one per output channel
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.onnx", "tower-int8.onnx"]  # no intermediate left


def test_export_inside_a_callers_autocast_and_unnormalised_vectors(tiny_transformer) -> None:  # type: ignore[no-untyped-def]
    model = SiameseModel(tiny_transformer, normalize=True)
    want = model.encode(TEXTS, precision="fp32", normalize=False)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the export must not trace the caller's casts
        got = model.encode(TEXTS, backend="onnx", normalize=False)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert np.abs(np.linalg.norm(got, axis=1) - 1).max() > 1e-3  # really unnormalised


def test_a_session_per_thread_count_and_pooling(tiny_transformer) -> None:  # type: ignore[no-untyped-def]
    model = SiameseModel(tiny_transformer, normalize=True)
    with torch_threads(1):
        one = _onnx_runner(model, "query", "fp32")
    with torch_threads(2):
        two = _onnx_runner(model, "query", "fp32")
    assert two is not one
    assert (one.workers, two.workers) == (1, 2)  # batches at once: torch's thread count
    assert one._shared is one._session  # one thread: a single session
    assert two._session.get_session_options().intra_op_num_threads == 2  # a lone batch: every thread
    assert two._shared.get_session_options().intra_op_num_threads == 1  # two batches at once, 1 each
    with torch_threads(1):
        assert _onnx_runner(model, "query", "fp32") is one
    model.encode(TEXTS, backend="onnx")
    tiny_transformer.pooling = "cls"  # baked into the graph: a new one must be exported
    tiny_transformer._pool = get_pooling("cls")
    np.testing.assert_allclose(
        model.encode(TEXTS, backend="onnx"), model.encode(TEXTS, precision="fp32"), atol=1e-5
    )


class _RecordingSession:
    """Wraps a session; notes which threads ran it and how many runs overlapped."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.threads: set[int] = set()
        self.running = 0
        self.most_at_once = 0
        self.lock = threading.Lock()

    def run(self, *args: Any) -> Any:
        with self.lock:
            self.threads.add(threading.get_ident())
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            time.sleep(0.01)  # long enough for the other worker to start its batch
            return self.session.run(*args)
        finally:
            with self.lock:
                self.running -= 1


def _recorded_encode(model: SiameseModel, texts: list[str], batch_size: int) -> tuple[Any, Any, Any]:
    """Encode through the ONNX backend at 2 torch threads with both sessions recorded."""
    with torch_threads(2):
        stand_in = _onnx_runner(model, "query", "fp32")
        alone, shared = _RecordingSession(stand_in._session), _RecordingSession(stand_in._shared)
        stand_in._session, stand_in._shared = alone, shared
        try:
            return model.encode(texts, batch_size=batch_size, backend="onnx"), alone, shared
        finally:
            stand_in._session, stand_in._shared = alone.session, shared.session


def test_workers_run_batches_at_once_and_keep_input_order(tiny_transformer) -> None:  # type: ignore[no-untyped-def]
    model = SiameseModel(tiny_transformer, normalize=True)
    texts = [f"{text} number {i}" for i, text in enumerate(TEXTS * 6)]  # 42 texts, 11 batches of 4
    want = model.encode(texts, batch_size=4, precision="fp32")
    got, alone, shared = _recorded_encode(model, texts, batch_size=4)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert shared.most_at_once == 2 and not alone.threads
    assert threading.get_ident() not in shared.threads and len(shared.threads) == 2
    # One batch runs alone, on the session with every thread, in the calling thread.
    got, alone, shared = _recorded_encode(model, texts[:3], batch_size=4)
    np.testing.assert_allclose(got, want[:3], atol=1e-5)
    assert alone.threads == {threading.get_ident()} and not shared.threads


def test_a_failing_worker_batch_fails_the_encode(tiny_transformer) -> None:  # type: ignore[no-untyped-def]
    model = SiameseModel(tiny_transformer, normalize=True)
    with torch_threads(2):
        stand_in = _onnx_runner(model, "query", "fp32")
        real = stand_in._shared
        calls: list[int] = []

        class Failing:
            def run(self, *args: Any) -> Any:
                calls.append(1)
                if len(calls) == 3:
                    raise RuntimeError("ort failed on batch 3")
                return real.run(*args)

        stand_in._shared = Failing()
        with pytest.raises(RuntimeError, match="batch 3"):
            model.encode(TEXTS * 4, batch_size=2, backend="onnx")
        stand_in._shared = real
        np.testing.assert_allclose(  # the cached stand-in still works afterwards
            model.encode(TEXTS * 4, batch_size=2, backend="onnx"),
            model.encode(TEXTS * 4, batch_size=2, precision="fp32"),
            atol=1e-5,
        )


def test_int8_stays_close_to_fp32_on_the_real_model(default_model: SiameseModel) -> None:
    texts = [
        "A man is playing a guitar.",
        "The stock market fell sharply after the announcement.",
        "Two dogs are running through a field of snow.",
        "How do I reset my password?",
    ]
    fp32 = default_model.encode(texts, precision="fp32")
    onnx_fp32 = default_model.encode(texts, backend="onnx")
    int8 = default_model.encode(texts, backend="onnx", precision="int8")
    np.testing.assert_allclose(onnx_fp32, fp32, atol=1e-5)
    # Per-channel int8 weights: mean cosine 0.992 to fp32 on STS-B dev (docs/benchmarks.md).
    assert (int8 * fp32).sum(1).min() > 0.97
    assert not np.allclose(int8, fp32, atol=1e-4)  # it did run quantised


def test_sessions_are_cached_and_rebuilt_when_weights_change(tiny_transformer) -> None:  # type: ignore[no-untyped-def]
    model = SiameseModel(tiny_transformer, normalize=True)
    first = _onnx_runner(model, "query", "fp32")
    assert _onnx_runner(model, "document", "auto") is first  # shared tower, auto = fp32: one session
    assert _onnx_runner(model, "query", "int8") is not first
    before = model.encode(TEXTS, backend="onnx")
    with torch.no_grad():  # a uniform shift of the embeddings would vanish in their layer norm
        weights = next(model.parameters())
        weights.add_(torch.randn(weights.shape, generator=torch.Generator().manual_seed(0)))
    assert _onnx_runner(model, "query", "fp32") is not first
    after = model.encode(TEXTS, backend="onnx")
    np.testing.assert_allclose(after, model.encode(TEXTS, precision="fp32"), atol=1e-5)
    assert not np.allclose(after, before, atol=1e-4)
    twin = copy.deepcopy(model)  # sessions cannot be copied: the copy rebuilds its own
    assert not _onnx_sessions(twin)
    stand_in = _onnx_runner(model, "query", "fp32")
    assert copy.copy(stand_in).dimension == stand_in.dimension  # no endless __getattr__ recursion
    np.testing.assert_allclose(twin.encode(TEXTS, backend="onnx"), after, atol=1e-6)


def test_refusals(tiny_transformer, tiny_lstm, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    model = SiameseModel(tiny_transformer)
    with pytest.raises(ConfigError, match="unknown backend 'tensorrt'"):
        model.encode(TEXTS, backend="tensorrt")
    with pytest.raises(ConfigError, match="not 'bf16'"):
        model.encode(TEXTS, backend="onnx", precision="bf16")
    with pytest.raises(ConfigError, match="transformer towers only, not LSTMTower"):
        SiameseModel(tiny_lstm).encode(TEXTS, backend="onnx")
    with pytest.raises(ConfigError, match="CPU only; the model is on cuda"):
        check_backend("onnx", "fp32", torch.device("cuda"))  # refused before any CUDA call
    check_backend("torch", "bf16", torch.device("cuda"))
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if the extra were not installed
    with pytest.raises(ConfigError, match=r"pip install \"textsiamese\[onnx\]\""):
        model.encode(TEXTS, backend="onnx")


def test_encode_cli_backend_onnx(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = textsiamese.load(tiny_model_dir, device="cpu")
    source = tmp_path / "texts.txt"
    source.write_text("\n".join(TEXTS) + "\n")
    base = ["encode", "--input", str(source), "--model", str(tiny_model_dir), "--no-progress"]
    assert main([*base, "--output", str(tmp_path / "a.npy"), "--backend", "onnx"]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "a.npy"), model.encode(TEXTS, precision="fp32"), atol=1e-5)
    assert main([*base, "--output", str(tmp_path / "b.npy"), "--backend", "onnx", "--int8"]) == 0
    int8 = np.load(tmp_path / "b.npy")
    np.testing.assert_allclose(int8, model.encode(TEXTS, backend="onnx", precision="int8"), atol=1e-6)
    assert main([*base, "--output", str(tmp_path / "c.npy"), "--backend", "onnx", "--precision", "bf16"]) == 2
    assert "not 'bf16'" in capsys.readouterr().err
    assert not (tmp_path / "c.npy").exists()


def test_load_with_backend_onnx_makes_it_the_models_default(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """As sentence-transformers' ``backend=``: chosen at load, used by every encode, index and search."""
    model = textsiamese.load(tiny_model_dir, backend="onnx")
    assert model.backend == "onnx" and model.device.type == "cpu"
    vectors = model.encode(TEXTS)
    assert _onnx_sessions(model)
    np.testing.assert_allclose(vectors, model.encode(TEXTS, backend="torch", precision="fp32"), atol=1e-5)
    with pytest.raises(ConfigError, match="CPU only"):  # refused before anything moves to a GPU
        textsiamese.load(tiny_model_dir, device="cuda", backend="onnx")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(TEXTS) + "\n")
    index = tmp_path / "corpus.index"
    base = ["--model", str(tiny_model_dir), "--backend", "onnx"]
    assert (
        main(["index", "build", "--corpus", str(corpus), "--output", str(index), "--kind", "flat", *base])
        == 0
    )
    capsys.readouterr()
    assert main(["search", "--index", str(index), "--query", TEXTS[3], "-k", "1", "--json", *base]) == 0
    (hit,) = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["hits"]
    assert hit["text"] == TEXTS[3] and hit["score"] == pytest.approx(1.0, abs=1e-5)  # finds itself
