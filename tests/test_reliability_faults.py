"""Reliability, faults: a process killed mid-write, and writes that fail (disk full), never leave a half file
under the real name and never damage what was there before.

Every file the toolkit writes goes through a temporary name beside the target and a rename: result tables
(``data.writers.atomic_open``, streamed ``score`` output), report PNGs and summary, model directories
(``SiameseModel.save``) and enrolled reference sets (``OneShotClassifier.save``).
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import textsiamese
from textsiamese.cli import main
from textsiamese.data import atomic_open, write_rows, writers
from textsiamese.decisions.oneshot import OneShotClassifier

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    """Tiny models on a shared 2-core machine: one intra-op thread is many times faster than two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}


def _wait_for(condition: Any, process: subprocess.Popen[bytes], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if process.poll() is not None:
            out = process.stderr.read().decode() if process.stderr else ""
            pytest.fail(
                f"the process ended (status {process.returncode}) before the moment to kill it: {out}"
            )
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("timed out waiting for the process to start writing")
        time.sleep(0.005)


def _hidden(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.startswith(".")]


# --------------------------------------------------------------------------------------------------------
# Killed mid-write.


def test_score_killed_mid_write_leaves_the_previous_file(tmp_path: Path, tiny_model_dir: Path) -> None:
    pairs = tmp_path / "big.csv"
    rows = [f"a man plays the guitar number {i},a woman is eating food {i}" for i in range(20_000)]
    pairs.write_text("sentence1,sentence2\n" + "\n".join(rows) + "\n")
    scores = tmp_path / "scores.csv"
    scores.write_text("sentence1,sentence2,score\nprevious,run,0.5\n")
    command = [
        sys.executable,
        "-m",
        "textsiamese.cli",
        "score",
        "--pairs",
        str(pairs),
        "--output",
        str(scores),
    ]
    command += ["--model", str(tiny_model_dir), "--chunk-size", "64"]
    process = subprocess.Popen(command, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def writing() -> bool:  # the temporary output exists and holds some rows: we are mid-write
        return any(p.suffix == ".tmp" and p.stat().st_size > 1000 for p in _hidden(tmp_path))

    _wait_for(writing, process)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    assert scores.read_text() == "sentence1,sentence2,score\nprevious,run,0.5\n"  # untouched
    leftovers = _hidden(tmp_path)
    assert leftovers and all(p.name.startswith(".scores.csv.") and p.suffix == ".tmp" for p in leftovers)


SAVE_LOOP = """
import sys
import torch
from textsiamese import SiameseModel
from textsiamese.towers import LSTMTower, WordTokenizer

target = sys.argv[1]
tower = LSTMTower(WordTokenizer([f"w{i}" for i in range(100_000)]), embedding_dim=64, hidden_size=8)
model = SiameseModel(tower)
for i in range(1_000_000):
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(float(i))
    model.save(target)
    print(i, flush=True)
"""


def test_model_save_killed_mid_write_leaves_a_whole_model(tmp_path: Path) -> None:
    """A model directory is staged under a hidden name and swapped in: killed while writing the next version
    (a 25 MB safetensors file), the directory under the real name is a complete earlier version. (Before the
    atomic swap, a kill between the two renames of ``replace_directory`` left no directory under the name;
    seen once in CI on 2026-12-02.)"""
    target = tmp_path / "model"
    script = tmp_path / "save_loop.py"
    script.write_text(textwrap.dedent(SAVE_LOOP))
    process = subprocess.Popen(
        [sys.executable, str(script), str(target)], env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == b"0"  # one complete save

    def staging_weights() -> bool:  # the next version's weights are being written
        return any((p / "model.safetensors").exists() for p in _hidden(tmp_path) if p.is_dir())

    _wait_for(staging_weights, process)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    model = textsiamese.load(target, device="cpu")
    values = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    assert values.min() == values.max()  # every weight from one and the same complete save
    assert model.tower("query").dimension == 16


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2-exchange", "two-renames"])
def test_replace_directory_swaps_in_the_new_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exchange: bool
) -> None:
    target, staging = tmp_path / "model", tmp_path / ".model.staging"
    target.mkdir()
    (target / "old.txt").write_text("old")
    staging.mkdir()
    (staging / "new.txt").write_text("new")
    if exchange:
        if not sys.platform.startswith("linux"):
            pytest.skip("renameat2 is Linux's")
        swaps: list[bool] = []
        real = writers._exchange

        def recorded(first: Path, second: Path) -> bool:
            swaps.append(real(first, second))
            return swaps[-1]

        monkeypatch.setattr(writers, "_exchange", recorded)
    else:
        monkeypatch.setattr(writers, "_exchange", lambda a, b: False)
    writers.replace_directory(staging, target)
    assert [p.name for p in target.iterdir()] == ["new.txt"] and (target / "new.txt").read_text() == "new"
    assert list(tmp_path.iterdir()) == [target]  # neither the staging nor the old version is left
    if exchange:
        assert swaps == [True]  # the atomic swap ran (ext4, tmpfs and overlayfs support it)


# --------------------------------------------------------------------------------------------------------
# Failed writes (disk full), simulated.


def _enospc(*_: object, **__: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_atomic_open_failure_keeps_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "table.csv"
    target.write_text("old\n")
    with pytest.raises(OSError, match="No space left"), atomic_open(target) as handle:
        handle.write("half of the new")
        _enospc()
    monkeypatch.setattr(os, "fsync", _enospc)  # the data never reaches the disk
    with pytest.raises(OSError, match="No space left"):
        write_rows(target, ["a"], [["new"]])
    assert target.read_text() == "old\n" and _hidden(tmp_path) == []
    with pytest.raises(KeyboardInterrupt), atomic_open(target) as handle:  # Ctrl-C mid-write
        handle.write("half")
        raise KeyboardInterrupt
    assert target.read_text() == "old\n" and _hidden(tmp_path) == []


def test_cli_disk_full_is_one_line_and_keeps_the_previous_output(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import textsiamese.cli.score

    pairs = tmp_path / "pairs.csv"
    pairs.write_text("sentence1,sentence2\n" + "".join(f"text {i},other {i}\n" for i in range(10)))
    scores, converted = tmp_path / "scores.csv", tmp_path / "converted.csv"
    scores.write_text("previous\n")
    converted.write_text("previous\n")
    monkeypatch.setattr(textsiamese.cli.score._RowWriter, "write", _enospc)
    status = main(["score", "--pairs", str(pairs), "--output", str(scores), "--model", str(tiny_model_dir)])
    err = capsys.readouterr().err
    assert status == 1 and err.strip() == "textsiamese score: error: No space left on device"
    monkeypatch.setattr(os, "fsync", _enospc)
    status = main(["convert", "--input", str(pairs), "--output", str(converted)])
    err = capsys.readouterr().err
    assert status == 1 and err.strip() == "textsiamese convert: error: No space left on device"
    assert scores.read_text() == converted.read_text() == "previous\n"
    assert _hidden(tmp_path) == []


def test_model_save_failure_keeps_the_previous_model(
    tmp_path: Path, tiny_lstm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import textsiamese.model.persistence

    target = tmp_path / "model"
    first = textsiamese.SiameseModel(tiny_lstm)
    first.save(target)
    fingerprint = textsiamese.load(target, device="cpu").fingerprint()
    with torch.no_grad():
        for parameter in first.parameters():
            parameter.add_(1.0)
    monkeypatch.setattr(textsiamese.model.persistence, "save_model", _enospc)  # weights cannot be written
    with pytest.raises(OSError, match="No space left"):
        first.save(target)
    monkeypatch.undo()
    monkeypatch.setattr(Path, "write_text", _enospc)  # config cannot be written (weights already were)
    with pytest.raises(OSError, match="No space left"):
        first.save(target)
    monkeypatch.undo()
    assert textsiamese.load(target, device="cpu").fingerprint() == fingerprint
    assert _hidden(tmp_path) == []


def test_calibrate_in_place_disk_full_keeps_the_model(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    import textsiamese.model.persistence

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    before = {p.name: p.read_bytes() for p in model_dir.iterdir() if p.is_file()}
    dev = tmp_path / "dev.csv"
    dev.write_text(
        "sentence1,sentence2,label\n" + "a man eats,a man is eating,1\na cat,the stock market,0\n" * 3
    )
    monkeypatch.setattr(textsiamese.model.persistence, "save_model", _enospc)
    status = main(["calibrate", "--data", str(dev), "--model", str(model_dir)])
    assert status == 1 and "No space left on device" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in model_dir.iterdir() if p.is_file()} == before
    assert _hidden(tmp_path) == []


def test_enrolled_set_survives_a_failed_save(
    tmp_path: Path, tiny_lstm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import textsiamese.data.writers

    model = textsiamese.SiameseModel(tiny_lstm)
    target = tmp_path / "refs"
    matcher = OneShotClassifier(model).enroll(["food", "music"], ["a man is eating food", "a guitar"])
    matcher.save(target)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    matcher.enroll(["sport"], ["the ball on the park"])
    monkeypatch.setattr(np, "save", _enospc)
    with pytest.raises(OSError, match="No space left"):
        matcher.save(target)
    monkeypatch.undo()

    calls: list[tuple[Any, Any]] = []
    real_replace = os.replace

    def second_rename_fails(source: Any, destination: Any) -> None:  # crash between the two renames
        calls.append((source, destination))
        if len(calls) == 2:
            _enospc()
        real_replace(source, destination)

    monkeypatch.setattr(textsiamese.data.writers, "_exchange", lambda a, b: False)  # the two-rename path
    monkeypatch.setattr(textsiamese.data.writers.os, "replace", second_rename_fails)
    with pytest.raises(OSError, match="No space left"):
        matcher.save(target)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert len(OneShotClassifier.load(target, model).classes) == 2
    assert _hidden(tmp_path) == []


def test_report_files_are_written_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("matplotlib")
    from textsiamese.evaluation import report

    target = tmp_path / "plot.png"
    target.write_bytes(b"old plot")
    scores, labels = np.array([0.1, 0.9, 0.4, 0.8]), np.array([0, 1, 0, 1])

    def full_disk_savefig(self: Any, handle: Any, **_: Any) -> None:
        handle.write(b"\x89PNG half")
        _enospc()

    monkeypatch.setattr("matplotlib.figure.Figure.savefig", full_disk_savefig)
    with pytest.raises(OSError, match="No space left"):
        report.plot_scores(target, scores, labels, threshold=0.5, score_label="cosine")
    assert target.read_bytes() == b"old plot" and _hidden(tmp_path) == []


# --------------------------------------------------------------------------------------------------------
# Indexes: a save killed mid-write, and add / remove whose save fails, leave the previous index whole.

INDEX_LOOP = """
import sys
import numpy as np
from textsiamese.search import Index

target = sys.argv[1]
rng = np.random.default_rng(0)
vectors = rng.standard_normal((100_000, 64)).astype("float32")
index = Index.from_vectors(vectors, ids=[f"r{i}" for i in range(len(vectors))], kind="flat")
index.save(target)
print(0, flush=True)
for i in range(1, 1_000_000):
    index.add_vectors(rng.standard_normal((10, 64)).astype("float32"), ids=[f"g{i}-{j}" for j in range(10)])
    index.save(target)
    print(i, flush=True)
"""


def test_index_save_killed_mid_write_leaves_a_whole_index(tmp_path: Path) -> None:
    from textsiamese.search import Index

    target = tmp_path / "idx"
    script = tmp_path / "index_loop.py"
    script.write_text(textwrap.dedent(INDEX_LOOP))
    process = subprocess.Popen(
        [sys.executable, str(script), str(target)], env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == b"0"

    def next_generation() -> bool:  # a second generation's FAISS file is being written
        return len(list(target.glob("index-*.faiss"))) >= 2

    _wait_for(next_generation, process)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    index = Index.load(target)  # checksums verified against the manifest
    assert len(index) >= 100_000 and (len(index) - 100_000) % 10 == 0


def test_index_add_and_remove_with_a_full_disk_change_nothing(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import faiss

    from textsiamese.search import Index

    corpus = tmp_path / "corpus.csv"
    corpus.write_text("id,text\nn1,a man plays the guitar\nn2,a woman eats food\nn3,the dog runs\n")
    more = tmp_path / "more.csv"
    more.write_text("id,text\nn4,a cat\n")
    index = tmp_path / "idx"
    model = ["--model", str(tiny_model_dir), "--device", "cpu", "--no-progress"]
    assert (
        main(["index", "build", "--corpus", str(corpus), "--id-column", "id", "--output", str(index), *model])
        == 0
    )
    before = {p.name: p.read_bytes() for p in index.iterdir()}
    monkeypatch.setattr(faiss, "write_index", _enospc)
    capsys.readouterr()
    add = ["index", "add", "--index", str(index), "--corpus", str(more), "--id-column", "id", *model]
    assert main(add) == 1
    assert main(["index", "remove", "--index", str(index), "--ids", "n1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["textsiamese index: error: No space left on device"] * 2
    assert {p.name: p.read_bytes() for p in index.iterdir()} == before
    assert Index.load(index).ids == ["n1", "n2", "n3"]


def test_index_save_failing_inside_faiss_keeps_the_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FAISS reports its own write errors as RuntimeError (seen on a full 300 KB tmpfs: "write error in …
    (No space left on device)"); Index.save turns that into a one-line TextSiameseError and the previous
    generation stays in place."""
    import faiss

    from textsiamese.search import Index

    def faiss_full_disk(index: Any, path: str) -> None:
        Path(path).write_bytes(b"half an index")
        raise RuntimeError(
            f"Error: 'ret == (size * 4)' failed: write error in {path} (No space left on device)"
        )

    target = tmp_path / "idx"
    index = Index.from_vectors(np.eye(4, dtype="float32"), ids=list("abcd"), kind="flat")
    index.save(target)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    monkeypatch.setattr(faiss, "write_index", faiss_full_disk)
    index.remove(["a"])
    with pytest.raises(textsiamese.TextSiameseError, match=r"cannot write the FAISS index .*No space left"):
        index.save(target)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert Index.load(target).ids == list("abcd")
