"""Experiment: can the fp32 encode path itself get faster without changing its vectors, and does ONNX
Runtime beat torch on this CPU? (issue 7)

Usage: python benchmarks/bench_encode_fp32.py [--texts 1000] [--paths jit,eager,compile] [--lowp] [--threads 1]

Each variant replaces the transformer tower's forward on its own copy of the default model:

- ``jit``: ``torch.jit.trace`` + ``torch.jit.freeze`` of the Hugging Face encoder;
- ``ofi``: the same plus ``torch.jit.optimize_for_inference`` (oneDNN layouts and fusions);
- ``eager``: eager attention instead of the SDPA kernel the tower uses by default;
- ``compile``: ``torch.compile(encoder, dynamic=True)`` (inductor, C++ code compiled with the system gcc);
- ``compile_freeze``: the same with ``torch._inductor.config.freezing = True`` (constant-folded, prepacked
  weights; process-wide setting);
- ``onnx``: the library's ONNX Runtime backend (``encode(backend="onnx")``: the tower, encoder and pooling,
  exported with ``torch.onnx.export`` and run by ONNX Runtime's CPU provider); ``onnx_int8``: the same with
  per-channel int8 weights (``precision="int8"``); ``onnx_opt``: the fp32 export after
  ``onnxruntime.transformers.optimizer`` (BERT fusions). These need the ``onnx`` extra.

For each it prints the warm-up time (trace / compile and the first encodes; not part of the throughput) and
the largest absolute difference from the plain fp32 vectors on 200 AG News texts, then times every path with
``bench_encode.throughput`` (interleaved slices, ratios to sentence-transformers at batch 32). ``--lowp``
adds the bf16 (on CPUs with native bf16), int8 and default (``precision="auto"``, the device's default
batch) paths. Prints only; nothing is written.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_encode

import textsiamese

warnings.filterwarnings("ignore")


def variant(kind: str, texts: list[str], check: list[str], want: np.ndarray) -> textsiamese.SiameseModel:
    """A fresh default model whose tower runs the ``kind`` variant, warmed up; prints warm-up and max diff."""
    model = textsiamese.load()
    tower: Any = model.tower("query")
    encoder = tower.encoder
    start = time.perf_counter()
    run: Callable[..., torch.Tensor] | None = None
    if kind in ("compile", "compile_freeze"):
        if kind == "compile_freeze":
            import torch._inductor.config as inductor_config

            inductor_config.freezing = True
        compiled = torch.compile(encoder, dynamic=True)

        def run(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return compiled(input_ids=ids, attention_mask=mask).last_hidden_state  # type: ignore[no-any-return]

    elif kind in ("jit", "ofi"):

        class Wrapped(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.encoder = encoder

            def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
                return self.encoder(input_ids=ids, attention_mask=mask, return_dict=False)[0]  # type: ignore[no-any-return]

        ids = torch.randint(1000, 2000, (16, 37))
        mask = torch.ones_like(ids)
        mask[3:, 30:] = 0
        with torch.no_grad():
            traced = torch.jit.freeze(torch.jit.trace(Wrapped().eval(), (ids, mask), check_trace=False))
            scripted = torch.jit.optimize_for_inference(traced) if kind == "ofi" else traced
        run = scripted
    elif kind in ("onnx", "onnx_opt", "onnx_int8"):
        run = onnx_runner(tower, kind)
    elif kind == "eager":
        encoder.set_attn_implementation("eager")
    else:
        raise SystemExit(f"unknown variant {kind!r}")
    if run is not None:

        def forward(features: dict[str, torch.Tensor]) -> torch.Tensor:
            mask = features["attention_mask"]
            if kind.startswith("onnx"):  # the exported graph pools itself
                return run(features["input_ids"], mask)
            return tower._pool(run(features["input_ids"], mask), mask)  # type: ignore[no-any-return]

        tower.forward = forward
    model.encode(texts[::12], batch_size=16, precision="fp32")
    model.encode(check, batch_size=16, precision="fp32")
    warm = time.perf_counter() - start
    diff = float(np.abs(model.encode(check, batch_size=16, precision="fp32") - want).max())
    got = model.encode(check, batch_size=16, precision="fp32")
    cosine = float((got * want).sum(1).mean())  # both unit length: the default model normalises
    print(f"{kind}: warm-up {warm:.1f} s, max abs difference from fp32 {diff:.2e}, mean cosine {cosine:.5f}")
    return model


def onnx_runner(tower: Any, kind: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The library's ONNX Runtime export of the tower (``onnx``: fp32, ``onnx_int8``: per-channel int8
    weights; ``onnx_opt``: fp32 after ONNX Runtime's BERT graph optimiser) in the library's session settings.
    This script runs batch by batch, so the session gets torch's thread count as intra-op threads (the
    library's backend instead runs that many batches at once, one thread each)."""
    import tempfile

    from textsiamese.inference.onnx import OnnxTower, cpu_session, export_tower

    with tempfile.TemporaryDirectory() as folder:
        path = export_tower(tower, Path(folder) / "tower.onnx", int8=kind == "onnx_int8")
        if kind == "onnx_opt":
            from onnxruntime.transformers.optimizer import optimize_model

            config = tower.encoder.config
            optimized = optimize_model(
                str(path),
                model_type="bert",
                num_heads=config.num_attention_heads,
                hidden_size=config.hidden_size,
            )
            print(f"onnx_opt fusions: {optimized.get_fused_operator_statistics()}")
            optimized.save_model_to_file(str(path))
        stand_in = OnnxTower(tower, cpu_session(path.read_bytes()))

    def run(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return stand_in({"input_ids": ids, "attention_mask": mask})

    return run


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--slices", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--paths", default="jit,eager,compile", help="comma-separated variants (see above)")
    parser.add_argument("--lowp", action="store_true", help="also time bf16, int8 and the default path")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from sentence_transformers import SentenceTransformer

    theirs = SentenceTransformer(str(textsiamese.default_model_path()), device="cpu", local_files_only=True)
    ours = textsiamese.load()
    texts = bench_encode.agnews_texts(args.texts)
    check = texts[::5][:200]
    want = ours.encode(check, batch_size=16, precision="fp32")
    paths: dict[str, Callable[[list[str]], np.ndarray]] = {
        "sentence-transformers fp32, batch 32 (default)": lambda t: theirs.encode(t, batch_size=32),
        "textsiamese fp32, batch 16": lambda t: ours.encode(t, batch_size=16, precision="fp32"),
    }
    if args.lowp:
        from textsiamese.inference.precision import cpu_has_native_bf16

        # emulated bf16 (no avx512_bf16 / AMX) is several times slower than fp32: not worth timing
        for precision in ("bf16", "int8") if cpu_has_native_bf16() else ("int8",):
            paths[f"textsiamese {precision}, batch 16"] = lambda t, p=precision: ours.encode(
                t, batch_size=16, precision=p
            )
        paths["textsiamese default (auto, default batch)"] = lambda t: ours.encode(t)
    for kind in filter(None, args.paths.split(",")):
        model = variant(kind, texts, check, want)
        paths[f"textsiamese fp32 {kind}, batch 16"] = lambda t, m=model: m.encode(
            t, batch_size=16, precision="fp32"
        )
    for run in paths.values():  # untimed: kernels for a spread of batch shapes
        run(texts[::12])
    print(f"load average {os.getloadavg()}, {time.strftime('%H:%M:%S', time.gmtime())} UTC", flush=True)
    bench_encode.print_table(bench_encode.throughput(paths, texts, args.repeats, args.slices))
    print(f"load average {os.getloadavg()}, {time.strftime('%H:%M:%S', time.gmtime())} UTC", flush=True)


if __name__ == "__main__":
    main()
