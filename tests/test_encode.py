"""The encode hot path: vectorised padding, chunked tokenize-ahead pipeline, precisions, and the encode CLI."""

from __future__ import annotations

import json
import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import textsiamese
import textsiamese.inference.pipeline as pipeline_module
from textsiamese import SiameseModel
from textsiamese.cli import main
from textsiamese.errors import ConfigError
from textsiamese.inference.precision import (
    cpu_has_native_bf16,
    cpu_has_vnni,
    default_batch_size,
    parse_cpu_flags,
    resolve_precision,
)
from textsiamese.model import TruncationWarning
from textsiamese.towers import TransformerTower
from textsiamese.towers.base import pad_ids

TEXTS = [
    "a man is eating food",
    "a dog runs in the park with a ball and the man is playing the guitar on the grass",
    "the cat",
    "a woman plays guitar",
    "dog",
    "the market fell sharply on monday after the central bank raised rates",
    "a man eats",
    "the cat is on the ball",
    "someone is playing a guitar in the park",
]


def _int8_runner(model: SiameseModel, role: str) -> Any:
    """The cached int8 copy the model runs ``role``'s batches with."""
    return model._runner(role, "torch", "int8")[0]


def reference_pad(ids: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-row loop pad_ids replaced, kept here as the reference."""
    width = max((len(row) for row in ids), default=1) or 1
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, row in enumerate(ids):
        input_ids[i, : len(row)] = torch.as_tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return input_ids, mask


def test_vectorised_padding_equals_the_row_loop() -> None:
    rng = random.Random(0)
    cases: list[list[list[int]]] = [[], [[]], [[5]], [[1, 2, 3], [], [4]]]
    cases += [
        [[rng.randrange(30000) for _ in range(rng.randrange(0, 40))] for _ in range(rng.randrange(1, 50))]
    ]
    for ids in cases:
        for pad in (0, 7):
            got, want = pad_ids(ids, pad), reference_pad(ids, pad)
            assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
            assert got[0].dtype == torch.long and got[1].dtype == torch.long


@pytest.mark.parametrize("chunk", [1, 2, 4, 1000])
def test_chunked_encode_keeps_input_order(
    tiny_transformer, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:  # type: ignore[no-untyped-def]
    model = SiameseModel(tiny_transformer)
    one_by_one = np.stack([model.encode(text) for text in TEXTS])
    monkeypatch.setattr(pipeline_module, "ENCODE_CHUNK", chunk)
    # Batches of other sizes differ by float32 rounding only (BATCH_ROUNDING); an order mix-up moves whole vectors.
    for batch_size in (1, 3, 64):
        np.testing.assert_allclose(
            model.encode(TEXTS, batch_size=batch_size), one_by_one, atol=BATCH_ROUNDING
        )


def test_default_batch_follows_the_device(tiny_transformer) -> None:  # type: ignore[no-untyped-def]
    """No batch_size: 16 texts per forward pass on CPU (64 on CUDA); an explicit one wins; < 1 is refused."""
    assert default_batch_size(torch.device("cpu")) == 16
    assert default_batch_size(torch.device("cuda")) == 64
    model = SiameseModel(tiny_transformer)
    sizes: list[int] = []
    hook = tiny_transformer.register_forward_hook(
        lambda module, args, output: sizes.append(int(output.shape[0]))
    )
    texts = [f"{TEXTS[i % len(TEXTS)]} {i}" for i in range(40)]
    try:
        model.encode(texts)
        assert sorted(sizes, reverse=True) == [16, 16, 8]
        sizes.clear()
        model.encode(texts, batch_size=30)
        assert sorted(sizes, reverse=True) == [30, 10]
    finally:
        hook.remove()
    with pytest.raises(ConfigError, match="at least 1"):
        model.encode(texts, batch_size=0)


def test_truncation_is_counted_across_chunks(tiny_transformer, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(pipeline_module, "ENCODE_CHUNK", 2)
    model = SiameseModel(tiny_transformer)
    texts = ["dog " * 100, "short", "cat " * 50, "a cat", "man " * 40]
    with pytest.warns(TruncationWarning, match="3 of 5 texts were longer than 32 tokens") as record:
        model.encode(texts, batch_size=2)
    assert len(record) == 1


# The same texts encoded in batches of different sizes take different CPU kernels (blocked by batch shape), so
# float32 results differ in the last bits: under 1e-5 on the AVX2 Zen 3 of earlier sessions, up to 1.8e-5 on
# this AVX512 EPYC (2026-12-07, at the landed main too). A wrong order or padding leak is orders larger.
BATCH_ROUNDING = 3e-5


def test_a_tower_with_its_own_collate_is_still_used(tiny_transformer) -> None:  # type: ignore[no-untyped-def]
    class Marked(TransformerTower):
        calls = 0

        def collate(self, ids):  # type: ignore[no-untyped-def]
            Marked.calls += 1
            return super().collate(ids)

    tower = Marked(tiny_transformer.encoder, tiny_transformer.tokenizer, max_length=32)
    np.testing.assert_allclose(
        SiameseModel(tower).encode(TEXTS, batch_size=4),
        SiameseModel(tiny_transformer).encode(TEXTS),
        atol=BATCH_ROUNDING,
    )
    assert Marked.calls == 3


@pytest.mark.filterwarnings("ignore::textsiamese.model.TruncationWarning")
def test_lstm_tower_encodes_through_the_fast_padding(tiny_lstm) -> None:  # type: ignore[no-untyped-def]
    model = SiameseModel(tiny_lstm)
    one_by_one = np.stack([model.encode(text) for text in TEXTS])
    np.testing.assert_allclose(model.encode(TEXTS, batch_size=4), one_by_one, atol=BATCH_ROUNDING)


def test_out_array_is_filled_and_checked(tiny_transformer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model = SiameseModel(tiny_transformer)
    target = np.lib.format.open_memmap(
        tmp_path / "x.npy", mode="w+", dtype=np.float32, shape=(len(TEXTS), 32)
    )
    returned = model.encode(TEXTS, out=target)
    assert returned is target
    np.testing.assert_allclose(np.load(tmp_path / "x.npy"), model.encode(TEXTS), atol=1e-6)
    with pytest.raises(ConfigError, match="out must be a float32 array"):
        model.encode(TEXTS, out=np.zeros((2, 32), dtype=np.float32))


def test_precisions_on_a_tiny_model(tiny_transformer) -> None:  # type: ignore[no-untyped-def]
    model = SiameseModel(tiny_transformer, normalize=True)
    fp32 = model.encode(TEXTS, precision="fp32")
    # auto is whatever resolve_precision says for this CPU: exactly fp32 or exactly bf16 autocast.
    auto = resolve_precision("auto", torch.device("cpu"))
    np.testing.assert_array_equal(model.encode(TEXTS), model.encode(TEXTS, precision=auto))
    for precision in ("bf16", "int8"):
        other = model.encode(TEXTS, precision=precision)
        assert other.dtype == np.float32 and other.shape == fp32.shape
        assert (other * fp32).sum(1).min() > 0.95
    with pytest.raises(ConfigError, match="unknown precision"):
        model.encode(TEXTS, precision="fp8")


# First lines of /proc/cpuinfo's "flags" on three CPUs (shortened; the flags that matter kept in place).
ZEN3_CPUINFO = (
    "processor\t: 0\nvendor_id\t: AuthenticAMD\n"
    "flags\t\t: fpu vme sse sse2 avx f16c fma avx2 bmi2 sha_ni vaes vpclmulqdq rdpid fsrm\n"
    "bugs\t\t: sysret_ss_attrs\n"
)
ZEN4_CPUINFO = (
    "processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512dq avx512bw avx512vl avx512_bf16 "
    "avx512_vnni avx512_bitalg\nprocessor\t: 1\nflags\t\t: fpu\n"
)
SAPPHIRE_RAPIDS_CPUINFO = "flags\t\t: avx2 avx512f avx512bw avx512_vnni amx_bf16 amx_tile amx_int8\n"
SKYLAKE_X_CPUINFO = "flags\t\t: avx2 avx512f avx512dq avx512bw avx512vl\n"  # AVX512 but no bf16, no VNNI


def test_auto_precision_is_bf16_exactly_where_the_cpu_multiplies_bf16_natively() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    zen3 = parse_cpu_flags(ZEN3_CPUINFO)
    assert "avx2" in zen3 and "avx512f" not in zen3 and "bugs" not in zen3
    zen4 = parse_cpu_flags(ZEN4_CPUINFO)
    assert "avx512_bf16" in zen4 and "fpu" in zen4 and len(zen4) == 10  # the first flags line only
    assert parse_cpu_flags("") == frozenset() == parse_cpu_flags("processor\t: 0\n")
    expected = {
        ZEN3_CPUINFO: ("fp32", False, False),
        ZEN4_CPUINFO: ("bf16", True, True),
        SAPPHIRE_RAPIDS_CPUINFO: ("bf16", True, True),
        SKYLAKE_X_CPUINFO: ("fp32", False, False),  # AVX512 alone only emulates bf16
        "": ("fp32", False, False),  # unreadable /proc/cpuinfo (macOS, Windows): stay exact
    }
    for text, (auto, native, vnni) in expected.items():
        flags = parse_cpu_flags(text)
        assert resolve_precision("auto", cpu, flags) == auto
        assert cpu_has_native_bf16(flags) is native and cpu_has_vnni(flags) is vnni
        assert resolve_precision("auto", cuda, flags) == "bf16"  # CUDA: bf16 whatever the host CPU
        for explicit in ("fp32", "bf16", "int8"):
            assert resolve_precision(explicit, cpu, flags) == explicit
    cpuinfo = Path("/proc/cpuinfo")
    here = parse_cpu_flags(cpuinfo.read_text("utf-8") if cpuinfo.is_file() else "")
    assert resolve_precision("auto", cpu) == ("bf16" if {"avx512_bf16", "amx_bf16"} & here else "fp32")


def test_int8_copy_is_cached_and_rebuilt_when_weights_change(tiny_transformer) -> None:  # type: ignore[no-untyped-def]
    model = SiameseModel(tiny_transformer)
    first = _int8_runner(model, "query")
    assert _int8_runner(model, "document") is first  # shared tower: one copy
    assert "_int8" not in "".join(model.state_dict())  # never saved with the model
    fingerprint = model.fingerprint()
    with torch.no_grad():
        next(model.parameters()).add_(0.5)
    assert _int8_runner(model, "query") is not first
    assert model.fingerprint() != fingerprint


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = main(args)
    out, err = capsys.readouterr()
    return status, out, err


def test_encode_cli_round_trip_txt_and_csv(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = textsiamese.load(tiny_model_dir, device="cpu")
    expected = model.encode(TEXTS)
    txt = tmp_path / "texts.txt"
    txt.write_text("\n".join([*TEXTS[:3], "", *TEXTS[3:]]) + "\n")  # blank lines are skipped
    out = tmp_path / "vectors.npy"
    status, _, err = run_cli(
        [
            "encode",
            "--input",
            str(txt),
            "--model",
            str(tiny_model_dir),
            "--output",
            str(out),
            "--batch-size",
            "2",
        ],
        capsys,
    )
    assert status == 0, err
    np.testing.assert_allclose(np.load(out), expected, atol=1e-5)
    assert f"{len(TEXTS)} texts" in err

    jsonl = tmp_path / "texts.jsonl"
    jsonl.write_text("".join(json.dumps({"id": i, "body": t}) + "\n" for i, t in enumerate(TEXTS)))
    out2 = tmp_path / "sub" / "vectors.npy"
    args = ["encode", "--input", str(jsonl), "--text-column", "body", "--model", str(tiny_model_dir)]
    status, _, err = run_cli([*args, "--output", str(out2), "--no-progress", "--threads", "1"], capsys)
    assert status == 0, err
    np.testing.assert_allclose(np.load(out2), expected, atol=1e-5)
    assert sorted(p.name for p in out2.parent.iterdir()) == ["vectors.npy"]  # no temporary left behind

    status, _, err = run_cli([*args, "--output", str(tmp_path / "q.npy"), "--int8", "--no-progress"], capsys)
    assert status == 0, err
    assert np.load(tmp_path / "q.npy").shape == expected.shape


def test_encode_cli_errors_leave_no_output(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv_file = tmp_path / "texts.csv"
    csv_file.write_text("id,text\n1,a cat\n2,a dog\n")
    for extra, message in [
        (["--output", str(tmp_path / "out.txt")], "must end in .npy"),
        (["--output", str(tmp_path / "out.npy"), "--text-column", "body"], "body"),
    ]:
        status, _, err = run_cli(
            ["encode", "--input", str(csv_file), "--model", str(tiny_model_dir), *extra], capsys
        )
        assert status == 2 and message in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["texts.csv"]


def test_int8_and_bf16_stay_close_to_fp32_on_the_real_model(default_model: SiameseModel) -> None:
    texts = [
        "A man is playing a guitar.",
        "The stock market fell sharply after the announcement.",
        "Two dogs are running through a field of snow.",
        "How do I reset my password?",
    ]
    fp32 = default_model.encode(texts, precision="fp32")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the quantisation path must not leak torch's deprecation noise
        int8 = default_model.encode(texts, precision="int8")
    bf16 = default_model.encode(texts, precision="bf16")
    # Full 8-bit activations need VNNI; without it (e.g. Zen 3) torch's 7-bit activations lose more
    # (mean cosine 0.977 on STS-B dev there, docs/benchmarks.md), so the bound follows the CPU.
    assert (int8 * fp32).sum(1).min() > (0.99 if cpu_has_vnni() else 0.97)
    assert (bf16 * fp32).sum(1).min() > 0.999


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_encode_matches_cpu_in_input_order(tiny_transformer, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(pipeline_module, "ENCODE_CHUNK", 4)  # several chunks: staged copies back per chunk
    model = SiameseModel(tiny_transformer, normalize=True)
    cpu = model.encode(TEXTS, batch_size=3, device="cpu")
    for precision in ("auto", "fp32", "bf16"):
        cuda = model.encode(TEXTS, batch_size=3, device="cuda", precision=precision)
        assert (cuda * cpu).sum(1).min() > 0.999
    with pytest.raises(ConfigError, match="CPU only"):
        model.encode(TEXTS, device="cuda", precision="int8")
    model.to("cpu")
