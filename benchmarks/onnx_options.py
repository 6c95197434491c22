"""Measurements behind the ONNX export/engine choices; prints markdown tables.

    python benchmarks/onnx_options.py --offline OFFLINE_ONNX_DIR --online ONLINE_ONNX_DIR \
        [--sections int8,options] [--threads 2]

The directories are fp32 exports (core/engines/onnx_export.py) of full-depth Paraformer-large (random weights
are fine: the cost does not depend on the values; tools/random_model.py builds them).

- ``int8``: the offline encoder graph quantised by quantize_dynamic (per-channel, MatMul, QInt8 / QUInt8
  weights) and by weight-only MatMulNBits (8 bits), timed at 20 rows (a streaming window) and 167 rows (10 s).
- ``options``: session options (graph optimisation level, memory arena, execution mode) on the offline encoder
  (167 rows) and on the streaming encoder window (15 rows + 40 cached).
Per-chunk latency of the engines side by side (and funasr's, sherpa-onnx's) is benchmarks/bench.py's.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--offline", type=Path)
    parser.add_argument("--online", type=Path)
    parser.add_argument("--sections", default="int8,options")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args()
    print(f"onnxruntime {ort.__version__}, {args.threads} threads, {os.cpu_count()} CPUs")
    sections = args.sections.split(",")
    if "int8" in sections:
        section_int8(args.offline, args.threads)
    if "options" in sections:
        section_options(args.offline, args.online, args.threads)


if __name__ == "__main__":
    main()
