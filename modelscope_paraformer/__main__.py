"""Command line: transcribe | stream | evaluate | finetune | export.

    python -m modelscope_paraformer transcribe examples/asr_example_zh.wav
    python -m modelscope_paraformer stream examples/asr_example_zh.wav --chunk-size 0 10 5
    python -m modelscope_paraformer evaluate --model DIR --data data/synth/test --report report.tsv
    python -m modelscope_paraformer finetune --model DIR --data-dir data/train --work-dir exp/ft --max-epoch 5
    python -m modelscope_paraformer export --model DIR --out DIR_ONNX [--quantize int8]

``--model`` takes a local model dir or a ModelScope hub id; it defaults to the demo model shipped in the
package. An exported dir runs on onnxruntime (without importing torch for transcribe and stream). Only modules
of this package's core are imported: no modelscope, so start-up is quick.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Optional

from . import DEMO_MODEL_DIR


def _model_dir(args: argparse.Namespace):
    if args.model is None:
        return DEMO_MODEL_DIR
    from .hub import resolve_model_dir

    return resolve_model_dir(args.model, args.model_revision)


def _load(args: argparse.Namespace):
    from .core.loading import load_for_inference

    return load_for_inference(_model_dir(args), "cpu", args.dtype, args.quantize, args.num_threads)


def cmd_transcribe(args: argparse.Namespace) -> int:
    from .core.audio import iter_inputs
    from .core.scheduler import StreamingDecoder

    model = _load(args)
    utterances = list(iter_inputs(args.audio if len(args.audio) > 1 else args.audio[0]))
    if model.streaming:
        results = [StreamingDecoder(model, args.chunk_size).decode_all(u.samples, u.key) for u in utterances]
    else:
        results = model.transcribe([u.samples for u in utterances], [u.key for u in utterances], args.batch_size)
    for result in results:
        print(json.dumps(result.as_dict(), ensure_ascii=False) if args.json else f"{result.key}\t{result.text}")
    return 0


def cmd_stream(args: argparse.Namespace) -> int:
    from .core.audio import load_audio
    from .core.scheduler import StreamingDecoder

    model = _load(args)
    samples = load_audio(args.audio)
    session = StreamingDecoder(model, args.chunk_size, args.encoder_chunk_look_back, args.decoder_chunk_look_back)
    stride = session.state.stride_samples
    for start in range(0, len(samples), stride):
        final = start + stride >= len(samples)
        began = time.perf_counter()
        ids = session.feed(samples[start:start + stride], is_final=final)
        elapsed = (time.perf_counter() - began) * 1000
        print(f"{start / 16000:7.2f}s  +{model.tokenizer.decode(ids):<12}  ({elapsed:.0f} ms)")
    if session.result is None:  # no samples at all: nothing was fed
        session.finish()
    print(session.result.text)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .training.data import read_dataset, validate
    from .training.trainer import evaluate_model

    model = _load(args)
    report = evaluate_model(model, validate(read_dataset(args.data), None), args.chunk_size)
    total = report.total
    print(f"CER {100 * total.cer:.2f}%  (S {total.substitutions}, I {total.insertions}, D {total.deletions}; "
          f"{total.reference_length} chars, {len(report.rows)} utterances)  RTF {report.rtf:.4f}")
    for key, reference, hypothesis, counts in report.worst(args.worst):
        if counts.errors:
            print(f"  {key}: {counts.errors} errors\n    ref: {reference}\n    hyp: {hypothesis}")
    if args.report:
        with open(args.report, "w", encoding="utf-8") as out:
            out.write("key\terrors\tref_chars\treference\thypothesis\n")
            for key, reference, hypothesis, counts in report.rows:
                out.write(f"{key}\t{counts.errors}\t{counts.reference_length}\t{reference}\t{hypothesis}\n")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .core.engines.onnx_export import export_onnx

    started = time.perf_counter()
    out = export_onnx(_model_dir(args), args.out, args.quantize, args.opset)
    print(f"{out}\t({time.perf_counter() - started:.1f} s)")
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    from .training.trainer import ParaformerTrainer, TrainerConfig

    config = TrainerConfig(work_dir=args.work_dir, data_dir=args.data_dir, model=args.model or str(DEMO_MODEL_DIR),
                           valid_dir=args.valid_dir, model_revision=args.model_revision, max_epoch=args.max_epoch,
                           batch_bins=args.batch_bins, lr=args.lr, warmup_steps=args.warmup_steps,
                           precision=args.precision, seed=args.seed)
    trainer = ParaformerTrainer(config)
    out = trainer.train()
    print(out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m modelscope_paraformer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model", help="model dir or hub id (default: the shipped demo model)")
        p.add_argument("--model-revision")
        p.add_argument("--num-threads", type=int)
        p.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
        p.add_argument("--quantize", choices=["int8"], help="dynamic int8 for the Linear layers (CPU)")
        p.add_argument("--chunk-size", type=int, nargs=3, default=[0, 10, 5], metavar=("LEFT", "STRIDE", "AHEAD"))

    p = sub.add_parser("transcribe", help="recognise files, a wav.scp or ark: specifiers")
    p.add_argument("audio", nargs="+")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--json", action="store_true", help="print one JSON object (key, text, timestamp) per line")
    common(p)
    p.set_defaults(func=cmd_transcribe)

    p = sub.add_parser("stream", help="stream a file chunk by chunk and show partial results")
    p.add_argument("audio")
    p.add_argument("--encoder-chunk-look-back", type=int, default=4)
    p.add_argument("--decoder-chunk-look-back", type=int, default=1)
    common(p)
    p.set_defaults(func=cmd_stream)

    p = sub.add_parser("evaluate", help="CER (S/I/D), RTF and the worst utterances on a Kaldi dir or jsonl")
    p.add_argument("--data", required=True)
    p.add_argument("--report", help="write a per-utterance TSV report here")
    p.add_argument("--worst", type=int, default=5)
    common(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("export", help="write an ONNX model dir that runs on onnxruntime (no torch needed)")
    p.add_argument("--model", help="model dir or hub id (default: the shipped demo model)")
    p.add_argument("--model-revision")
    p.add_argument("--out", required=True, help="the new model dir (replaced if it holds an earlier export)")
    p.add_argument("--quantize", choices=["int8"], help="int8 weights (onnxruntime quantisation)")
    p.add_argument("--opset", type=int, default=17)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("finetune", help="fine-tune a model (default: the demo model) on a data dir")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--valid-dir")
    p.add_argument("--work-dir", required=True)
    p.add_argument("--max-epoch", type=int, default=5)
    p.add_argument("--batch-bins", type=int, default=12000)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--warmup-steps", type=int, default=100)
    p.add_argument("--precision", choices=["fp32", "fp16", "bf16"], default="fp32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model")
    p.add_argument("--model-revision")
    p.set_defaults(func=cmd_finetune)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from .core.errors import ParaformerError

    try:
        return args.func(args)
    except (ParaformerError, FileNotFoundError, ValueError) as error:  # ValueError: e.g. bf16 with int8
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
