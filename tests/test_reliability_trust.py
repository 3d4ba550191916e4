"""Reliability, trust and offline: nothing is downloaded, nothing is unpickled, no code runs from a model.

Loading runs with the network unavailable (``socket`` connects and name lookups raise) and ``HF_HUB_OFFLINE=1``;
``torch.load`` and ``pickle`` loading are made to fail the test if called. Model directories carrying pickled
weights or remote code (``auto_map``) are loaded, or refused, without running any of it.
"""

from __future__ import annotations

import ast
import json
import os
import pickle
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import textsiamese
from textsiamese.cli import build_parser, main
from textsiamese.decisions.oneshot import OneShotClassifier
from textsiamese.errors import InputError, ModelError, TextSiameseError

PACKAGE = Path(textsiamese.__file__).resolve().parent


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    """Tiny models on a shared 2-core machine: one intra-op thread is many times faster than two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class NetworkUsed(AssertionError):
    pass


class Unpickled(AssertionError):
    pass


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No network, Hugging Face told so, and any attempt to unpickle fails the test."""

    def no_network(*args: Any, **kwargs: Any) -> Any:
        raise NetworkUsed(f"network used: {args[1:] if len(args) > 1 else args}")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket.socket, "connect_ex", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)

    def no_unpickling(*args: Any, **kwargs: Any) -> Any:
        raise Unpickled("torch.load / pickle.load called while loading a model")

    monkeypatch.setattr(torch, "load", no_unpickling)
    monkeypatch.setattr(pickle, "load", no_unpickling)
    monkeypatch.setattr(pickle, "loads", no_unpickling)
    yield


def _hf_directory(tiny_model_dir: Path, target: Path) -> Path:
    """A plain Hugging Face encoder directory (config, tokenizer, model.safetensors) from the tiny model."""
    model = textsiamese.load(tiny_model_dir, device="cpu")
    tower = model.tower("query")
    tower.encoder.save_pretrained(str(target), safe_serialization=True)  # type: ignore[operator]
    tower.tokenizer.save_pretrained(str(target))  # type: ignore[operator]
    return target


