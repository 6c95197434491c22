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


def _transcriber(args: argparse.Namespace, model):
    """The composite (VAD, punctuation, hotwords) when the arguments or the model dir ask for it, else None."""
    from .composition import build_transcriber

    options = {"vad_model": args.vad_model, "punc_model": args.punc_model} if args.no_companions else {}
    options.update({key: value for key, value in (("vad_model", args.vad_model), ("punc_model", args.punc_model))
                    if value is not None})
    transcriber = build_transcriber(model, _model_dir(args), options)
    wants_composite = transcriber.vad or transcriber.punctuator or args.hotword or args.sentence_timestamp
    return transcriber if wants_composite else None


def cmd_transcribe(args: argparse.Namespace) -> int:
    from .core.audio import iter_inputs
    from .core.scheduler import StreamingDecoder

    model = _load(args)
    transcriber = _transcriber(args, model)
    if args.output:
        from .jsonl_transcription import transcribe_to_jsonl

        if args.hotword or args.sentence_timestamp:
            raise ValueError("--hotword and --sentence-timestamp are not supported with --output yet: leave "
                             "--output out to print the results")

        print(transcribe_to_jsonl(transcriber or model, args.audio, args.output, args.batch_size))
        return 0
    utterances = list(iter_inputs(args.audio if len(args.audio) > 1 else args.audio[0]))
    if transcriber is not None:
        options = {"sentence_timestamp": args.sentence_timestamp}
        if args.hotword is not None:
            options["hotwords"] = args.hotword
        for result in transcriber.transcribe([u.samples for u in utterances], [u.key for u in utterances],
                                             batch_size=args.batch_size, **options):
            print(json.dumps(result, ensure_ascii=False) if args.json else f"{result['key']}\t{result['text']}")
        return 0
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
    from .training.train import tuning_options
    from .training.trainer import ParaformerTrainer, TrainerConfig

    config = TrainerConfig(work_dir=args.work_dir, data_dir=args.data_dir, model=args.model or str(DEMO_MODEL_DIR),
                           valid_dir=args.valid_dir, model_revision=args.model_revision, max_epoch=args.max_epoch,
                           batch_bins=args.batch_bins, lr=args.lr, warmup_steps=args.warmup_steps,
                           precision=args.precision, seed=args.seed, **tuning_options(args))
    trainer = ParaformerTrainer(config)
    out = trainer.train()
    print(out)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the WebSocket server (FunASR's protocol), its browser page and /health until SIGTERM."""
    from .core.endpoint import EndpointConfig
    from .core.fsmn_vad import load_vad
    from .core.loading import load_for_inference
    from .hub import resolve_model_dir
    from .serving.server import ServerOptions, run_server

    logging.getLogger().setLevel(getattr(logging, args.log_level.upper()))
    model_dir = _model_dir(args)
    model = load_for_inference(model_dir, "cpu", args.dtype, args.quantize, args.num_threads)
    vad = load_vad(resolve_model_dir(args.vad_model)) if args.vad_model else None
    punctuator = None
    if args.punc_model:
        from .core.punctuation import load_punctuator

        punctuator = load_punctuator(resolve_model_dir(args.punc_model))
    offline = None
    if args.offline_model:
        offline = load_for_inference(resolve_model_dir(args.offline_model), "cpu", args.dtype, args.quantize,
                                     args.num_threads)
    options = ServerOptions(host=args.host, port=args.port, max_connections=args.max_connections,
                            max_frame_bytes=args.max_frame_bytes, idle_timeout_s=args.idle_timeout,
                            max_session_s=args.max_session, max_backlog_s=args.max_backlog,
                            token=args.token, certfile=args.certfile, keyfile=args.keyfile,
                            endpoint=EndpointConfig(end_silence_ms=args.end_silence_ms,
                                                    max_utterance_ms=int(args.max_utterance_s * 1000)), vad=vad,
                            punctuator=punctuator)
    return run_server(model, offline, options, args.max_batch, str(model_dir))


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

    p = sub.add_parser("transcribe", help="recognise files, directories, a wav.scp or ark: specifiers")
    p.add_argument("audio", nargs="+")
    p.add_argument("--output", help="write one JSON line per input here: resumable, sharded over torchrun ranks, "
                   "unreadable inputs reported in their rows")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--json", action="store_true", help="print one JSON object (key, text, timestamp) per line")
    p.add_argument("--vad-model", help="FSMN-VAD dir or hub id (e.g. fsmn-vad): segment long audio at speech "
                   "boundaries, as FunASR's vad_model")
    p.add_argument("--punc-model", help="CT-Transformer punctuation dir or hub id (e.g. ct-punc)")
    p.add_argument("--no-companions", action="store_true",
                   help="ignore the vad_model / punc_model that the model dir's configuration.json names")
    p.add_argument("--hotword", help="hotwords for a SeACo Paraformer: space-separated words or a file (one per line)")
    p.add_argument("--sentence-timestamp", action="store_true", help="add sentence_info (text, start, end) to --json")
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
    from .training.train import add_tuning_arguments  # argparse and torch-free at import: cheap

    add_tuning_arguments(p)
    p.set_defaults(func=cmd_finetune)

    p = sub.add_parser("serve", help="WebSocket server (FunASR protocol: online / offline / 2pass) and browser page")
    p.add_argument("--model", help="streaming model dir or hub id (default: the shipped demo model)")
    p.add_argument("--model-revision")
    p.add_argument("--offline-model", help="model dir or hub id for offline mode and 2pass-offline sentences "
                   "(default: the --model re-decodes each segment)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (0.0.0.0 to serve other machines)")
    p.add_argument("--port", type=int, default=10095)
    p.add_argument("--num-threads", type=int)
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--quantize", choices=["int8"], help="dynamic int8 for the Linear layers (CPU)")
    p.add_argument("--max-batch", type=int, help="streams per engine step (default: all that are ready)")
    p.add_argument("--max-connections", type=int, default=200)
    p.add_argument("--max-frame-bytes", type=int, default=1 << 20)
    p.add_argument("--idle-timeout", type=float, default=60.0, help="seconds without a message before closing")
    p.add_argument("--max-session", type=float, default=4 * 3600.0, help="seconds one connection may last")
    p.add_argument("--max-backlog", type=float, default=10.0,
                   help="seconds of undecoded audio per connection before the server stops reading it")
    p.add_argument("--end-silence-ms", type=int, default=800, help="silence that ends an utterance")
    p.add_argument("--max-utterance-s", type=float, default=60.0, help="longest utterance before a forced end")
    p.add_argument("--vad-model", help="FSMN-VAD dir or hub id (e.g. fsmn-vad) that cuts utterances instead of the "
                   "energy endpointer (--end-silence-ms is its max_end_silence_time)")
    p.add_argument("--punc-model", help="CT-Transformer dir or hub id (e.g. ct-punc) that punctuates the offline "
                   "and 2pass-offline sentences")
    p.add_argument("--token", help="require this access token (?token=... or Authorization: Bearer ...)")
    p.add_argument("--certfile", help="TLS certificate (wss:// and https://)")
    p.add_argument("--keyfile", help="TLS private key")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=cmd_serve)
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
