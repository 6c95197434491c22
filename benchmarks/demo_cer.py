"""CER table of the demo model: offline (whole file), streaming 600 ms and 480 ms, and the fast paths.

    python benchmarks/demo_cer.py --data data/synth/test [--model modelscope_paraformer/demo_model]

Prints a markdown table (the one in README); the test set comes from
``python -m modelscope_paraformer.tools.synth_corpus --split-voices test`` (unseen voices and sentences).
"""
from __future__ import annotations

import argparse

import torch

from modelscope_paraformer import DEMO_MODEL_DIR
from modelscope_paraformer.core import load_model
from modelscope_paraformer.core.optimize import optimize_for_inference
from modelscope_paraformer.training.data import read_dataset, validate
from modelscope_paraformer.training.trainer import evaluate_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/synth/test")
    parser.add_argument("--model", default=str(DEMO_MODEL_DIR))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    samples = validate(read_dataset(args.data), None)
    rows = [("offline: whole file, `model.transcribe`", "fp32", None),
            ("streaming 600 ms `[0, 10, 5]`", "fp32", (0, 10, 5)),
            ("streaming 480 ms `[0, 8, 4]`", "fp32", (0, 8, 4)),
            ("streaming 600 ms", "bf16", (0, 10, 5)),
            ("streaming 600 ms", "int8", (0, 10, 5))]
    minutes = sum(sample.length for sample in samples) / 100 / 60
    print(f"{len(samples)} utterances, {minutes:.1f} min, {args.threads} threads\n")
    print("| decoding | precision | CER % | S | I | D | RTF |\n| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for name, precision, chunk_size in rows:
        model = load_model(args.model, mmap=True)
        optimize_for_inference(model, **({"dtype": "bf16"} if precision == "bf16" else
                                         {"quantize": "int8"} if precision == "int8" else {}))
        report = evaluate_model(model, samples, chunk_size)
        total = report.total
        print(f"| {name} | {precision} | {100 * total.cer:.2f} | {total.substitutions} | {total.insertions} | "
              f"{total.deletions} | {report.rtf:.4f} |", flush=True)


if __name__ == "__main__":
    main()
