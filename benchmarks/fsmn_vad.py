"""FSMN-VAD speed, ours against funasr's FsmnVADStreaming: same random hub-layout model, same audio, one thread each,
offline and streamed; every answer is also checked for equality.

    python benchmarks/fsmn_vad.py                        # the example sentence tiled with pauses to ~80 s
    python benchmarks/fsmn_vad.py --wav long.wav --chunks 200 600 --repeats 3

Both sides are measured in this process, alternately, best of ``--repeats``; funasr's numbers include its
``generate()`` overhead per call, which is what a funasr user pays.
"""
from __future__ import annotations

import argparse
import logging
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from modelscope_paraformer.core import load_vad
from modelscope_paraformer.core.audio import load_audio
from modelscope_paraformer.tools.random_vad import build_random_vad

REPO = Path(__file__).resolve().parents[1]


def default_audio(seconds: float = 80.0) -> np.ndarray:
    """The example sentence at varying levels with 0.3-4 s pauses of low noise, to ``seconds``."""
    speech = load_audio(REPO / "examples" / "asr_example_zh.wav")
    rng = np.random.default_rng(0)
    parts, pauses = [], [0.3, 2.5, 0.8, 4.0, 1.2]
    while sum(map(len, parts)) < seconds * 16000:
        parts += [speech * rng.uniform(0.5, 1.5), np.zeros(int(pauses[len(parts) // 2 % 5] * 16000), np.float32)]
    audio = np.concatenate(parts).astype(np.float32)
    return audio + (rng.standard_normal(len(audio)) * 1e-3).astype(np.float32)


def best(repeats: int, call) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - started)
    return min(times), result


def funasr_stream(model, pieces: list[np.ndarray], chunk_ms: int) -> list:
    cache: dict = {}
    return [model.generate(input=p, cache=cache, is_final=i == len(pieces) - 1, chunk_size=chunk_ms,
                           disable_pbar=True)[0]["value"] for i, p in enumerate(pieces)]


def our_stream(vad, pieces: list[np.ndarray], chunk_ms: int) -> list:
    stream = vad.stream(chunk_ms)
    return [stream.feed(p, is_final=i == len(pieces) - 1) for i, p in enumerate(pieces)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="FSMN-VAD dir (default: a random one of the hub architecture)")
    parser.add_argument("--wav", help="16 kHz recording (default: the example tiled with pauses)")
    parser.add_argument("--chunks", type=int, nargs="*", default=[200, 600], help="streaming steps in ms")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    import funasr

    logging.getLogger().setLevel(logging.WARNING)
    torch.set_num_threads(1)
    model_dir = Path(args.model) if args.model else build_random_vad(Path(tempfile.mkdtemp()) / "vad")
    audio = load_audio(args.wav) if args.wav else default_audio()
    theirs = funasr.AutoModel(model=str(model_dir), disable_update=True, ncpu=1, device="cpu", log_level="ERROR")
    ours = load_vad(model_dir)
    seconds = len(audio) / 16000
    print(f"{seconds:.1f} s of audio, 1 thread; times are the best of {args.repeats}")
    t_theirs, expected = best(args.repeats, lambda: theirs.generate(input=audio, disable_pbar=True)[0]["value"])
    t_ours, got = best(args.repeats, lambda: ours.segments(audio))
    print(f"offline: funasr {t_theirs:.2f} s, ours {t_ours:.2f} s ({t_theirs / t_ours:.2f}x), "
          f"{len(got)} segments, equal: {got == expected}")
    for chunk_ms in args.chunks:
        stride = chunk_ms * 16
        pieces = [audio[i:i + stride] for i in range(0, len(audio), stride)]

        t_theirs, expected = best(args.repeats, partial(funasr_stream, theirs, pieces, chunk_ms))
        t_ours, got = best(args.repeats, partial(our_stream, ours, pieces, chunk_ms))
        print(f"stream {chunk_ms} ms: funasr {t_theirs * 1000 / len(pieces):.2f} ms/chunk, ours "
              f"{t_ours * 1000 / len(pieces):.2f} ms/chunk ({t_theirs / t_ours:.2f}x), RTF {t_ours / seconds:.4f}, "
              f"equal per call: {got == expected}")


if __name__ == "__main__":
    main()
