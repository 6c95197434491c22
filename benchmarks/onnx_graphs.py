"""Side-by-side latency of ONNX exports (core/engines/onnx_export.py) in one process; prints a markdown table.

    python benchmarks/onnx_graphs.py --stream LABEL=ONLINE_ONNX_DIR[@ENGINE_PY] ... \
        --offline LABEL=OFFLINE_ONNX_DIR[@ENGINE_PY] ... [--repeats 5] [--threads 2]

``@ENGINE_PY`` runs that directory with another copy of onnx_engine.py (e.g. the one an older export was made
for, whose cache layout differs). Streaming: 600 ms chunks of examples/asr_example_zh.wav tiled 3 times,
StreamingDecoder.feed per chunk (encoder_chunk + CIF + decoder_chunk), median per pass; offline: encode + decode
of 10 s (167 LFR frames, 40 tokens). The variants alternate within each repeat, so a busy machine affects all.
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modelscope_paraformer.core import StreamingDecoder, load_audio  # noqa: E402
from modelscope_paraformer.core.engine import Encoded  # noqa: E402
from modelscope_paraformer.core.engines import onnx_engine  # noqa: E402
from modelscope_paraformer.core.model_dir import find_model_files, read_model_spec  # noqa: E402
from modelscope_paraformer.core.recognizer import Recognizer  # noqa: E402

_modules = {}


def _engine_module(path):
    if path is None:
        return onnx_engine
    if path not in _modules:
        name = f"modelscope_paraformer.core.engines._bench_engine{len(_modules)}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        module._global_pool_threads = onnx_engine._global_pool_threads  # share the one process-wide pool
        _modules[path] = module
    return _modules[path]


def _load(spec, threads):
    label, rest = spec.split("=", 1)
    directory, _, engine_py = rest.partition("@")
    onnx_engine._shared_pool(threads)
    module = _engine_module(engine_py or None)
    files = find_model_files(directory)
    config, frontend, tokenizer = read_model_spec(files)
    return label, Recognizer(module.OnnxEngine(files.root, num_threads=threads), config, frontend, tokenizer)


def stream_pass(model, audio):
    session = StreamingDecoder(model)
    times = []
    for k in range(0, len(audio), 9600):
        started = time.perf_counter()
        session.feed(audio[k:k + 9600], is_final=k + 9600 >= len(audio))
        times.append(time.perf_counter() - started)
    return 1000 * float(np.median(times)), session.result.token_ids


def offline_pass(model, features, embeddings):
    engine = model.engine
    started = time.perf_counter()
    encoded = engine.encode([features])
    middle = time.perf_counter()
    engine.decode([Encoded(encoded[0].hidden, encoded[0].alphas, encoded[0].memory)], [embeddings])
    done = time.perf_counter()
    return 1000 * (middle - started), 1000 * (done - middle)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--stream", nargs="*", default=[])
    parser.add_argument("--offline", nargs="*", default=[])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    audio = np.tile(load_audio(str(Path(__file__).resolve().parents[1] / "examples/asr_example_zh.wav")), 3)
    streams = [_load(s, args.threads) for s in args.stream]
    offlines = [_load(s, args.threads) for s in args.offline]
    rng = np.random.default_rng(0)
    features = rng.standard_normal((167, 560)).astype(np.float32)
    embeddings = rng.standard_normal((40, 512)).astype(np.float32)
    results = {label: [] for label, _ in streams + offlines}
    tokens = {}
    for label, model in streams:  # warm-up
        tokens[label] = stream_pass(model, audio)[1]
    for label, model in offlines:
        offline_pass(model, features, embeddings)
    for _ in range(args.repeats):
        for label, model in streams:
            results[label].append(stream_pass(model, audio)[0])
        for label, model in offlines:
            results[label].append(offline_pass(model, features, embeddings))
    print("| variant | best ms | median ms |\n|---|---|---|")
    for label, _ in streams:
        r = results[label]
        print(f"| stream {label} (per 600 ms chunk) | {min(r):.1f} | {statistics.median(r):.1f} |")
    for label, _ in offlines:
        r = results[label]
        enc, dec = [x[0] for x in r], [x[1] for x in r]
        tot = [a + b for a, b in r]
        print(f"| offline {label} 10 s enc+dec | {min(tot):.0f} ({min(enc):.0f}+{min(dec):.0f}) | "
              f"{statistics.median(tot):.0f} ({statistics.median(enc):.0f}+{statistics.median(dec):.0f}) |")
    for label, ids in tokens.items():
        print(f"tokens {label}: {len(ids)} {ids[:12]}")


if __name__ == "__main__":
    main()
