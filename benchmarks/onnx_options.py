"""Measurements behind the ONNX export/engine choices; prints markdown tables.

    python benchmarks/onnx_options.py --offline OFFLINE_ONNX_DIR --online ONLINE_ONNX_DIR \
        --online-source ONLINE_MODEL_DIR [--sections int8,options,latency] [--threads 2]

The directories are fp32 exports (core/engines/onnx_export.py) of full-depth Paraformer-large (random weights
are fine: the cost does not depend on the values; tools/random_model.py builds them).

- ``int8``: the offline encoder graph quantised by quantize_dynamic (per-channel, MatMul, QInt8 / QUInt8
  weights) and by weight-only MatMulNBits (8 bits), timed at 20 rows (a streaming window) and 167 rows (10 s).
- ``options``: session options (graph optimisation level, memory arena, execution mode) on the offline encoder
  (167 rows) and on the streaming encoder window (15 rows + 40 cached).
- ``latency``: per-window encode_chunks + decode_chunks of the online model at [0, 10, 5], batch 1, for
  onnxruntime fp32 and int8 and for torch (forward_chunk after optimize_for_inference), in one run.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _median_ms(fn, repeat: int = 10, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1e3)
    return statistics.median(times)


def _options(threads: int, level=ort.GraphOptimizationLevel.ORT_ENABLE_ALL, arena: bool = True,
             mode=ort.ExecutionMode.ORT_SEQUENTIAL) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = level
    options.enable_cpu_mem_arena = arena
    options.execution_mode = mode
    options.log_severity_level = 3
    return options


def _encoder_feed(rows: int, feature_dim: int = 560) -> dict:
    rng = np.random.default_rng(0)
    return {"features": rng.standard_normal((1, rows, feature_dim)).astype(np.float32),
            "lengths": np.array([rows], np.int64)}


def section_int8(offline: Path, threads: int) -> None:
    from modelscope_paraformer.core.engines.onnx_export import quantize_graph

    source = offline / "encoder.onnx"
    variants = {"fp32": source}
    work = Path(tempfile.mkdtemp(prefix="onnx-int8-"))
    made = {}
    for name, method, kwargs in (("dynamic per-channel QInt8", "dynamic", {}),
                                 ("dynamic per-channel QUInt8", "dynamic-quint8", {}),
                                 ("MatMulNBits 8-bit (acc. level 4)", "nbits", {})):
        target = work / f"{method}.onnx"
        started = time.perf_counter()
        try:
            if method == "dynamic-quint8":
                from onnxruntime.quantization import QuantType, quantize_dynamic

                from modelscope_paraformer.core.engines.onnx_export import _predictor_nodes

                quantize_dynamic(str(source), str(target), op_types_to_quantize=["MatMul"], per_channel=True,
                                 weight_type=QuantType.QUInt8, nodes_to_exclude=_predictor_nodes(source),
                                 extra_options={"MatMulConstBOnly": True})
            else:
                quantize_graph(source, target, method)
        except Exception as error:  # report and go on
            print(f"{name}: failed ({type(error).__name__}: {error})")
            continue
        made[name] = time.perf_counter() - started
        variants[name] = target
    print(f"\n### int8 methods: offline encoder (50 layers), batch 1, {threads} threads, median of 10\n")
    print("| graph | quantise s | size MB | 20 rows ms | 167 rows ms | max abs diff of alphas vs fp32 (167 rows) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    reference = None
    for name, path in variants.items():
        session = ort.InferenceSession(str(path), _options(threads), providers=["CPUExecutionProvider"])
        small, large = _encoder_feed(20), _encoder_feed(167)
        t20 = _median_ms(lambda: session.run(None, small))
        t167 = _median_ms(lambda: session.run(None, large), repeat=6)
        alphas = session.run(None, large)[1]
        reference = alphas if reference is None else reference
        print(f"| {name} | {made.get(name, 0):.1f} | {path.stat().st_size / 2**20:.0f} | {t20:.1f} | {t167:.1f} | "
              f"{float(np.abs(alphas - reference).max()):.4f} |")
        del session


def section_options(offline: Path, online: Path, threads: int) -> None:
    import json

    assumes = json.loads((online / "onnx_manifest.json").read_text())["assumes"]
    layers, heads, d_k = assumes["encoder_layers"], assumes["heads"], assumes["d_k"]
    rng = np.random.default_rng(0)
    window = {"features": rng.standard_normal((1, 15, 560)).astype(np.float32), "start": np.array([100], np.int64),
              "cache": rng.standard_normal((layers, 2, 1, heads, 40, d_k)).astype(np.float32)}
    G, E = ort.GraphOptimizationLevel, ort.ExecutionMode
    variants = [("ALL, arena, sequential (chosen)", {}),
                ("EXTENDED, arena, sequential", {"level": G.ORT_ENABLE_EXTENDED}),
                ("BASIC, arena, sequential", {"level": G.ORT_ENABLE_BASIC}),
                ("DISABLE_ALL, arena, sequential", {"level": G.ORT_DISABLE_ALL}),
                ("ALL, no arena, sequential", {"arena": False}),
                ("ALL, arena, parallel (inter-op 1)", {"mode": E.ORT_PARALLEL})]
    # the machine may be shared: every variant is loaded first, then they run round-robin (3 rounds of 5
    # calls each) and the best round's median is kept, so that load from elsewhere hits all of them alike
    print(f"\n### session options, batch 1, {threads} threads, best of 3 round-robin medians of 5\n")
    results = {name: {} for name, _ in variants}
    for graph, feed, label in ((online / "encoder_chunk.onnx", window, "chunk"),
                               (offline / "encoder.onnx", _encoder_feed(167), "offline")):
        sessions = {}
        for name, kwargs in variants:
            started = time.perf_counter()
            sessions[name] = ort.InferenceSession(str(graph), _options(threads, **kwargs),
                                                  providers=["CPUExecutionProvider"])
            results[name][label + " load"] = time.perf_counter() - started
        for _ in range(3):
            for name, session in sessions.items():
                t = _median_ms(lambda: session.run(None, feed), repeat=5, warmup=1)
                results[name][label] = min(results[name].get(label, float("inf")), t)
        del sessions
    print("| options | encoder_chunk load s | encoder_chunk 15 rows + 40 cached ms | offline encoder 167 rows ms |")
    print("| --- | ---: | ---: | ---: |")
    for name, r in results.items():
        print(f"| {name} | {r['chunk load']:.1f} | {r['chunk']:.1f} | {r['offline']:.1f} |")


def section_latency(online: Path, source: Path, threads: int, int8_dir: Path | None, windows: int = 20) -> None:
    import torch

    from modelscope_paraformer.core.checkpoint import load_model
    from modelscope_paraformer.core.chunking import ChunkConfig
    from modelscope_paraformer.core.decoder import DecoderState
    from modelscope_paraformer.core.engine import ChunkInput
    from modelscope_paraformer.core.engines.onnx_engine import OnnxEngine
    from modelscope_paraformer.core.engines.onnx_export import export_onnx
    from modelscope_paraformer.core.optimize import optimize_for_inference
    from modelscope_paraformer.core.predictor import CifState

    torch.set_num_threads(threads)
    config = ChunkConfig.create((0, 10, 5), 4, 1)
    left, stride, look_ahead = config.chunk_size
    if int8_dir is None or not (int8_dir / "onnx_manifest.json").is_file():
        int8_dir = Path(tempfile.mkdtemp(prefix="onnx-online-int8-")) / "int8"
        started = time.perf_counter()
        export_onnx(source, int8_dir, quantize="int8")
        print(f"(int8 online export: {time.perf_counter() - started:.1f} s)")
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((windows * stride, 560)).astype(np.float32)
    model = load_model(source)
    optimize_for_inference(model)  # fp32: packed oneDNN weights
    dim = model.encoder.output_size

    def torch_stream():
        """A generator: send nothing, get (window ChunkInput, fired embeddings) per torch step."""
        overlap = torch.zeros(1, left + look_ahead, 560)
        caches = [None] * len(model.encoder.layers)
        cif_state = CifState(torch.zeros(1), torch.zeros(1, dim))
        state = DecoderState()
        for number in range(windows):
            with torch.inference_mode():
                piece = feats[number * stride:(number + 1) * stride]
                embedded = model.encoder.embed(torch.from_numpy(piece)[None], number * stride)
                window = torch.cat([overlap, embedded], dim=1)
                overlap = window[:, window.size(1) - (left + look_ahead):]
                encoded = model.encoder.forward_chunk(window, None, caches, look_ahead, config.encoder_keep_frames)
                cif, cif_state = model.predictor.forward_chunk(encoded, cif_state, False, left, left + stride)
                count = int(cif.token_counts[0])
                if count:
                    model.decoder.forward_chunk(encoded, cif.embeddings[:, :count], state,
                                                config.decoder_keep_frames)
            start = (number + 1) * stride - window.size(1)
            raw = np.zeros((window.size(1), 560), np.float32)
            raw[max(0, -start):] = feats[max(0, start):(number + 1) * stride]
            yield ChunkInput(raw, start), cif.embeddings[0, :count].numpy()

    # torch runs alone, before any onnxruntime session exists: onnxruntime's intra-op threads spin for a while
    # after each run and, interleaved with torch on 2 cores, slowed torch's windows by up to 30x
    steps, torch_ms, stream = [], [], torch_stream()
    torch.set_num_threads(threads)
    for _ in range(windows):
        started = time.perf_counter()
        steps.append(next(stream))  # the windows and the embeddings torch fires; every engine decodes those
        torch_ms.append((time.perf_counter() - started) * 1e3)
    # the two onnxruntime engines step in lockstep, window by window, so that load from elsewhere hits both alike
    engines = {"onnxruntime fp32": OnnxEngine(online, num_threads=threads),
               "onnxruntime int8": OnnxEngine(int8_dir, num_threads=threads)}
    states = {name: [None, None] for name in engines}
    results = {"torch fp32 (optimize_for_inference)": torch_ms, **{name: [] for name in engines}}
    for chunk, embeddings in steps:
        for name, engine in engines.items():
            state = states[name]
            started = time.perf_counter()
            (encoded,), (state[0],) = engine.encode_chunks([chunk], [state[0]], config)
            if len(embeddings):
                _, (state[1],) = engine.decode_chunks([encoded], [embeddings], [state[1]], config)
            results[name].append((time.perf_counter() - started) * 1e3)
    print(f"\n### per-window latency, online Paraformer-large (50/16 layers) [0,10,5], look-back 4/1, batch 1, "
          f"{threads} threads, {windows} windows (first 2 dropped)\n")
    print("| engine | median ms | min ms | mean ms |")
    print("| --- | ---: | ---: | ---: |")
    for name, times in results.items():
        kept = sorted(times[2:])
        print(f"| {name} | {statistics.median(kept):.1f} | {kept[0]:.1f} | {statistics.fmean(kept):.1f} |")
    print("(torch includes its embedding and CIF steps, about 1 ms; the onnxruntime rows exclude CIF)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--offline", type=Path)
    parser.add_argument("--online", type=Path)
    parser.add_argument("--online-source", type=Path)
    parser.add_argument("--online-int8", type=Path, default=None)
    parser.add_argument("--sections", default="int8,options,latency")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args()
    print(f"onnxruntime {ort.__version__}, {args.threads} threads, {os.cpu_count()} CPUs")
    sections = args.sections.split(",")
    if "int8" in sections:
        section_int8(args.offline, args.threads)
    if "options" in sections:
        section_options(args.offline, args.online, args.threads)
    if "latency" in sections:
        section_latency(args.online, args.online_source, args.threads, args.online_int8)


if __name__ == "__main__":
    main()
