"""CER table of the demo model: offline (whole file), streaming 600 ms and 480 ms, the fast paths, and the
onnxruntime engine (fp32 and int8 exports of the same model).

    python benchmarks/demo_cer.py --data data/synth/test [--model modelscope_paraformer/demo_model]

Prints a markdown table (the one in README); the test set comes from
``python -m modelscope_paraformer.tools.synth_corpus --split-voices test`` (unseen voices and sentences).
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from modelscope_paraformer import DEMO_MODEL_DIR
from modelscope_paraformer.core.engines.onnx_export import export_onnx
from modelscope_paraformer.core.loading import load_for_inference
from modelscope_paraformer.training.data import read_dataset, validate
from modelscope_paraformer.training.trainer import evaluate_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/synth/test")
    parser.add_argument("--model", default=str(DEMO_MODEL_DIR))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", help="only the rows whose engine starts with this, e.g. onnxruntime")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    samples = validate(read_dataset(args.data), None)
    exports = Path(tempfile.mkdtemp(prefix="demo-onnx-"))
    wanted = [p for p in ("fp32", "int8") if args.only is None or "onnxruntime".startswith(args.only)]
    onnx = {precision: export_onnx(args.model, exports / precision, quantize="int8" if precision == "int8" else None)
            for precision in wanted}
    # (row name, engine + precision, model dir, load_for_inference options, chunk_size)
    rows = [("offline: whole file, `model.transcribe`", "torch fp32", args.model, {}, None),
            ("streaming 600 ms `[0, 10, 5]`", "torch fp32", args.model, {}, (0, 10, 5)),
            ("streaming 480 ms `[0, 8, 4]`", "torch fp32", args.model, {}, (0, 8, 4)),
            ("streaming 600 ms", "torch bf16", args.model, {"dtype": "bf16"}, (0, 10, 5)),
            ("streaming 600 ms", "torch int8", args.model, {"quantize": "int8"}, (0, 10, 5)),
            ("streaming 600 ms", "onnxruntime fp32", onnx.get("fp32"), {}, (0, 10, 5)),
            ("streaming 600 ms", "onnxruntime int8", onnx.get("int8"), {"quantize": "int8"}, (0, 10, 5))]
    rows = [row for row in rows if args.only is None or row[1].startswith(args.only)]
    minutes = sum(sample.length for sample in samples) / 100 / 60
    print(f"{len(samples)} utterances, {minutes:.1f} min, {args.threads} threads\n")
    print("| decoding | engine, precision | CER % | S | I | D | RTF |\n| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for name, precision, directory, options, chunk_size in rows:
        model = load_for_inference(directory, num_threads=args.threads, **options)
        report = evaluate_model(model, samples, chunk_size)
        total = report.total
        print(f"| {name} | {precision} | {100 * total.cer:.2f} | {total.substitutions} | {total.insertions} | "
              f"{total.deletions} | {report.rtf:.4f} |", flush=True)


if __name__ == "__main__":
    main()
