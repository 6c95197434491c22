"""CER table of the demo model: offline (whole file), streaming 600 ms and 480 ms, and the fast paths.

    python benchmarks/demo_cer.py --data data/synth/test [--model modelscope_paraformer/demo_model]

Prints a markdown table (the one in README); the test set comes from
``python -m modelscope_paraformer.tools.synth_corpus --split-voices test`` (unseen voices and sentences).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from modelscope_paraformer.core import load_model
from modelscope_paraformer.core.audio import load_audio
from modelscope_paraformer.core.optimize import optimize_for_inference
from modelscope_paraformer.core.streaming import StreamingDecoder
from modelscope_paraformer.training.data import read_dataset, validate
from modelscope_paraformer.training.metrics import CerReport

DEMO = Path(__file__).resolve().parents[1] / "modelscope_paraformer" / "demo_model"


def score(model, samples, audio, decode) -> tuple[dict, float]:
    report, began = CerReport(), time.perf_counter()
    for sample, samples_16k in zip(samples, audio):
        report.add(sample.key, sample.text, decode(model, samples_16k))
    elapsed = time.perf_counter() - began
    return report.as_dict(), elapsed / (sum(len(a) for a in audio) / 16000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/synth/test")
    parser.add_argument("--model", default=str(DEMO))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    samples = validate(read_dataset(args.data), None)
    audio = [load_audio(sample.source) for sample in samples]
    rows = [("offline: whole file, `model.transcribe`", "fp32", lambda m, a: m.transcribe([a])[0].text),
            ("streaming 600 ms `[0, 10, 5]`", "fp32", lambda m, a: StreamingDecoder(m, (0, 10, 5)).decode_all(a).text),
            ("streaming 480 ms `[0, 8, 4]`", "fp32", lambda m, a: StreamingDecoder(m, (0, 8, 4)).decode_all(a).text),
            ("streaming 600 ms", "bf16", lambda m, a: StreamingDecoder(m, (0, 10, 5)).decode_all(a).text),
            ("streaming 600 ms", "int8", lambda m, a: StreamingDecoder(m, (0, 10, 5)).decode_all(a).text)]
    print(f"{len(samples)} utterances, {sum(len(a) for a in audio) / 16000 / 60:.1f} min, {args.threads} threads\n")
    print("| decoding | precision | CER % | S | I | D | RTF |\n| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for name, precision, decode in rows:
        model = load_model(args.model)
        if precision == "bf16":
            optimize_for_inference(model, dtype="bf16")
        elif precision == "int8":
            optimize_for_inference(model, quantize="int8")
        result, rtf = score(model, samples, audio, decode)
        print(f"| {name} | {precision} | {100 * result['cer']:.2f} | {result['substitutions']} | "
              f"{result['insertions']} | {result['deletions']} | {rtf:.4f} |", flush=True)


if __name__ == "__main__":
    main()