def _st_directory(hf: Path, target: Path) -> Path:
    """A sentence-transformers layout around a Hugging Face folder."""
    shutil.copytree(hf, target / "0_Transformer")
    (target / "1_Pooling").mkdir()
    (target / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    modules = [
        {"idx": 0, "name": "0", "path": "0_Transformer", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    (target / "modules.json").write_text(json.dumps(modules))
    return target


# A pickle that, when loaded, creates a marker file: proof that code ran.
class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def _evil_pickle(path: Path, marker: Path) -> None:
    with path.open("wb") as handle:
        pickle.dump({"weight": _Payload(marker)}, handle)


# --------------------------------------------------------------------------------------------------------
# Offline.


def test_loading_every_layout_never_touches_the_network(
    tmp_path: Path, tiny_model_dir: Path, offline: None
) -> None:
    hf = _hf_directory(tiny_model_dir, tmp_path / "hf")
    st = _st_directory(hf, tmp_path / "st")
    texts = ["a man is eating food", "a woman plays the guitar"]
    reference = textsiamese.load(tiny_model_dir, device="cpu").encode(texts)
    for directory in (hf, st):
        vectors = textsiamese.load(directory, device="cpu").encode(texts, normalize=True)
        np.testing.assert_allclose(vectors, reference, atol=1e-5)  # the same encoder and tokenizer
    with pytest.raises(NetworkUsed):  # the guard itself works
        socket.create_connection(("huggingface.co", 443))


def test_sentence_transformers_6_layout_loads(tmp_path: Path, tiny_model_dir: Path, offline: None) -> None:
    """sentence-transformers 6 saves the Transformer at the top level, ``{"pooling_mode": "mean"}`` and the
    length limit as the tokenizer's ``model_max_length`` (no ``max_seq_length``)."""
    st = _hf_directory(tiny_model_dir, tmp_path / "st6")
    config = json.loads((st / "tokenizer_config.json").read_text())
    (st / "tokenizer_config.json").write_text(json.dumps({**config, "model_max_length": 24}))
    (st / "sentence_bert_config.json").write_text(json.dumps({"transformer_task": "feature-extraction"}))
    (st / "1_Pooling").mkdir()
    (st / "1_Pooling" / "config.json").write_text(
        json.dumps({"embedding_dimension": 8, "pooling_mode": "mean"})
    )
    (st / "2_Normalize").mkdir()
    modules = [
        {
            "idx": 0,
            "name": "0",
            "path": "",
            "type": "sentence_transformers.base.modules.transformer.Transformer",
        },
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.modules.pooling.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.modules.Normalize"},
    ]
    (st / "modules.json").write_text(json.dumps(modules))
    texts = ["a man is eating food", "a woman plays the guitar"]
    model = textsiamese.load(st, device="cpu")
    assert model.normalize and model.tower("query").max_length == 24  # type: ignore[union-attr]
    reference = textsiamese.load(tiny_model_dir, device="cpu").encode(texts, normalize=True)
    np.testing.assert_allclose(model.encode(texts), reference, atol=1e-5)
    (st / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode": "weightedmean"}))
    with pytest.raises(ModelError, match="pooling mode 'weightedmean' is not supported"):
        textsiamese.load(st, device="cpu")


def test_default_model_loads_offline(offline: None) -> None:
    model = textsiamese.load(device="cpu")
    assert model.encode(["offline"]).shape == (1, 384)


def test_enrolled_set_and_cli_offline(
    tmp_path: Path, tiny_model_dir: Path, offline: None, capsys: pytest.CaptureFixture[str]
) -> None:
    refs = tmp_path / "refs.csv"
    refs.write_text("label,text\nfood,a man is eating food\nmusic,a woman plays the guitar\n")
    texts = tmp_path / "texts.csv"
    texts.write_text("text\nthe man eats\n")
    model = ["--model", str(tiny_model_dir)]
    assert main(["enroll", "--references", str(refs), "--output", str(tmp_path / "set"), *model]) == 0
    assert main(["classify", "--references", str(tmp_path / "set"), "--texts", str(texts), *model]) == 0
    assert main(["info", *model]) == 0
    capsys.readouterr()


# --------------------------------------------------------------------------------------------------------
# Pickles and remote code.


def test_pickled_weights_are_refused_without_being_opened(
    tmp_path: Path, tiny_model_dir: Path, offline: None, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "code-ran"
    hf = _hf_directory(tiny_model_dir, tmp_path / "hf")
    (hf / "model.safetensors").unlink()
    _evil_pickle(hf / "pytorch_model.bin", marker)
    st = _st_directory(hf, tmp_path / "st")
    native = tmp_path / "native"
    shutil.copytree(tiny_model_dir, native)
    (native / "model.safetensors").unlink()
    _evil_pickle(native / "pytorch_model.bin", marker)
    for directory, culprit in ((hf, hf), (st, st / "0_Transformer"), (native, native)):
        with pytest.raises(ModelError, match=r"holds only pickled weights \(pytorch_model.bin\)") as error:
            textsiamese.load(directory, device="cpu")
        assert str(error.value).startswith(str(culprit))
        assert main(["info", "--model", str(directory)]) == 2
        assert "pickled weights" in capsys.readouterr().err
    assert not marker.exists()


def test_safetensors_win_over_a_pickle_beside_them(
    tmp_path: Path, tiny_model_dir: Path, offline: None
) -> None:
    marker = tmp_path / "code-ran"
    hf = _hf_directory(tiny_model_dir, tmp_path / "hf")
    _evil_pickle(hf / "pytorch_model.bin", marker)
    model = textsiamese.load(hf, device="cpu")
    assert model.encode(["still works"]).shape == (1, 32)
    assert not marker.exists()


def test_remote_code_never_runs_unless_asked(
    tmp_path: Path, tiny_model_dir: Path, offline: None, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "code-ran"
    hf = _hf_directory(tiny_model_dir, tmp_path / "hf")
    code = f"from pathlib import Path\nPath({str(marker)!r}).touch()\n"
    (hf / "custom_model.py").write_text(code + "from transformers import BertConfig as CustomConfig\n")
    (hf / "custom_tokenizer.py").write_text(
        code + "from transformers import BertTokenizerFast as CustomTok\n"
    )
    config = json.loads((hf / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "custom_model.CustomConfig", "AutoModel": "custom_model.CustomConfig"}
    (hf / "config.json").write_text(json.dumps(config))
    tokenizer_config = json.loads((hf / "tokenizer_config.json").read_text())
    tokenizer_config["auto_map"] = {"AutoTokenizer": [None, "custom_tokenizer.CustomTok"]}
    (hf / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    try:
        model = textsiamese.load(hf, device="cpu")  # the standard BERT classes, not the custom code
        assert type(model.tower("query").encoder).__name__ == "BertModel"  # type: ignore[union-attr]
    except TextSiameseError:
        pass  # refusing is also acceptable; running the code is not
    assert main(["info", "--model", str(hf)]) in (0, 2)
    capsys.readouterr()
    assert not marker.exists()


def test_trust_remote_code_is_off_by_default_and_not_on_the_command_line() -> None:
    import inspect

    assert inspect.signature(textsiamese.load).parameters["trust_remote_code"].default is False
    help_text = build_parser().format_help()
    for action in build_parser()._subparsers._group_actions:  # type: ignore[union-attr]
        for parser in action.choices.values():  # type: ignore[union-attr]
            help_text += parser.format_help()
    assert "remote" not in help_text.lower()


def test_enrolled_vectors_are_never_unpickled(tmp_path: Path, tiny_lstm: Any, offline: None) -> None:
    model = textsiamese.SiameseModel(tiny_lstm)
    target = tmp_path / "refs"
    OneShotClassifier(model).enroll(["a", "b"], ["a dog", "a cat"]).save(target)
    marker = tmp_path / "code-ran"
    array = np.empty(2, dtype=object)
    array[0] = _Payload(marker)
    with (target / "embeddings.npy").open("wb") as handle:
        np.lib.format.write_array(handle, array, allow_pickle=True)
    with pytest.raises(InputError, match=r"embeddings\.npy: cannot read"):
        OneShotClassifier.load(target, model)
    assert not marker.exists()


def test_the_package_never_unpickles() -> None:
    """Source check: no pickle import, no torch.load without weights_only=True, no np.load allow_pickle=True,
    and every from_pretrained of weights asks for safetensors."""
    problems = []
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text("utf-8"))
        for node in ast.walk(tree):
            where = f"{path.relative_to(PACKAGE)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] + [getattr(node, "module", "") or ""]
                if any(n in ("pickle", "dill", "cloudpickle", "joblib") for n in names):
                    problems.append(f"{where}: imports a pickle module")
            if not isinstance(node, ast.Call):
                continue
            name = ast.unparse(node.func)
            keywords = {k.arg: ast.unparse(k.value) for k in node.keywords}
            if name.endswith("torch.load") and keywords.get("weights_only") != "True":
                problems.append(f"{where}: torch.load without weights_only=True")
            if name.endswith("np.load") and keywords.get("allow_pickle") != "False":
                problems.append(f"{where}: np.load without allow_pickle=False")
            if name.endswith("AutoModel.from_pretrained") and keywords.get("use_safetensors") != "True":
                problems.append(f"{where}: AutoModel.from_pretrained without use_safetensors=True")
            if "trust_remote_code" in keywords and keywords["trust_remote_code"] == "True":
                problems.append(f"{where}: trust_remote_code=True")
    assert problems == []
    assert os.environ.get("HF_HUB_OFFLINE") in (None, "", "0", "1")  # nothing here turns it off globally


def test_index_loads_and_searches_offline(
    tmp_path: Path, tiny_model_dir: Path, offline: None, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = tmp_path / "corpus.csv"
    corpus.write_text("id,text\nn1,a man plays the guitar\nn2,a woman eats food\n")
    index = tmp_path / "idx"
    common = ["--model", str(tiny_model_dir), "--device", "cpu"]
    build = ["index", "build", "--corpus", str(corpus), "--id-column", "id", "--output", str(index)]
    assert main([*build, *common, "--no-progress"]) == 0
    assert main(["search", "--index", str(index), "--query", "guitar", "-k", "1", "--json", *common]) == 0
    assert json.loads(capsys.readouterr().out)["hits"][0]["id"] == "n1"
